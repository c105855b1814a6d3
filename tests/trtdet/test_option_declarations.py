"""Every option declared once (``DetectorOptions``): load's keywords, the CLI flags and the checks derive from it."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import click
import pytest

import trtdet
from trtdet.cli.main import cli
from trtdet.errors import UsageError
from trtdet.options import NO_FLAG, DetectorOptions, option_specs, options_from

from .fake_model import NAME, fake_model


def test_explicit_keywords_win_even_when_they_equal_the_default():
    half = DetectorOptions(precision="fp16", batch=4, conf=0.5, build_options={"a": "x"})
    back = options_from({"precision": "fp32", "batch": 1, "conf": None}, half)
    assert (back.precision, back.batch, back.conf) == ("fp32", 1, None)  # each given value is taken
    assert back.build_options == {"a": "x"}  # not given: kept
    merged = options_from({"build_options": {"b": "y"}}, half)
    assert merged.build_options == {"a": "x", "b": "y"}
    assert options_from({}, half) == half


def test_load_honours_fp32_over_fp16_options(tmp_path: Path):
    seen: list[DetectorOptions] = []
    with fake_model(tmp_path) as plugin:
        load = plugin.backend.load
        plugin.backend.load = lambda file, spec, options: (seen.append(options), load(file, spec, options))[1]
        trtdet.load(NAME, backend="fake", options=DetectorOptions(precision="fp16", batch=2), precision="fp32")
    (options,) = seen
    assert (options.precision, options.batch, options.backend) == ("fp32", 2, "fake")


def test_an_unknown_keyword_names_the_closest_option():
    with pytest.raises(UsageError, match=r"unknown option 'precison' \(known: weights, .*\); did you mean 'precision'\?"):
        trtdet.load("yolo", precison="fp16")


def test_load_signature_lists_every_declared_option():
    parameters = inspect.signature(trtdet.load).parameters
    assert list(parameters) == ["model", *(f.name for f in dataclasses.fields(DetectorOptions)), "options"]
    assert parameters["precision"].default == "fp32" and parameters["batch"].default == 1


@pytest.mark.parametrize("command", ["run", "bench", "val", "batch", "serve"])
def test_cli_flags_come_from_the_declarations(command):
    params = {p.name: p for p in cli.commands[command].params if isinstance(p, click.Option)}
    for name, spec in option_specs().items():
        if spec.flag == NO_FLAG:
            continue
        param = params[spec.param or name]
        assert param.help == spec.help
        if spec.choices:
            assert tuple(param.type.choices) == spec.choices
    assert params["conf"].type.min == 0 and params["conf"].type.max == 1
    assert params["max_det"].type.min == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"conf": 1.5}, r"conf: expected a value in \[0, 1\], got 1.5"),
        ({"max_det": 0}, "max_det: expected >= 1, got 0"),
        ({"letterbox": "fit"}, "letterbox: expected one of rect, square, warp, stretch, ultralytics, got 'fit'"),
        ({"batch": 2.5}, "batch: expected an integer >= 1, got 2.5"),
    ],
)
def test_values_are_checked_from_their_declaration(values, message):
    with pytest.raises(UsageError, match=message):
        DetectorOptions(**values)
