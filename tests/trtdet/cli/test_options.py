"""CLI usage: exit codes, range checks, the detection options, machine-readable stdout, summaries, help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "Missing option '--model'"),
        (["run", "-m", "yolo", "--batch", "0"], "Invalid value for '--batch'"),
        (["run", "-m", "yolo", "--bogus"], "No such option '--bogus'"),
        (["bogus"], "No such command 'bogus'"),
        (["run", "-m", "yolo", "--conf", "1.5"], "'--conf': 1.5 is not in the range 0<=x<=1"),
        (["run", "-m", "yolo", "--conf", "-1"], "'--conf': -1.0 is not in the range 0<=x<=1"),
        (["run", "-m", "yolo", "--iou", "2"], "'--iou': 2.0 is not in the range 0<=x<=1"),
        (["run", "-m", "yolo", "--input-size", "0", "0"], "'--input-size': expected H W or one size"),
        (["run", "-m", "yolo", "--input-size", "abc"], "'--input-size': expected H W or one size"),
        (["run", "-m", "yolo", "--max-det", "0"], "Invalid value for '--max-det'"),
        (["bench", "-m", "yolo", "--conf", "7"], "'--conf': 7.0 is not in the range 0<=x<=1"),
    ],
)
def test_usage_errors_exit_1_as_the_readme_says(args, message):
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr


def test_the_api_checks_the_same_ranges():
    import trtdet
    from trtdet.errors import UsageError

    for kwargs, message in [
        (dict(conf=1.5), "conf: expected a value in [0, 1], got 1.5"),
        (dict(iou=-0.1), "iou: expected a value in [0, 1], got -0.1"),
        (dict(input_size=(0, 0)), "input_size: expected H W (or one size for a square), each >= 1"),
        (dict(max_det=0), "max_det: expected >= 1, got 0"),
        (dict(classes=["dgo"]), "classes: the model has no class 'dgo'"),
        (dict(classes=[80]), "classes: id 80 is out of range (the model has 80 classes, 0..79)"),
    ]:
        with pytest.raises(UsageError) as info:
            trtdet.load("yolo", **kwargs)
        assert message in str(info.value), kwargs


def _bench_json(*extra: str) -> dict:
    result = run_cli("bench", "-m", "yolo", "--iterations", "1", "--warmup", "0", "--json", "-", "-q", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout is the JSON document alone


def test_one_input_size_means_a_square_and_two_are_h_w():
    assert _bench_json("--input-size", "320")["input_size"] == [320, 320]
    assert _bench_json("--input-size", "256", "320")["input_size"] == [256, 320]


def _labels(record: dict) -> list[str]:
    return [d["label"] for d in record["detections"]]


def test_classes_max_det_and_iou_change_the_detections_as_ultralytics_options_do(photos):
    """--classes keeps those classes of the full result; --max-det the best N; names and ids both work."""
    source = str(photos["grace_hopper"])
    (full,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05"))
    assert {"person", "tie"} <= set(_labels(full))
    for spec in (["--classes", "tie"], ["--classes", "27"], ["--classes", "tie,tie"]):
        (only,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05", *spec))
        assert only["detections"] == [d for d in full["detections"] if d["label"] == "tie"], spec
    (two,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05",
                             "--classes", "person", "--classes", "tie"))
    assert two["detections"] == [d for d in full["detections"] if d["label"] in ("person", "tie")]
    (best,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05", "--max-det", "2"))
    assert best["detections"] == full["detections"][:2]
    (one_tie,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05",
                                 "--classes", "tie", "--max-det", "1"))
    assert one_tie["detections"] == [d for d in full["detections"] if d["label"] == "tie"][:1]
    (loose,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05", "--iou", "0.95"))
    assert len(loose["detections"]) >= len(full["detections"])  # a higher IoU threshold suppresses less


def test_agnostic_nms_on_a_model_without_nms_is_a_usage_error():
    result = run_cli("run", "-m", "centernet", "--agnostic-nms", "-q")
    assert result.exit_code == 1
    assert "model 'centernet' runs no NMS, so agnostic NMS does not apply" in result.stderr
    with_iou = run_cli("run", "-m", "centernet", "--agnostic-nms", "--iou", "0.5", "--json", "-", "-q")
    assert with_iou.exit_code == 0, with_iou.output


def test_agnostic_nms_never_keeps_two_boxes_overlapping_beyond_the_iou(photos):
    source = str(photos["coffee"])
    (aware,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05", "--iou", "0.3"))
    (agnostic,) = records(run_cli("run", "-m", "yolo", "-s", source, "--json", "-", "-q", "--conf", "0.05", "--iou", "0.3",
                                  "--agnostic-nms"))
    boxes = np.array([d["box"] for d in agnostic["detections"]])
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            x1, y1 = np.maximum(boxes[i][:2], boxes[j][:2])
            x2, y2 = np.minimum(boxes[i][2:], boxes[j][2:])
            inter = max(0, x2 - x1) * max(0, y2 - y1)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            assert inter / (area(boxes[i]) + area(boxes[j]) - inter) <= 0.3 + 1e-3
    assert len(agnostic["detections"]) < len(aware["detections"])  # class-aware kept overlapping pairs


def test_json_to_stdout_keeps_stdout_machine_readable_for_run_val_and_bench(photos, tmp_path):
    run = run_cli("run", "-m", "yolo", "-s", str(photos["chelsea"]), "-s", str(photos["coffee"]), "--json", "-")
    assert run.exit_code == 0
    assert [json.loads(line)["source"] for line in run.stdout.splitlines()] == [str(photos["chelsea"]), str(photos["coffee"])]
    assert f"{photos['chelsea']}: 1 cat" in run.stderr and "detections on stdout" in run.stderr
    bench = run_cli("bench", "-m", "yolo", "--iterations", "2", "--warmup", "1", "--json", "-")
    assert json.loads(bench.stdout)["results"][0]["iterations"] == 2
    assert "end to end" in bench.stderr  # the column notes went to stderr


def test_bench_says_what_the_columns_measure_and_shows_progress():
    done = subprocess.run([sys.executable, "-m", "trtdet.cli.main", "bench", "-m", "yolo", "--iterations", "3", "--warmup", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "1 warm-up + 3 timed batches" in lines[0]
    assert lines[1].startswith("pre/infer/decode ms: median time of each stage per batch")
    assert "min/median ms: one detector.detect(batch) call end to end" in lines[1]
    assert lines[2].split() == ["batch", "pre", "ms", "infer", "ms", "decode", "ms", "min", "ms", "median", "ms", "img/s"]
    assert "batch 1" in done.stderr  # the progress bar


def test_the_summary_says_where_results_went(photos, tmp_path):
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    shutil.copy(photos["chelsea"], folder / "a" / "img.png")
    shutil.copy(photos["coffee"], folder / "b" / "img.png")
    (folder / "list.txt").write_text("skipped")
    out, jsonl = tmp_path / "out", tmp_path / "d.jsonl"
    result = run_cli("run", "-m", "yolo", "-s", str(folder), "-o", str(out), "--json", str(jsonl))
    assert result.exit_code == 0, result.output
    summary, where = result.stderr.strip().splitlines()[-2:]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    found = sum(len(r["detections"]) for r in rows)
    assert summary.startswith(f"2 input(s), {found} detection(s), 0 failed, 1 file(s) skipped (not an image or video), ")
    assert summary.endswith(" images/s")
    assert where == f"results: annotated files in {out}/ (2); detections in {jsonl}"
    # subfolders are mirrored, and each record names its annotated file
    assert (out / "a" / "img.png").is_file() and (out / "b" / "img.png").is_file()
    assert [r["output"] for r in rows] == [str(out / "a" / "img.png"), str(out / "b" / "img.png")]
    assert cv2.imread(rows[0]["output"]).shape == cv2.imread(str(photos["chelsea"])).shape


def test_two_files_of_one_name_given_by_name_do_not_overwrite_each_other(photos, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(photos["chelsea"], tmp_path / name / "img.png")
    out = tmp_path / "out"
    result = run_cli("run", "-m", "yolo", "-s", str(tmp_path / "a" / "img.png"), "-s", str(tmp_path / "b" / "img.png"),
                     "-o", str(out), "--json", "-", "-q")
    assert [r["output"] for r in records(result)] == [str(out / "img.png"), str(out / "img_1.png")]


def test_help_summaries_are_whole_sentences_and_run_shows_the_source_default():
    top = run_cli("--help").stdout
    commands = top.split("Commands:")[1].strip().splitlines()
    assert len(commands) >= 7 and not any(line.rstrip().endswith("...") for line in commands)
    assert all(line.rstrip().endswith(".") for line in commands)
    run_help = " ".join(run_cli("run", "--help").stdout.split())
    assert "[default: the model's sample photo]" in run_help


def test_build_refuses_an_onnx_whose_head_is_another_models(yolo_onnx, tmp_path):
    target = tmp_path / "wrong.engine"
    result = run_cli("build", str(yolo_onnx), "-m", "centernet", "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {yolo_onnx}: output 'output0' has shape ['batch', 84, 'anchors'], expected [B, 16384, 164] "
        "(4 + 2 x 80 classes)"
    )
    assert not target.exists()


def test_a_missing_torch_is_one_line_with_the_install_command(tmp_path):
    """``--weights`` needs PyTorch: simulate its absence in a fresh process."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"checkpoint")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from trtdet.cli.main import main\n"
        f"sys.argv = ['trtdet', 'export', '-m', 'centernet', '--weights', {str(weights)!r}, '-o', {str(tmp_path / 'o.onnx')!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: this needs the Python package 'torch', which is not installed: pip install torch "
        "(or pip install 'trtdet[torch]'; on a GPU first the torch build for your CUDA)"
    )


@pytest.mark.parametrize(("flag", "expected"), [([], None), (["--cuda-graphs"], True), (["--no-cuda-graphs"], False)])
def test_cuda_graphs_default_lets_the_backend_decide(flag, expected):
    """No flag leaves ``cuda_graphs`` None: inductor packages replay in graphs, eager torch does not."""
    import click

    from trtdet.cli.common import detector_options, model_options

    seen = {}

    @click.command()
    @model_options
    def probe(**given):
        seen["options"] = detector_options(given)

    assert CliRunner().invoke(probe, ["-m", "yolo", *flag]).exit_code == 0
    assert seen["options"].cuda_graphs is expected


def test_inductor_engines_replay_in_graphs_unless_told_not_to():
    from trtdet.engines.inductor.backend import graphs_wanted
    from trtdet.options import DetectorOptions

    assert graphs_wanted(DetectorOptions(device="cuda")) is True
    assert graphs_wanted(DetectorOptions(device="cuda", cuda_graphs=False)) is False
    assert graphs_wanted(DetectorOptions(device="cuda", cuda_graphs=True)) is True
