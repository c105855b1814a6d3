"""AOTInductor packages on the CPU: build -> metadata -> cache -> load -> rebuild, against eager torch.

AOTInductor compiles for the CPU too (a C++ compiler is all it needs), so the whole artifact
cycle runs in CI on a tiny network; the GPU tests compile the real models on the H200.
"""

from __future__ import annotations

import gc
import shutil
import stat
import tempfile
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trtdet.context import RunContext  # noqa: E402
from trtdet.contracts.engine import ModelFile  # noqa: E402
from trtdet.engines.inductor.backend import InductorBackend, incompatibility, runnable_package  # noqa: E402
from trtdet.engines.inductor.build import (  # noqa: E402
    COMPILE_REVISION,
    ExportError,
    build_package,
    cached_package,
    package_build_options,
    package_cache,
)
from trtdet.engines.inductor.package import (  # noqa: E402
    METADATA_ENTRY,
    check_archive,
    read_package_metadata,
    write_package_metadata,
)
from trtdet.engines.inductor.runtime import InductorEngine  # noqa: E402
from trtdet.errors import ModelError  # noqa: E402
from trtdet.model import ModelSpec  # noqa: E402
from trtdet.options import DetectorOptions  # noqa: E402

pytestmark = pytest.mark.slow


class TinyNet(torch.nn.Module):
    """Conv -> ReLU -> Conv -> flatten to [B, N, C] (the shape of a detector's head output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.conv2 = torch.nn.Conv2d(8, 6, 1)

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return y.flatten(2).transpose(1, 2)


class DataDependent(TinyNet):
    def forward(self, x):
        if x.sum() > 0:  # a branch on a tensor's value: torch.export cannot trace it
            return super().forward(x)
        return super().forward(-x)


def _spec(network: type[torch.nn.Module]) -> ModelSpec:
    def torch_model(path: Path):
        module = network()
        module.load_state_dict(torch.load(path, weights_only=True))
        module.trtdet_metadata = {"names": '["a", "b"]'}
        return module.eval()

    return ModelSpec(name="tinynet", class_names=("x", "y"), input_size=(32, 32), torch_model=torch_model)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def built(checkpoint, cache_root):
    context = RunContext.of("cpu", batch=4)
    messages: list[str] = []
    result = build_package(ModelFile(checkpoint, "weights"), _spec(TinyNet), context, cache=package_cache(cache_root), report=messages.append)
    return result, messages


def _reference(checkpoint: Path, batch):
    module = TinyNet()
    module.load_state_dict(torch.load(checkpoint, weights_only=True))
    with torch.no_grad():
        return module.eval()(batch).numpy()


def test_a_build_describes_itself_and_says_it_compiles_once(built, checkpoint):
    result, messages = built
    meta = result.metadata
    assert not result.cached and result.path.suffix == ".pt2"
    assert (meta.model, meta.names, meta.input_size, meta.precision) == ("tinynet", ("a", "b"), (32, 32), "fp32")
    assert meta.runtime == "inductor" and meta.runtime_version == torch.__version__
    assert meta.compute_capability == "cpu" and meta.max_batch == 32
    assert meta.extra["device"] == "cpu" and meta.extra["source_kind"] == "weights"
    assert meta.extra["output_names"] == ["output"] and meta.extra["op_libraries"] == []
    assert dict(meta.build_options) == {"compile": COMPILE_REVISION}  # in the key: a new way to compile rebuilds
    assert any("once" in m for m in messages) and any("fresh process" in m for m in messages)
    # The check's child ran: it reports its own start, load and first-run times.
    assert {"load_check_start_s", "load_check_load_s", "load_check_first_run_s"} <= set(result.phases)


def test_the_package_runs_any_batch_like_the_eager_network(built, checkpoint):
    result, _ = built
    engine = InductorEngine(result.path, result.metadata, cuda_graphs=False)
    engine.activate()
    for batch in (1, 3, 32):
        x = torch.rand(batch, 3, 32, 32)
        out = engine(x.numpy())["output"]
        assert out.shape == (batch, 256, 6)
        assert abs(out - _reference(checkpoint, x)).max() < 1e-5
    engine.deactivate()


def test_it_stays_a_plain_pt2_that_torch_loads(built, checkpoint):
    result, _ = built
    runner = torch._inductor.aoti_load_package(str(result.path))
    x = torch.rand(2, 3, 32, 32)
    out = runner(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert abs(out.numpy() - _reference(checkpoint, x)).max() < 1e-5


def test_a_second_build_is_a_cache_hit(built, checkpoint, cache_root):
    result, _ = built
    again = build_package(ModelFile(checkpoint, "weights"), _spec(TinyNet), RunContext.of("cpu", batch=4),
                          cache=package_cache(cache_root))
    assert again.cached and again.path == result.path and again.seconds < 5


def test_truncated_and_corrupt_packages_are_one_line_errors(built, tmp_path):
    result, _ = built
    data = result.path.read_bytes()
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"truncated\.pt2: corrupt or truncated AOTInductor package"):
        read_package_metadata(truncated)
    damaged = tmp_path / "damaged.pt2"
    shutil.copyfile(result.path, damaged)
    with zipfile.ZipFile(damaged) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.compress_size // 2
    raw = bytearray(damaged.read_bytes())
    raw[offset] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match=r"damaged\.pt2: corrupt AOTInductor package \(member .* fails its checksum\)"):
        check_archive(damaged)
    not_zip = tmp_path / "plain.pt2"
    not_zip.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match=r"plain\.pt2: corrupt or truncated"):
        read_package_metadata(not_zip)


def test_a_pt2_without_trtdet_metadata_says_how_to_build_one(built, tmp_path):
    result, _ = built
    bare = tmp_path / "bare.pt2"
    with zipfile.ZipFile(result.path) as source, zipfile.ZipFile(bare, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(METADATA_ENTRY):
                target.writestr(info, source.read(info))
    with pytest.raises(ModelError, match="without trtdet metadata; build it with `trtdet build --backend inductor`"):
        read_package_metadata(bare)


def _with_metadata(result, tmp_path: Path, **changes) -> Path:
    """A copy of the package whose trtdet metadata has ``changes``."""
    copy = tmp_path / "changed.pt2"
    with zipfile.ZipFile(result.path) as source, zipfile.ZipFile(copy, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(METADATA_ENTRY):
                target.writestr(info, source.read(info))
    write_package_metadata(copy, replace(result.metadata, **changes).to_json_dict())
    return copy


def test_a_package_from_another_torch_is_rebuilt_from_the_cached_source(built, tmp_path, cache_root, monkeypatch):
    result, _ = built
    old = _with_metadata(result, tmp_path, runtime_version="2.0.0+cu118")
    assert incompatibility(read_package_metadata(old), "cpu") == (
        f"it was compiled by torch 2.0.0+cu118, this is torch {torch.__version__}"
    )
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(cache_root))
    context = RunContext.of("cpu", batch=4)
    with pytest.warns(UserWarning, match="compiled by torch 2.0.0.*rebuilding from the cached source"):
        path, meta = runnable_package(old, _spec(TinyNet), context, report=lambda _m: None)
    assert path == result.path and meta.runtime_version == torch.__version__  # the rebuild is the cached one


def test_a_mismatch_without_its_source_says_how_to_rebuild(built, tmp_path, monkeypatch):
    result, _ = built
    old = _with_metadata(result, tmp_path, runtime_version="2.0.0", source_sha256="0" * 64)
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match=r"changed\.pt2: it was compiled by torch 2\.0\.0.*not in the cache; rebuild it: "
                       r"trtdet build --backend inductor --weights SOURCE --model tinynet --precision fp32"):
        runnable_package(old, _spec(TinyNet), RunContext.of("cpu"), report=lambda _m: None)


def test_a_package_for_another_device_is_not_run_here(built):
    result, _ = built
    assert incompatibility(result.metadata, "cuda") == "it was compiled for cpu, not cuda"


def test_an_untraceable_network_falls_back_to_eager_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path))
    path = tmp_path / "dd.pth"
    torch.save(DataDependent().state_dict(), path)
    spec = _spec(DataDependent)
    with pytest.raises(ExportError, match=r"dd\.pth: torch\.export cannot trace the network"):
        build_package(ModelFile(path, "weights"), spec, RunContext.of("cpu"), cache=package_cache(tmp_path))
    with pytest.warns(UserWarning, match=r"cannot trace the network.*running the eager torch backend instead"):
        engine = InductorBackend(report=lambda _m: None).load(ModelFile(path, "weights"), spec, DetectorOptions(device="cpu"))
    assert engine.backend == "torch"


def test_a_models_engine_variant_is_in_the_key_of_cuda_packages(monkeypatch):
    from trtdet_centernet.plugin import CENTERNET

    monkeypatch.setenv("TRTDET_DCN", "gather")
    gather = package_build_options(CENTERNET, RunContext.of("cuda"))
    assert gather == {"compile": COMPILE_REVISION, "variant": "dcn=gather"}
    assert package_build_options(CENTERNET, RunContext.of("cpu")) == {"compile": COMPILE_REVISION}


def _damage(path: Path) -> None:
    """Flip one byte in the middle of the package's largest member (its compiled library)."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.compress_size // 2
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_an_unreadable_cache_entry_is_removed_with_one_warning(built, tmp_path):
    result, _ = built
    cache = package_cache(tmp_path / "cache")
    key = result.metadata.key()
    entry = cache.artifact_path(key)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(result.path.read_bytes()[:1000])  # truncated: not even its metadata reads
    with pytest.warns(UserWarning, match=r"corrupt or truncated AOTInductor package.*removing this cache entry") as record:
        assert cached_package(cache, key) is None
    assert len(record) == 1 and not entry.exists()
    shutil.copyfile(result.path, entry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_package(cache, key) == entry  # a whole entry is a hit, silently


def test_a_damaged_cache_entry_is_rebuilt_with_one_warning(built, checkpoint, tmp_path):
    """A cached package whose library fails its CRC is removed and compiled again, not an error on every run."""
    result, _ = built
    cache = package_cache(tmp_path / "cache")
    entry = cache.artifact_path(result.metadata.key())
    entry.parent.mkdir(parents=True)
    shutil.copyfile(result.path, entry)
    _damage(entry)
    with pytest.warns(UserWarning) as record:
        rebuilt = build_package(ModelFile(checkpoint, "weights"), _spec(TinyNet), RunContext.of("cpu", batch=4),
                                cache=cache)
    removed = [w for w in record if "removing this cache entry and building it again" in str(w.message)]
    assert len(removed) == 1 and "fails its checksum" in str(removed[0].message)
    assert not rebuilt.cached and rebuilt.path == entry
    check_archive(entry)  # whole again
    engine = InductorEngine(rebuilt.path, rebuilt.metadata, cuda_graphs=False)
    engine.activate()
    x = torch.rand(2, 3, 32, 32)
    assert abs(engine(x.numpy())["output"] - _reference(checkpoint, x)).max() < 1e-5
    engine.deactivate()


def test_a_loaded_package_is_unpacked_privately_and_removed_with_the_engine(built, checkpoint, tmp_path, monkeypatch):
    """torch unpacks a private copy (top folder named for this load) into a 0700 folder, gone after deactivation."""
    result, _ = built
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))

    def leftovers() -> list[Path]:
        return [entry for entry in folder.iterdir() if not entry.name.startswith("torchinductor_")]

    engine = InductorEngine(result.path, result.metadata, cuda_graphs=False)
    engine.activate()
    unpacked = leftovers()
    assert len(unpacked) == 1 and unpacked[0].name.startswith("aotinductor_")
    assert [entry.name for entry in unpacked[0].iterdir()][0].startswith("trtdet-")
    assert stat.S_IMODE(unpacked[0].stat().st_mode) == 0o700
    x = torch.rand(3, 3, 32, 32)
    assert abs(engine(x.numpy())["output"] - _reference(checkpoint, x)).max() < 1e-5
    engine.deactivate()
    gc.collect()
    assert leftovers() == []


