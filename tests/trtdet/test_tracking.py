"""``trtdet run --track``: supervision's ByteTrack gives each object one identity across video frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from trtdet.cli.main import cli


def _moving_cat_video(path, photos, frames: int = 8) -> None:
    cat = cv2.resize(cv2.imread(str(photos["chelsea"])), (225, 150))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 360))
    for n in range(frames):
        frame = np.full((360, 640, 3), 127, np.uint8)
        x = 20 + 40 * n  # a cat crossing the frame
        frame[100:250, x : x + 225] = cat
        writer.write(frame)
    writer.release()


def test_one_moving_object_keeps_one_track_id_in_the_json_and_the_drawing(tmp_path, photos):
    video = tmp_path / "cat.mp4"
    _moving_cat_video(video, photos)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", "-m", "yolo", "-s", str(video), "-s", str(photos["coffee"]), "--track",
                                      "--json", "-", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    video_rows = [r for r in rows if r["frame"] is not None]
    assert len(video_rows) == 8
    cats = [[d for d in r["detections"] if d["label"] == "cat"] for r in video_rows]
    assert all(len(c) == 1 for c in cats[1:])  # ByteTrack reports a track once it is confirmed
    ids = {c[0]["track_id"] for c in cats if c}
    assert len(ids) == 1
    # boxes move right with the cat, 40 px a frame
    x1 = [c[0]["box"][0] for c in cats if c]
    assert all(b > a for a, b in zip(x1, x1[1:], strict=False))
    photo = next(r for r in rows if r["frame"] is None)
    assert photo["detections"] and all("track_id" not in d for d in photo["detections"])  # images are not tracked
    assert (out / "cat.mp4").is_file()
    assert all(r["speed"]["inference"] > 0 for r in rows)  # tracked frames keep their milliseconds
