"""``trtdet batch`` on a local Ray: one record per input, the same detections as ``trtdet run``, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trtdet.cli.main import cli
from trtdet.errors import UsageError

from .conftest import MODEL_ARGS

pytestmark = pytest.mark.slow


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(output.glob("*.json")) for line in path.read_text().splitlines() if line]


def _run_reference(sources: list[str], tmp_path: Path) -> dict[str, dict]:
    """``trtdet run --json`` on the same inputs: the reference records."""
    target = tmp_path / "run.jsonl"
    args = ["run", *MODEL_ARGS, "--json", str(target), "-q", "--batch", "8"]
    for source in sources:
        args += ["-s", source]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output  # some inputs are bad
    return {r["source"]: r for r in map(json.loads, target.read_text().splitlines())}


def _assert_same(batch: dict, run: dict) -> None:
    assert (batch["width"], batch["height"]) == (run["width"], run["height"])
    assert [d["class_id"] for d in batch["detections"]] == [d["class_id"] for d in run["detections"]], batch["source"]
    for got, want in zip(batch["detections"], run["detections"], strict=True):
        np.testing.assert_allclose(got["box"], want["box"], atol=1e-3)
        assert abs(got["score"] - want["score"]) <= 1e-3 and got["label"] == want["label"]


def test_two_workers_write_one_record_per_input_equal_to_trtdet_run(ray_session, image_set, tmp_path):
    output = tmp_path / "out"
    args = ["batch", *MODEL_ARGS, "-o", str(output), "--workers", "2", "--cpus-per-worker", "0.5", "--batch", "8",
            "--shard-size", "64", "-q"]
    for source in image_set["sources"]:
        args += ["-s", source]
    started = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2, result.output  # exit 2: some inputs failed
    records = _records(output)
    sources = [r["source"] for r in records]
    expected = set(image_set["good"]) | set(image_set["bad"])
    assert len(sources) == len(set(sources)) == len(expected) == 200 and set(sources) == expected
    by_source = {r["source"]: r for r in records}
    assert all(by_source[s]["error"] is None for s in image_set["good"])
    for source in image_set["bad"]:
        error = by_source[source]["error"]
        assert error and error.startswith(source) and "\n" not in error, (source, error)
    assert "clip.mp4: a video" in by_source[next(s for s in image_set["bad"] if s.endswith(".mp4"))]["error"]
    assert f"200 inputs: 0 already done, 200 written now ({len(image_set['bad'])} failed)" in result.output
    reference = _run_reference(image_set["sources"], tmp_path)
    assert set(reference) == expected
    for source in image_set["good"]:
        _assert_same(by_source[source], reference[source])
    for source in image_set["bad"]:
        assert reference[source]["error"] is not None  # trtdet run fails the same inputs
    assert sum(len(by_source[s]["detections"]) for s in image_set["good"]) > 100  # real detections, not empties
    assert elapsed < 240


def test_a_killed_run_resumes_with_nothing_lost_or_twice(ray_session, image_set, tmp_path):
    """Kill -9 the driver once shards appear, plant a half-written shard, re-run: complete, no duplicates."""
    output = tmp_path / "out"
    sources = []
    for source in image_set["sources"]:
        sources += ["-s", source]
    command = [sys.executable, "-m", "trtdet.cli.main", "batch", *MODEL_ARGS, "-o", str(output), "--workers", "1",
               "--cpus-per-worker", "0.5", "--batch", "4", "--shard-size", "8", "-q",
               "--address", ray_session.get_runtime_context().gcs_address, *sources]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list(output.glob("*.json"))) < 3 and process.poll() is None:
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    first = _records(output)
    assert 0 < len(first) < 200
    half = output / "trtdet-records-0123456789abcdef_000099.json"  # named as trtdet batch names its shards
    half.write_text(json.dumps({"source": image_set["good"][-1], "error": None}) + "\n" + '{"source": "cut sh')
    result = CliRunner().invoke(cli, ["batch", *MODEL_ARGS, "-o", str(output), "--workers", "2",
                                      "--cpus-per-worker", "0.5", "--batch", "8", *sources])
    assert result.exit_code == 2, result.output
    assert "removed an incomplete shard" in result.output and not half.exists()
    records = _records(output)
    names = [r["source"] for r in records]
    assert len(names) == len(set(names)) == 200, "duplicates or losses after resuming"
    assert f"inputs: {len({r['source'] for r in first})} already done" in result.output
    again = CliRunner().invoke(cli, ["batch", *MODEL_ARGS, "-o", str(output), *sources])
    assert again.exit_code == 2  # the bad inputs' records are still there
    assert f"200 already done ({len(image_set['bad'])} of them failed), 0 written now" in again.output
    assert len(_records(output)) == 200


def test_parquet_shards_have_the_record_schema(ray_session, image_set, tmp_path):
    import pyarrow.parquet as pq

    from trtdet.ray import RECORD_SCHEMA

    picks = image_set["good"][:6] + image_set["bad"][:2]
    args = ["batch", *MODEL_ARGS, "-o", str(tmp_path / "pq"), "--format", "parquet", "--annotate", "-q",
            "--cpus-per-worker", "0.5"]
    for source in picks:
        args += ["-s", source]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    table = pq.read_table([str(p) for p in sorted((tmp_path / "pq").glob("*.parquet"))])
    assert table.schema.equals(RECORD_SCHEMA)
    rows = {r["source"]: r for r in table.to_pylist()}
    assert set(rows) == set(picks)
    for source in image_set["good"][:6]:
        written = Path(rows[source]["output"])
        assert written.is_file() and written.parent == tmp_path / "pq" / "images"
    assert all(rows[s]["output"] is None and rows[s]["error"] for s in image_set["bad"][:2])


def test_detect_in_a_users_own_ray_data_pipeline(ray_session, image_set):
    """``trtdet.ray.Detect`` on ``read_binary_files`` output, as the issue's one-liner."""
    import ray

    from trtdet.ray import Detect

    folder = Path(image_set["good"][0]).parent
    ds = ray.data.read_binary_files(str(folder), include_paths=True).limit(12)
    ds = ds.map_batches(Detect, fn_constructor_kwargs={"model": "yolo", "input_size": (256, 256)},
                        concurrency=1, batch_size=4, num_cpus=0.5)
    rows = ds.take_all()
    assert len(rows) == 12 and all(r["error"] is None and r["width"] > 0 for r in rows)
    assert sum(len(r["detections"]) for r in rows) > 0


