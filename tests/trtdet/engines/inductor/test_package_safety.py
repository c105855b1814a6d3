"""Engine packages are untrusted input: hostile ``.pt2`` archives are refused before anything is unpacked.

The archives are crafted here with ``zipfile`` in torch's package layout (no compile needed);
every refusal happens before torch loads anything. Where torch does load (a package that passes
the checks but whose library is no library), nothing may be left in the temporary folder.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import trtdet  # noqa: E402
from trtdet.contracts.artifact import ArtifactMetadata  # noqa: E402
from trtdet.engines.inductor.leftovers import LOCK_NAME, hold, remove_stale  # noqa: E402
from trtdet.engines.inductor.load_check import FreshProcessCheck  # noqa: E402
from trtdet.engines.inductor.package import METADATA_ENTRY, check_archive, read_package_metadata  # noqa: E402
from trtdet.engines.inductor.unpack import DEFAULT_MAX_PACKAGE_BYTES, ENV_MAX_PACKAGE_BYTES, max_package_bytes  # noqa: E402
from trtdet.errors import ModelError, UsageError  # noqa: E402

MODEL = "pkg/data/aotinductor/model/"


def _metadata() -> dict:
    """trtdet metadata a CPU package built here would carry, so nothing but the archive itself is wrong."""
    return ArtifactMetadata(
        model="yolo", names=("person",), input_size=(64, 64), precision="fp32", runtime="inductor",
        runtime_version=torch.__version__, compute_capability="cpu", gpu_name=platform.machine(),
        source_sha256="0" * 64, max_batch=4, build_options={"compile": "2"}, trtdet_version="0",
        extra={"device": "cpu", "output_names": ["output"]},
    ).to_json_dict()


def _package(path: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = (), library: bool = True) -> Path:
    """A package in torch's layout (format, version, model folder, trtdet metadata) plus ``extra`` members."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests write on purpose
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pkg/archive_format", "pt2")
            archive.writestr("pkg/archive_version", "0")
            archive.writestr(MODEL + "m.wrapper_metadata.json", json.dumps({"AOTI_DEVICE_KEY": "cpu"}))
            if library:
                archive.writestr(MODEL + "m.wrapper.so", b"\x7fELF this is no shared library")
            for member, data in extra:
                archive.writestr(member, data)
            archive.writestr(f"pkg/{METADATA_ENTRY}", json.dumps(_metadata()))
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Send every temporary folder (Python's, torch's loader's, a child's) into one empty folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


def _escape(target: Path) -> str:
    """A member name that climbs out of torch's unpack folder to ``target``."""
    return MODEL + "../" * 40 + str(target).lstrip("/")


def test_zip_slip_through_the_api_writes_nothing(tmp_path, private_tmp):
    target = tmp_path / "outside" / "x.txt"
    evil = _package(tmp_path / "evil.pt2", [(_escape(target), b"owned")])
    with pytest.raises(ModelError) as info:
        trtdet.load("yolo", engine=evil, device="cpu")
    _one_line(info, str(evil), "refused before unpacking", "could leave the package's folder")
    assert not target.exists() and not target.parent.exists()
    assert _leftovers(private_tmp) == []


def test_zip_slip_through_the_cli_is_one_error_line(tmp_path, private_tmp):
    target = tmp_path / "outside" / "x.txt"
    evil = _package(tmp_path / "evil.pt2", [(_escape(target), b"owned")])
    run = subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", "run", "--model", "yolo", "--engine", str(evil), "--json", "-"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    assert run.returncode == 1 and run.stdout == ""
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused before unpacking" in errors[0] and "Traceback" not in run.stderr
    assert not target.exists() and _leftovers(private_tmp) == []


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _fifo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("/tmp/trtdet-absolute.txt", b"x")], "is an absolute path"),
        ([("C:/Windows/x.txt", b"x")], "is an absolute path"),
        ([(MODEL + "../../../../x.txt", b"x")], "could leave the package's folder"),
        ([(MODEL + "./x.txt", b"x")], "could leave the package's folder"),
        ([(MODEL + "/x.txt", b"x")], "could leave the package's folder"),
        ([(MODEL + "..\\..\\x.txt", b"x")], "holds a backslash"),
        ([("other/x.txt", b"x")], "is outside the package's folder 'pkg'"),
        ([(MODEL + "a.txt", b"1"), (MODEL + "a.txt", b"2")], "appears twice"),
        ([(MODEL + "A.txt", b"1"), (MODEL + "a.txt", b"2")], "appears twice"),
        ([(_link(MODEL + "link"), b"/etc/passwd")], "is a symbolic link"),
        ([(_fifo(MODEL + "fifo"), b"")], "is a device, FIFO or socket"),
    ],
    ids=["absolute", "drive", "dotdot", "dot", "empty-part", "backslash", "outside-top", "duplicate",
         "case-duplicate", "symlink", "fifo"],
)
def test_hostile_member_names_and_kinds_are_refused_before_reading(tmp_path, members, why):
    evil = _package(tmp_path / "evil.pt2", members)
    for check in (read_package_metadata, check_archive):
        with pytest.raises(ModelError) as info:
            check(evil)
        _one_line(info, str(evil), "refused before unpacking", why)


