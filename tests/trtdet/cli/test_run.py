"""`trtdet run`: every input reported, bad ones as one line each, and the exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from trtdet.cli.main import cli


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, photos):
    """A directory of good and bad inputs, the kind users actually have lying around."""
    folder = tmp_path_factory.mktemp("inputs")
    shutil.copy(photos["grace_hopper"], folder / "a_good.jpg")
    (folder / "b_empty.jpg").write_bytes(b"")
    data = photos["grace_hopper"].read_bytes()
    (folder / "c_truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "d_notes.txt").write_text("not an image\n")
    gray = cv2.imread(str(photos["camera"]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "e_gray.png"), gray)
    rgba = cv2.cvtColor(cv2.imread(str(photos["chelsea"])), cv2.COLOR_BGR2BGRA)
    cv2.imwrite(str(folder / "f_rgba.png"), rgba)
    cv2.imwrite(str(folder / "g_16bit.png"), cv2.imread(str(photos["coffee"])).astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "h_1x1.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "i_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9")
    return folder


def test_a_batch_with_bad_inputs_reports_every_input(bad_inputs, tmp_path):
    """The folder's text file is skipped as a folder member, but named explicitly it is an input."""
    missing = tmp_path / "missing.jpg"
    result = run_cli("run", "-m", "yolo", "-s", str(bad_inputs), "-s", str(bad_inputs / "d_notes.txt"), "-s", str(missing),
                     "--json", "-", "--batch", "3", "-q")
    assert result.exit_code == 2, result.output
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in records(result)}
    assert sorted(by_name) == sorted([p.name for p in bad_inputs.iterdir()] + ["missing.jpg"])
    ok = {"a_good.jpg", "e_gray.png", "f_rgba.png", "g_16bit.png", "h_1x1.png"}
    for name, record in by_name.items():
        if name in ok:
            assert record["error"] is None, record
        else:
            assert record["error"] and record["error"].startswith(record["source"]) and "\n" not in record["error"]
            assert record["detections"] == []
    assert by_name["b_empty.jpg"]["error"].endswith("file is empty")
    assert "truncated JPEG" in by_name["c_truncated.jpg"]["error"]
    assert "not a readable image" in by_name["d_notes.txt"]["error"]
    assert by_name["missing.jpg"]["error"].endswith("file not found")
    labels = lambda name: {d["label"] for d in by_name[name]["detections"]}  # noqa: E731
    assert "person" in labels("a_good.jpg") and "person" in labels("e_gray.png")
    assert "cat" in labels("f_rgba.png") and "cup" in labels("g_16bit.png")
    assert by_name["h_1x1.png"]["width"] == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and "5 input(s) failed" in result.stderr


@pytest.mark.slow
def test_huge_image_is_processed(tmp_path):
    huge = np.zeros((9000, 12000, 3), np.uint8)
    cv2.rectangle(huge, (3000, 2000), (9000, 7000), (0, 0, 255), -1)
    cv2.imwrite(str(tmp_path / "huge.jpg"), huge, [cv2.IMWRITE_JPEG_QUALITY, 50])
    result = run_cli("run", "-m", "yolo", "-s", str(tmp_path / "huge.jpg"), "--json", "-", "-q")
    assert result.exit_code == 0, result.output
    (record,) = records(result)
    assert (record["width"], record["height"]) == (12000, 9000) and record["error"] is None


def test_unknown_model_lists_known_models_and_a_close_match():
    result = run_cli("run", "-m", "yollo")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: unknown model 'yollo' (known: " + ", ".join(sorted(_known_models())) + "); did you mean 'yolo'?"
    )


def _known_models() -> list[str]:
    from trtdet.plugins import list_models

    return list(list_models())