def test_workers_ask_ray_for_the_gpus_given_and_see_only_theirs(ray_session):
    import ray

    from trtdet.ray.cluster import worker_resources

    assert worker_resources("cpu", None, 1) == {"num_gpus": 0.0, "num_cpus": 1.0}
    assert worker_resources("cuda", None, 0.5) == {"num_gpus": 1.0, "num_cpus": 0.5}
    with pytest.raises(UsageError, match="Ray assigns each worker its GPUs; use --device cuda"):
        worker_resources("cuda:1", None, 1)

    @ray.remote
    class Probe:
        def visible(self) -> tuple[str, list]:
            return os.environ.get("CUDA_VISIBLE_DEVICES", ""), [str(g) for g in ray.get_gpu_ids()]

    probes = [Probe.options(**worker_resources("cuda", 1, 0.25)).remote() for _ in range(2)]
    seen = ray.get([p.visible.remote() for p in probes])
    assert sorted(s[0] for s in seen) != [] and len({s[0] for s in seen}) == 2
    assert all(s[0] == ",".join(s[1]) and len(s[1]) == 1 for s in seen), seen
    pair = Probe.options(**worker_resources("cuda", 2, 0.25)).remote()
    visible, ids = ray.get(pair.visible.remote())
    assert len(ids) == 2 and visible.count(",") == 1
    for probe in [*probes, pair]:
        ray.kill(probe)