def _patch(path: Path, name: str, local: dict[int, bytes], central: dict[int, bytes]) -> None:
    """Overwrite bytes of member ``name``'s local header and central directory entry (offsets from each start)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        header = archive.getinfo(name).header_offset
    entry = raw.find(b"PK\x01\x02")
    while raw[entry + 46:entry + 46 + len(name)] != name.encode():
        entry = raw.find(b"PK\x01\x02", entry + 4)
        assert entry != -1
    for start, changes in ((header, local), (entry, central)):
        for offset, value in changes.items():
            raw[start + offset:start + offset + len(value)] = value
    path.write_bytes(bytes(raw))


def test_an_encrypted_member_is_refused(tmp_path):
    evil = _package(tmp_path / "evil.pt2", [(MODEL + "secret.bin", b"x" * 64)])
    _patch(evil, MODEL + "secret.bin", local={6: b"\x01"}, central={8: b"\x01"})  # flag bit 0: encrypted
    with pytest.raises(ModelError) as info:
        read_package_metadata(evil)
    _one_line(info, str(evil), "secret.bin", "is encrypted")


def test_a_member_whose_data_outgrows_its_declared_size_fails_its_checksum(tmp_path):
    """Declared 1,000 bytes, data inflating to 1 MB: reading stops at 1,000 bytes, whose CRC is not the member's."""
    liar = tmp_path / "liar.pt2"
    _package(liar)
    with zipfile.ZipFile(liar, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MODEL + "big.bin", bytes(1_000_000))
    declared = (1000).to_bytes(4, "little")
    _patch(liar, MODEL + "big.bin", local={22: declared}, central={24: declared})
    assert zipfile.ZipFile(liar).getinfo(MODEL + "big.bin").file_size == 1000
    with pytest.raises(ModelError) as info:
        check_archive(liar)
    _one_line(info, str(liar), "member 'pkg/data/aotinductor/model/big.bin' fails its checksum")


def test_a_package_without_a_compiled_library_is_never_compiled(tmp_path, private_tmp):
    """torch compiles such a package with the command line its own JSON names; trtdet refuses it."""
    marker = tmp_path / "ran"
    flags = {"compiler": f"touch {marker}; true", "compile_only": True, "cflags": [], "definitions": [],
             "include_dirs": [], "ldflags": [], "libraries_dirs": [], "libraries": [], "passthrough_args": []}
    evil = _package(tmp_path / "evil.pt2", [
        (MODEL + "m.wrapper.cpp", b"int x;"),
        (MODEL + "m.wrapper_compile_flags.json", json.dumps(flags).encode()),
        (MODEL + "m.wrapper_linker_flags.json", json.dumps({**flags, "compile_only": False}).encode()),
    ], library=False)
    with pytest.raises(ModelError) as info:
        trtdet.load("yolo", engine=evil, device="cpu")
    _one_line(info, str(evil), "no compiled model library", "does not compile")
    assert not marker.exists() and _leftovers(private_tmp) == []


def test_the_unpacked_size_is_bounded_from_the_central_directory(tmp_path, private_tmp, monkeypatch):
    assert max_package_bytes() == DEFAULT_MAX_PACKAGE_BYTES == 2 * 1024**3
    bomb = tmp_path / "bomb.pt2"
    _package(bomb)
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MODEL + "zeros.bin", bytes(4_000_000))  # deflates to about 4 KB
    assert bomb.stat().st_size < 50_000
    monkeypatch.setenv(ENV_MAX_PACKAGE_BYTES, "1_000_000")
    with pytest.raises(ModelError) as info:
        trtdet.load("yolo", engine=bomb, device="cpu")
    declared = sum(i.file_size for i in zipfile.ZipFile(bomb).infolist())
    _one_line(info, str(bomb), "refused before unpacking", f"unpack to {declared:,} bytes", "limit of 1,000,000",
              ENV_MAX_PACKAGE_BYTES)
    assert _leftovers(private_tmp) == []
    monkeypatch.setenv(ENV_MAX_PACKAGE_BYTES, "lots")
    with pytest.raises(UsageError, match=f"{ENV_MAX_PACKAGE_BYTES}='lots': expected a whole number of bytes"):
        max_package_bytes()


