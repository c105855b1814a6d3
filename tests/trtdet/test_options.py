"""DetectorOptions: one checked options object from the CLI and ``trtdet.load`` to the backend."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

import trtdet
from trtdet.build_options import check_build_options
from trtdet.cli.main import cli
from trtdet.errors import UsageError
from trtdet.options import DetectorOptions, parse_build_options


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"device": "tpu"}, r"device: expected 'cpu', 'cuda' or 'cuda:N' \(N = 0, 1, ...\), got 'tpu'"),
        ({"precision": "int8"}, "precision: expected 'fp32' or 'fp16', got 'int8'"),
        ({"batch": 0}, "batch: expected >= 1, got 0"),
        ({"onnx": "a.onnx", "engine": "b.engine"}, r"give at most one of --weights, --onnx, --engine \(got onnx, engine\)"),
        ({"input_size": (0, 640)}, "input_size: expected"),
    ],
)
def test_values_are_checked_when_the_options_are_made(fields, message):
    with pytest.raises(UsageError, match=message):
        DetectorOptions(**fields)


def test_options_are_frozen_and_normalised():
    options = DetectorOptions(input_size=[320, 480], conf=1, build_options={"dcn": "decomposed"})
    assert options.input_size == (320, 480) and options.conf == 1.0 and isinstance(options.conf, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch = 4  # type: ignore[misc]
    assert options.replace(batch=4).batch == 4 and options.batch == 1
    with pytest.raises(UsageError, match="batch: expected >= 1"):
        options.replace(batch=-1)


def test_overriding_takes_only_values_that_differ_from_the_defaults():
    base = DetectorOptions(device="cpu", batch=4, conf=0.5, build_options={"a": "x"})
    same = base.overriding(device="cpu", batch=1, conf=None, build_options={})
    assert same == base
    changed = base.overriding(batch=2, iou=0.3, build_options={"b": "y"})
    assert (changed.batch, changed.iou, changed.conf) == (2, 0.3, 0.5)
    assert changed.build_options == {"a": "x", "b": "y"}


def test_build_option_pairs():
    assert parse_build_options(["dcn=plugin", "other = a", "dcn=decomposed"]) == {"dcn": "decomposed", "other": "a"}
    for bad in ("dcn", "=x", "dcn="):
        with pytest.raises(UsageError, match=f"--build-option: expected NAME=VALUE, got {bad!r}"):
            parse_build_options([bad])


def test_unknown_build_option_names_and_values_list_the_known_ones():
    check_build_options({"dcn": "decomposed"})
    with pytest.raises(UsageError, match=r"unknown build option 'dnc' \(known: .*dcn"):
        check_build_options({"dnc": "decomposed"})
    with pytest.raises(UsageError, match=r"unknown --build-option dcn=magic \(choose from: auto, builtin, plugin, decomposed\)"):
        check_build_options({"dcn": "magic"})


def test_load_takes_keywords_or_one_options_object():
    detector = trtdet.load("yolo", iou=0.5, conf=0.4, batch=2)
    assert detector.spec.iou_threshold == 0.5 and detector.spec.conf_threshold == 0.4 and detector.batch == 2
    options = DetectorOptions(conf=0.3, batch=3)
    from_object = trtdet.load("yolo", options=options, iou=0.6)
    assert from_object.spec.conf_threshold == 0.3 and from_object.spec.iou_threshold == 0.6
    assert from_object.batch == 3
    with pytest.raises(UsageError, match="unknown --build-option dcn=magic"):
        trtdet.load("yolo", build_options={"dcn": "magic"})


def test_cli_passes_iou_and_checks_build_options(photos):
    image = str(photos["grace_hopper"])
    loose = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", image, "--json", "-", "-q", "--iou", "0.99"])
    strict = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", image, "--json", "-", "-q", "--iou", "0.01"])
    assert loose.exit_code == 0 and strict.exit_code == 0, loose.output + strict.output
    assert loose.stdout.count('"box"') >= strict.stdout.count('"box"')
    bad = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", image, "--build-option", "dcn=magic"])
    assert bad.exit_code == 1
    assert "error: unknown --build-option dcn=magic (choose from: auto, builtin, plugin, decomposed)" in bad.output
    odd = CliRunner().invoke(cli, ["bench", "-m", "yolo", "--build-option", "nonsense"])
    assert odd.exit_code == 1 and "--build-option: expected NAME=VALUE, got 'nonsense'" in odd.output