def test_onnx_whose_output_does_not_fit_the_head_is_a_model_error(tmp_path, photos):
    """Expand hides the output shape from onnxruntime, so the check must run the model once."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 85, 64])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 85, 64])
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Expand", ["m", "shape"], ["output0"])]
    model = helper.make_model(helper.make_graph(nodes, "wrong", [x], [y], [shape]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "wrong.onnx")
    result = run_cli("run", "-m", "yolo", "--onnx", str(tmp_path / "wrong.onnx"), "-s", str(photos["chelsea"]))
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'wrong.onnx'}: output does not fit the yolo head")
    assert "expected [B, 84, N]" in line and "got output0 [1, 85, 64]" in line


def test_corrupt_model_file_is_one_line(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    result = run_cli("run", "-m", "yolo", "--onnx", str(tmp_path / "junk.onnx"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'junk.onnx'}: onnxruntime cannot load it")


def test_default_run_detects_on_the_shipped_sample():
    result = run_cli("run", "-m", "yolo", "--json", "-")
    assert result.exit_code == 0, result.output
    (record,) = records(result)
    assert record["source"].endswith("sample.jpg")
    assert {"person", "tie"} <= {d["label"] for d in record["detections"]}


def test_video_input_gives_per_frame_records_and_an_annotated_video(tmp_path, photos):
    image = cv2.imread(str(photos["motorcycle"]))
    h, w = image.shape[:2]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for shift in range(4):
        writer.write(np.roll(image, 10 * shift, axis=1))
    writer.release()
    out = tmp_path / "out"
    result = run_cli("run", "-m", "yolo", "-s", str(video), "-s", str(photos["chelsea"]), "--json", "-", "-o", str(out), "--batch", "2", "-q")
    assert result.exit_code == 0, result.output
    recs = records(result)
    assert [r["frame"] for r in recs] == [0, 1, 2, 3, None]
    assert all("motorcycle" in {d["label"] for d in r["detections"]} for r in recs[:4])
    assert (out / "clip.mp4").is_file() and (out / "chelsea.png").is_file()
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_console_script_exit_code_and_human_summary(photos):
    trtdet = shutil.which("trtdet", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert trtdet, "the trtdet console script is not installed"
    done = subprocess.run([trtdet, "run", "-m", "yolo", "-s", str(photos["chelsea"])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert re.fullmatch(re.escape(f"{photos['chelsea']}: 1 cat")
                        + r" \((\d+\.\d)ms preprocess, (\d+\.\d)ms inference, (\d+\.\d)ms postprocess\)", line), line
    summary = done.stderr.strip().splitlines()[-2:]
    assert summary[0].startswith("1 input(s), 1 detection(s), 0 failed, ") and summary[0].endswith(" images/s")
    assert summary[1] == "nothing saved: add --output DIR for annotated images/videos or --json FILE (or -) for detections"


def test_missing_camera_and_unreachable_stream_are_reported(photos):
    result = run_cli("run", "-m", "yolo", "-s", "7", "-s", "rtsp://127.0.0.1:9/none", "-s", str(photos["chelsea"]), "--json", "-", "-q")
    assert result.exit_code == 2
    recs = records(result)
    assert [r["error"] for r in recs] == ["7: cannot open camera", "rtsp://127.0.0.1:9/none: cannot open stream", None]


def test_reading_ahead_on_threads_reports_the_same_records(bad_inputs):
    one = run_cli("run", "-m", "yolo", "-s", str(bad_inputs), "--json", "-", "--batch", "2", "-q", "--workers", "1")
    three = run_cli("run", "-m", "yolo", "-s", str(bad_inputs), "--json", "-", "--batch", "2", "-q", "--workers", "3")
    assert one.exit_code == three.exit_code == 2
    images = [p for p in bad_inputs.iterdir() if p.suffix != ".txt"]  # the text file is skipped
    timeless = [[{k: v for k, v in r.items() if k != "speed"} for r in records(run)] for run in (one, three)]  # ms vary
    assert timeless[0] == timeless[1] and len(records(one)) == len(images)


def test_gpu_jpeg_decoding_needs_a_cuda_run(photos):
    result = run_cli("run", "-m", "yolo", "-s", str(photos["grace_hopper"]), "--decode", "cuda", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --decode cuda needs --device cuda"


def test_corrupt_jpeg_that_decodes_is_one_warning_line_and_not_a_failure(photos, tmp_path):
    """libjpeg's complaint (which OpenCV would print and forget) becomes the record's ``warning``.

    The console script in a child process, so its real stderr is seen: one ``warning:`` line
    from trtdet and nothing from libjpeg; exit 0, since a warning is not a failure.
    """
    from tests.corrupt_jpeg import encoded, libjpeg_verdict, truncated_scan

    clean, rotten = tmp_path / "clean.jpg", tmp_path / "rotten.jpg"
    clean.write_bytes(encoded(photos["grace_hopper"]))
    rotten.write_bytes(truncated_scan(encoded(photos["grace_hopper"])))
    verdict = libjpeg_verdict(rotten)
    assert verdict.decoded and verdict.corrupt, verdict
    trtdet = shutil.which("trtdet", path=str(__import__("pathlib").Path(sys.executable).parent))
    done = subprocess.run([trtdet, "run", "-m", "yolo", "-s", str(clean), "-s", str(rotten), "--json", "-", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warning = f"{rotten}: corrupt JPEG data (premature end of data segment); decoded anyway, parts of the image may be gray"
    assert done.stderr.splitlines() == [f"warning: {warning}"]
    by_name = {r["source"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert by_name[str(clean)]["warning"] is None and by_name[str(clean)]["error"] is None  # always present (issue 27)
    assert by_name[str(rotten)]["warning"] == warning and by_name[str(rotten)]["error"] is None
    assert by_name[str(rotten)]["width"] == 512 and by_name[str(rotten)]["detections"]  # still detected on


def _transposed_output(tmp_path, declared):
    """Ultralytics' YOLO11 fixture (5 classes, real output ``[B, 9, anchors]``) with a Transpose
    appended, so it really gives ``[B, anchors, 9]``, while the file declares ``declared``."""
    from pathlib import Path

    model = onnx.load(Path(__file__).resolve().parents[2] / "data" / "ultralytics" / "yolo11_dynamic.onnx")
    (output,) = model.graph.output
    model.graph.node[-1].output[0] = "untransposed"  # the node that made output0
    for node in model.graph.node:
        node.input[:] = ["untransposed" if name == output.name else name for name in node.input]
    model.graph.node.append(helper.make_node("Transpose", ["untransposed"], [output.name], perm=[0, 2, 1]))
    output.CopyFrom(helper.make_tensor_value_info(output.name, TensorProto.FLOAT, declared))
    path = tmp_path / "lying.onnx"
    onnx.save(model, path)
    import onnxruntime

    quiet = onnxruntime.SessionOptions()
    quiet.log_severity_level = 3  # its own warning about the mismatch, on stderr
    session = onnxruntime.InferenceSession(str(path), quiet, providers=["CPUExecutionProvider"])
    (real,) = session.run(None, {"images": np.zeros((1, 3, 160, 160), np.float32)})
    (told,) = session.get_outputs()
    assert real.shape == (1, 525, 9) and told.shape[:2] == declared[:2]  # onnxruntime trusts the file's dim 1
    return path, told.shape


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_an_onnx_whose_real_output_contradicts_its_declared_shape_is_one_line(tmp_path, photos, backend):
    """Decoded from the declared ``[batch, 9, anchors]`` the real ``[1, 8400, 9]`` (at 640x640) gave garbage with exit 0."""
    path, told = _transposed_output(tmp_path, ["batch", 9, "anchors"])
    # square: every batch runs at 640x640, the input size the expected anchor count is for
    result = run_cli("run", "-m", "yolo", "--onnx", str(path), "--backend", backend, "-s", str(photos["chelsea"]),
                     "-s", str(photos["coffee"]), "--letterbox", "square", "--json", "-", "-q")
    assert result.exit_code == 1, result.output
    assert records(result) == [] and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    if backend == "onnxruntime":  # the declared shape passed the load-time check; the first batch tells
        assert line == (f"error: {path}: output output0 is [1, 8400, 9] when run, but the model declares {told}; "
                        "its declared output shape is wrong (re-export the model)")
    else:  # the torch backend learns the shapes from a trial run at load
        assert line.startswith(f"error: {path}: output does not fit the yolo head") and "got output0 [1, 8400, 9]" in line