def test_a_failed_load_leaves_no_folder_behind(tmp_path, private_tmp):
    """The package passes every check, torch unpacks it and fails on its library: nothing stays."""
    broken = _package(tmp_path / "broken.pt2")
    with pytest.raises(ModelError) as info:
        trtdet.load("yolo", engine=broken, device="cpu")
    message = _one_line(info, str(broken), "AOTInductor cannot load the package")
    # torch's own reason, its temporary paths shortened to the member's name in the package
    assert ": data/aotinductor/model/m.wrapper.so: " in message and "aotinductor_" not in message, message
    assert _leftovers(private_tmp) == []


def test_the_fresh_process_check_leaves_no_folder_behind(tmp_path, private_tmp):
    broken = _package(tmp_path / "broken.pt2")
    with FreshProcessCheck([], (64, 64), "float32", "cpu") as check, pytest.raises(ModelError) as info:
        check.run(broken)
    _one_line(info, "fails to load in a fresh process")
    assert _leftovers(private_tmp) == []


def _leftovers(folder: Path) -> list[str]:
    """What ``folder`` holds besides Inductor's compile cache (``torchinductor_<user>``, which torch makes there)."""
    return sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("torchinductor_"))


def _unpack_folder(root: Path, name: str, tag: str, lock: bool) -> Path:
    """An unpack folder as torch leaves it (``<name>/<tag>/data/...``), with trtdet's lock file if ``lock``."""
    inner = root / name / tag / "data" / "aotinductor" / "model"
    inner.mkdir(parents=True)
    (inner / "m.wrapper.so").write_bytes(b"library")
    if lock:
        (root / name / tag / LOCK_NAME).write_bytes(b"")
    return root / name


def test_what_a_killed_process_left_is_removed_by_the_next_load(tmp_path, private_tmp):
    """A SIGKILLed run leaves torch's unpack folder (and maybe its copy); the next load removes exactly those."""
    two_days_ago = time.time() - 2 * 24 * 3600
    killed = _unpack_folder(private_tmp, "aotinductor_Kil1ed", "trtdet-4242-0123456789ab", lock=True)
    killed_mid_load = _unpack_folder(private_tmp, "aotinductor_0ldOne", "trtdet-4243-0123456789ab", lock=False)
    old_copy = private_tmp / "trtdet-package-abc123"
    old_copy.mkdir()
    (old_copy / "package.pt2").write_bytes(b"PK")
    for path in (killed_mid_load, old_copy):
        os.utime(path, (two_days_ago, two_days_ago))
    live = _unpack_folder(private_tmp, "aotinductor_L1veOn", "trtdet-4244-0123456789ab", lock=False)
    held = hold(live / "trtdet-4244-0123456789ab")  # a live engine's folder: its lock is held
    loading = _unpack_folder(private_tmp, "aotinductor_L0ad1n", "trtdet-4245-0123456789ab", lock=False)  # young, unlocked
    foreign = _unpack_folder(private_tmp, "aotinductor_N0tOur", "someone-else", lock=True)
    assert held is not None
    try:
        with pytest.raises(ModelError, match="AOTInductor cannot load the package"):
            trtdet.load("yolo", engine=_package(tmp_path / "broken.pt2"), device="cpu")
        remaining = set(_leftovers(private_tmp))
        assert remaining == {live.name, loading.name, foreign.name}
        assert not killed.exists() and not killed_mid_load.exists() and not old_copy.exists()
    finally:
        os.close(held)
    assert remove_stale() == [live]  # released: stale now


def test_folder_entries_as_zip_tools_write_them_are_accepted(tmp_path):
    """``zip -r`` lists folders (``pkg/``, ``pkg/data/``): harmless, so not refused; a file outside still is."""
    package = _package(tmp_path / "rezipped.pt2", [(zipfile.ZipInfo("pkg/"), b""), (zipfile.ZipInfo("pkg/data/"), b"")])
    check_archive(package)
    assert read_package_metadata(package).model == "yolo"
    with pytest.raises(ModelError, match="member 'pkg2/' is outside the package's folder 'pkg'"):
        check_archive(_package(tmp_path / "two-tops.pt2", [(zipfile.ZipInfo("pkg2/"), b"")]))
