"""``trtdet run`` reports the milliseconds of each stage: per image, in the summary and in records."""

from __future__ import annotations

import json
import math
import re

import cv2
from click.testing import CliRunner

from trtdet.cli.main import cli

MS = r"(\d+\.\d)ms preprocess, (\d+\.\d)ms inference, (\d+\.\d)ms postprocess"


def test_each_image_line_and_the_summary_carry_milliseconds(photos, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(photos["coffee"]),
                                      "-s", str(tmp_path / "missing.jpg"), "--batch", "2", "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    chelsea = next(line for line in lines if line.startswith(f"{photos['chelsea']}: "))
    assert re.fullmatch(re.escape(f"{photos['chelsea']}: 1 cat") + rf" \({MS}\)", chelsea), chelsea
    stderr = result.stderr.strip().splitlines()
    speed = next(line for line in stderr if line.startswith("Speed: "))
    # the last batch is coffee alone (rect batches hold one image shape): scaled to fit 640, then
    # padded to a multiple of 32, as Ultralytics' rect letterbox does
    height, width = cv2.imread(str(photos["coffee"])).shape[:2]
    scale = 640 / max(height, width)
    shape = (1, 3, math.ceil(round(height * scale) / 32) * 32, math.ceil(round(width * scale) / 32) * 32)
    match = re.fullmatch(rf"Speed: {MS} per image at shape " + re.escape(str(shape)), speed)
    assert match and float(match[2]) > 0, speed
    summary, where = stderr[-3:-1]
    assert stderr.index(speed) < stderr.index(summary)
    assert summary.startswith("3 input(s), ") and summary.endswith(" images/s")
    assert where == f"results: annotated files in {out}/ (2)"


def test_json_records_carry_speed_and_null_for_a_failed_input(photos, tmp_path):
    missing = tmp_path / "missing.jpg"
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(missing),
                                      "--json", "-", "-q"])
    assert result.exit_code == 2, result.output
    good, bad = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(good) == {"source", "frame", "width", "height", "detections", "error", "warning", "output", "speed"}
    assert set(good["speed"]) == {"preprocess", "inference", "postprocess"}
    assert all(isinstance(v, float) and v >= 0 for v in good["speed"].values()) and good["speed"]["inference"] > 0
    assert bad["error"] and bad["speed"] is None
