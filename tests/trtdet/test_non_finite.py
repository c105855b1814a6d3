"""A decoder that gives NaN/Inf (a broken ONNX): those rows are dropped and the input reported once."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import trtdet
from trtdet.cli.main import cli
from trtdet.detections import Detections
from trtdet.pipeline import NonFiniteDetectionsWarning

from . import fake_model
from .fake_model import NAME, image


def _strict_json(line: str) -> dict:
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture
def broken_decoder(tmp_path, monkeypatch):
    """The fake model, with a decoder adding a NaN box and an Inf score to images of value 99."""
    real = fake_model.FakeDecoder.__call__

    def decode(self, outputs, transforms):
        results = real(self, outputs, transforms)
        out = []
        for value, detections in zip(outputs["output"][:, 0], results, strict=True):
            if math.isclose(float(value), 99 / 255, abs_tol=1e-6):
                xyxy = np.vstack([detections.xyxy, [[math.nan, 0, 1, 1], [0, 0, 2, 2]]])
                confidence = np.concatenate([detections.confidence, [0.5, math.inf]])
                detections = Detections(xyxy, confidence, np.zeros(len(xyxy), np.int64))
            out.append(detections)
        return out

    monkeypatch.setattr(fake_model.FakeDecoder, "__call__", decode)
    with fake_model.fake_model(tmp_path) as plugin:
        yield plugin


def test_non_finite_rows_are_dropped_with_one_warning(broken_decoder):
    with trtdet.load(NAME, backend="fake", batch=2) as detector, pytest.warns(NonFiniteDetectionsWarning, match="dropped 2"):
        good, broken = detector([image(40), image(99)])
    assert len(good) == 1 and good.non_finite_dropped == 0  # a declared field now (was: no such attribute)
    assert len(broken) == 1 and broken.non_finite_dropped == 2
    np.testing.assert_allclose(broken.confidence, [99 / 255], atol=1e-6)  # the finite row, as computed by hand
    assert np.isfinite(broken.xyxy).all()


def test_cli_records_stay_valid_json_and_name_the_input(broken_decoder, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image(40))
    cv2.imwrite(str(folder / "b.png"), image(99))
    result = CliRunner().invoke(cli, ["run", "-m", NAME, "--backend", "fake", "-s", str(folder), "--json", "-", "-q",
                                      "--batch", "2"])
    assert result.exit_code == 0, result.output
    rows = [_strict_json(line) for line in result.stdout.splitlines()]
    assert rows[0]["warning"] is None  # always present in run's records, null when absent
    assert rows[1]["warning"] == f"{folder / 'b.png'}: dropped 2 detection(s) with NaN/Inf boxes or scores (the model's output is not finite)"
    assert len(rows[1]["detections"]) == 1 and rows[1]["error"] is None
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {rows[1]['warning']}"]
    assert "NonFiniteDetectionsWarning" not in result.stderr


def test_the_drop_count_is_a_declared_field_the_record_reports(broken_decoder, tmp_path):
    """``Detections.non_finite_dropped`` is a field (default 0, kept when rows are selected), and the
    count in ``trtdet run``'s record is that field's value for the same image."""
    import dataclasses

    declared = {f.name: f.default for f in dataclasses.fields(Detections)}
    assert declared["non_finite_dropped"] == 0 and Detections.empty().non_finite_dropped == 0
    with trtdet.load(NAME, backend="fake") as detector, pytest.warns(NonFiniteDetectionsWarning):
        broken = detector(image(99))
    assert broken.non_finite_dropped == 2 and broken[[0]].non_finite_dropped == 2
    cv2.imwrite(str(tmp_path / "b.png"), image(99))
    result = CliRunner().invoke(cli, ["run", "-m", NAME, "--backend", "fake", "-s", str(tmp_path / "b.png"),
                                      "--json", "-", "-q"])
    record = _strict_json(result.stdout.splitlines()[0])
    assert record["warning"].endswith(f"dropped {broken.non_finite_dropped} detection(s) with NaN/Inf boxes or scores "
                                      "(the model's output is not finite)")