def test_more_gpus_than_the_cluster_has_is_one_line(ray_session, image_set):
    result = CliRunner().invoke(cli, ["batch", *MODEL_ARGS, "-s", image_set["good"][0], "-o", "unused",
                                      "--device", "cuda", "--workers", "5", "--cpus-per-worker", "0.1"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "error: 5 workers x 1 GPUs need 5 GPUs; the Ray cluster has 4"


def test_a_corrupt_jpeg_that_decodes_is_a_record_with_a_warning_not_a_failure(ray_session, photos, tmp_path):
    from tests.corrupt_jpeg import encoded, libjpeg_verdict, truncated_scan

    clean, rotten = tmp_path / "clean.jpg", tmp_path / "rotten.jpg"
    clean.write_bytes(encoded(photos["grace_hopper"]))
    rotten.write_bytes(truncated_scan(encoded(photos["grace_hopper"])))
    assert libjpeg_verdict(rotten).corrupt
    output = tmp_path / "out"
    result = CliRunner().invoke(cli, ["batch", *MODEL_ARGS, "-o", str(output), "--cpus-per-worker", "0.5",
                                      "-s", str(clean), "-s", str(rotten)])
    assert result.exit_code == 0, result.output  # a warning is not a failure
    warning = f"{rotten}: corrupt JPEG data (premature end of data segment); decoded anyway, parts of the image may be gray"
    assert f"warning: {warning}" in result.output and "2 written now (0 failed)" in result.output
    by_source = {r["source"]: r for r in _records(output)}
    assert by_source[str(rotten)]["warning"] == warning and by_source[str(rotten)]["error"] is None
    assert by_source[str(clean)]["warning"] is None and by_source[str(rotten)]["detections"]


def test_two_workers_on_a_local_ray_leave_files_they_did_not_write_alone(image_set, tmp_path):
    """``trtdet batch --workers 2`` starting its own Ray (default CPUs: a 2-CPU machine is enough):
    a user's files in --output survive two runs untouched and are reported, non-image files in the
    source folder are counted as ``trtdet run`` counts them, and Ray's chatter stays out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sources = tmp_path / "in"
    sources.mkdir()
    for path in image_set["good"][:3]:
        (sources / Path(path).name).write_bytes(Path(path).read_bytes())
    (sources / "readme.txt").write_text("not an image\n")
    output = tmp_path / "out"
    output.mkdir()
    mine = {"notes.json": b"my notes\n", "config.json": b'{"threshold": 0.5}\n', "list.json": b"[1, 2]\n"}
    for name, data in mine.items():
        (output / name).write_bytes(data)
    pq.write_table(pa.table({"path": ["x.jpg"]}), output / "table.parquet")  # valid Parquet without "source"
    mine["table.parquet"] = (output / "table.parquet").read_bytes()
    command = [sys.executable, "-m", "trtdet.cli.main", "batch", *MODEL_ARGS, "-s", str(sources), "-o", str(output),
               "--workers", "2"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    left_alone = "left alone 4 file(s) in --output that trtdet batch did not write: "
    assert first.stderr.splitlines() == [
        left_alone + ", ".join(str(output / name) for name in sorted(mine)),
        "3 inputs: 0 already done, 3 written now (0 failed), 1 file(s) skipped (not an image or video), "
        + first.stderr.rsplit("), ", 1)[1].strip(),
    ], first.stderr  # nothing else: no Ray INFO/WARNING lines, no progress bars
    assert first.stdout == ""
    shards = sorted(p.name for p in output.glob("trtdet-records-*.json"))
    records = [json.loads(line) for name in shards for line in (output / name).read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(str(sources / Path(p).name) for p in image_set["good"][:3])
    assert all(r["output"] is None and r["warning"] is None and r["error"] is None for r in records)
    # trtdet run's schema: each stage's milliseconds per image, from the pipeline's own timing
    assert all(set(r["speed"]) == {"preprocess", "inference", "postprocess"} and min(r["speed"].values()) >= 0
               for r in records)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "3 inputs: 3 already done, 0 written now" in again.stderr, again.stderr
    assert {name: (output / name).read_bytes() for name in mine} == mine
    assert sorted(p.name for p in output.glob("trtdet-records-*.json")) == shards
