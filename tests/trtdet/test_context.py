"""``RunContext`` carries the options it was resolved from, their device, precision and batch always its own."""

from __future__ import annotations

import pytest

from trtdet.context import RunContext
from trtdet.devices import Device
from trtdet.errors import UsageError
from trtdet.options import DetectorOptions


def test_a_context_of_options_parses_their_device_and_keeps_them():
    options = DetectorOptions(device="CUDA:1", precision="fp16", batch=4, build_options={"dcn": "plugin"}, cuda_graphs=False)
    context = RunContext.from_options(options)
    assert (context.device, context.precision, context.batch) == (Device("cuda", 1), "fp16", 4)
    assert context.options is options and context.build_options == {"dcn": "plugin"}
    context.build_options["dcn"] = "changed"  # a copy: the options stay as given
    assert options.build_options == {"dcn": "plugin"}


def test_the_options_follow_the_contexts_own_fields():
    options = DetectorOptions(device="cpu", batch=2, build_options={"dcn": "plugin"})
    bigger = RunContext.from_options(options).replace(batch=8, precision="fp16")
    assert (bigger.options.batch, bigger.options.precision, bigger.options.device) == (8, "fp16", "cpu")
    assert bigger.options.build_options == {"dcn": "plugin"}  # the rest as given
    plain = RunContext.of("cuda:2", "fp16", 3)  # no options given: the defaults with these three
    assert (plain.options.device, plain.options.precision, plain.options.batch) == ("cuda:2", "fp16", 3)
    assert plain.options.build_options == {} and plain.options.cuda_graphs is None


def test_options_join_an_already_resolved_context():
    """``load(model_file, spec, options, context)``: the context (and its stream) stays, the options ride along."""
    stream = object()
    resolved = RunContext(Device("cuda", 0), "fp16", 4, stream=stream)
    options = DetectorOptions(device="cuda:0", precision="fp16", batch=4, build_options={"dcn": "decomposed"})
    joined = RunContext.from_options(options, resolved)
    assert joined.stream is stream and joined == resolved and joined.options is options
    assert RunContext.from_options(options, joined) is joined


def test_options_do_not_change_what_a_context_equals():
    assert RunContext.of("cpu", "fp16", 3) == RunContext.from_options(DetectorOptions(device="cpu", precision="fp16", batch=3,
                                                                                     build_options={"x": "y"}))


def test_a_bad_replacement_is_one_line():
    with pytest.raises(UsageError, match=r"^batch: expected >= 1, got 0$"):
        RunContext.of("cpu").replace(batch=0)