def test_the_backend_builds_through_the_contract(checkpoint, tmp_path):
    """``InductorBackend.build``: a new build, ``use_cache=False`` builds again, then the cache answers; each
    lands at ``request.output`` and describes itself as ``trtdet build`` prints it."""
    from trtdet.contracts.engine import BuildRequest

    backend, spec, context = InductorBackend(report=lambda _m: None), _spec(TinyNet), RunContext.of("cpu", batch=4)
    source = ModelFile(checkpoint, "weights")
    first = backend.build(source, spec, context, BuildRequest(output=tmp_path / "a.pt2"))
    assert not first.cached and first.path == tmp_path / "a.pt2"
    assert read_package_metadata(first.path).key() == first.metadata.key()
    assert first.describe() == f"built in {first.seconds:.1f} s; AOTInductor, torch {torch.__version__}, fp32, batch 1..32, cpu"
    forced = backend.build(source, spec, context, BuildRequest(output=tmp_path / "b.pt2", use_cache=False))
    assert not forced.cached and forced.metadata.key() == first.metadata.key()
    hit = backend.build(source, spec, context, BuildRequest(output=tmp_path / "c.pt2"))
    assert hit.cached and hit.path.read_bytes() == forced.path.read_bytes()
    assert hit.describe().startswith(f"from the package cache; AOTInductor, torch {torch.__version__}, fp32, batch 1..32, ")


def test_a_network_inductor_cannot_compile_falls_back_to_eager_and_says_why(tmp_path, monkeypatch):
    """An AOTInductor compile failure (as the end-to-end heads' TopK gave on an H100) runs eager torch, with one warning."""
    import torch._inductor

    def failing(*_args, **_kwargs):
        raise RuntimeError("Failed to run autotuning code block: An exception occurred in a subprocess")

    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", failing)
    path = tmp_path / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    with pytest.warns(UserWarning, match=r"tiny\.pth: AOTInductor compile failed: Failed to run autotuning.*"
                                         r"running the eager torch backend instead"):
        engine = InductorBackend(report=lambda _m: None).load(ModelFile(path, "weights"), _spec(TinyNet),
                                                              DetectorOptions(device="cpu"))
    assert engine.backend == "torch"
