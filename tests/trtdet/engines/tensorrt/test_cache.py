"""The engine cache: where it lives, keyed by exactly the metadata key fields."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from trtdet.engines.artifact_cache import ArtifactCache, cache_dir


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TRTDET_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "trtdet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "trtdet"


def test_default_cache_follows_the_environment(isolated_cache):
    assert ArtifactCache().root == isolated_cache


def test_lookup_hits_only_on_equal_key_fields(tmp_path, make_metadata, sample_plan):
    metadata, plan = make_metadata, sample_plan
    cache = ArtifactCache(tmp_path)
    stored = cache.store(metadata(), plan)
    assert cache.lookup(metadata().key()) == stored
    # Fields outside the key (I/O, plugins, extras) do not matter; every key field does.
    assert cache.lookup(replace(metadata(), outputs=(), extra={}).key()) == stored
    for change in (
        {"precision": "fp32"},
        {"max_batch": 8},
        {"runtime_version": "1.8.0"},
        {"compute_capability": "8.6"},
        {"source_sha256": "cd" * 32},
        {"gpu_name": "NVIDIA H200"},
        {"names": ("person",)},
        {"input_size": (320, 320)},
        {"build_options": {"dcn": "decomposed"}},
        {"trtdet_version": "9.9"},
        {"model": "centernet"},
        {"runtime": "tensorrt"},
    ):
        assert cache.lookup(replace(metadata(), **change).key()) is None, change


def test_corrupt_entry_is_a_miss(tmp_path, make_metadata, sample_plan):
    metadata, plan = make_metadata, sample_plan
    cache = ArtifactCache(tmp_path)
    stored = cache.store(metadata(), plan)
    stored.write_bytes(b"garbage")
    assert cache.lookup(metadata().key()) is None


def test_keep_source(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"onnx bytes")
    kept = cache.keep_source(onnx_file, "ef" * 32)
    assert Path(kept).read_bytes() == b"onnx bytes"
    assert cache.cached_source("ef" * 32) == kept and cache.cached_source("00" * 32) is None


def test_a_cache_at_a_new_path_makes_its_directory(tmp_path):
    # Builds stage their files inside the root (a package build failed with FileNotFoundError).
    root = tmp_path / "not" / "yet"
    cache = ArtifactCache(root)
    assert cache.root.is_dir()
