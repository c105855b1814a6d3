"""Exports to the cache: concurrent exports of one checkpoint each write a file of their own."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from trtdet.exports import export_cached
from trtdet.plugins import get_model


def test_three_concurrent_exports_of_one_new_checkpoint_all_succeed(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    content = b"onnx bytes " * 10_000
    start = threading.Barrier(3)

    def exporter(weights, output, *, input_size, dynamic_batch):
        with open(output, "wb") as handle:  # written in pieces, as a real export is
            for k in range(0, len(content), 10_000):
                handle.write(content[k : k + 10_000])
                handle.flush()
                time.sleep(0.002)
        return output

    spec = dataclasses.replace(get_model("yolo").spec, exporter=exporter)
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"new weights")
    results, errors = [], []

    def export() -> None:
        start.wait()
        try:
            results.append(export_cached(spec, weights, (64, 64)))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=export) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(set(results)) == 1 and results[0].read_bytes() == content
    assert [p.name for p in results[0].parent.iterdir()] == [results[0].name]  # no temporary left


def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))

    def exporter(weights, output, *, input_size, dynamic_batch):
        output.write_bytes(b"half")
        raise RuntimeError("export failed")

    spec = dataclasses.replace(get_model("yolo").spec, exporter=exporter)
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"weights")
    with pytest.raises(RuntimeError, match="export failed"):
        export_cached(spec, weights, (64, 64))
    assert list((tmp_path / "cache" / "exports").iterdir()) == []
