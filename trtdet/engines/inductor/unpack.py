"""AOTInductor packages are untrusted input: checked, then copied privately, before torch unpacks them.

torch's loader (``AOTIModelPackageLoader``; torch 2.13) extracts every member under
``<top>/data/aotinductor/model/`` to ``<temp dir>/aotinductor_XXXXXX/<member name>`` without
checking the name (``../`` walks out of that folder), writes as many bytes as the member's data
inflates to, and leaves the folder behind when a load fails -- twice, as ``aoti_load_package``
retries a failed load. A package whose model folder holds C++ sources but no compiled library
is compiled on load, with a command line taken from the package's own JSON files. So before
torch sees a package, trtdet:

- refuses, from the zip's central directory and before reading any member's data: names that
  are absolute, carry a drive letter, backslashes, NUL, empty, ``.`` or ``..`` parts, or lie
  outside the package's single top folder; links and other non-regular members; duplicate names
  (also ones differing only in case); encrypted members; more than ``MAX_MEMBERS`` members; a
  total unpacked size above ``max_package_bytes()`` (``TRTDET_MAX_PACKAGE_BYTES``); and a package
  without a compiled model library;
- copies the members (each read up to its declared size and checked against its CRC) into a new
  archive in a private temporary folder (``mkdtemp``: mode 0700), under a top folder named for
  this load, and hands torch that copy. The copy is removed as soon as torch has loaded it;
  when the load fails, torch's unpack folders (found by that name) are removed too. On success
  torch's own folder lives as long as the loaded model and torch removes it with the model;
  what a killed process left is removed by the next load (``trtdet.engines.inductor.leftovers``).

Loading a package still runs the compiled code inside it: the checks keep a hostile archive
from writing outside torch's private folder, filling the disk or leaving files behind, not from
running its library -- load packages you built or trust.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trtdet.errors import ModelError
from trtdet.io.limits import positive_int_setting

from .leftovers import COPY_PREFIX, TAG_PREFIX, hold, remove_stale, unpack_folders

#: The environment variable that raises (or lowers) the largest total unpacked size of a package.
ENV_MAX_PACKAGE_BYTES = "TRTDET_MAX_PACKAGE_BYTES"
#: Default bound on a package's unpacked size: 2 GiB (YOLO11n and CenterNet ResDCN-18 packages are 10-100 MB).
DEFAULT_MAX_PACKAGE_BYTES = 2 * 1024**3
#: More members than any AOTInductor package has (torch writes about ten).
MAX_MEMBERS = 10_000
#: Where torch's loader looks for the default model's files, under the package's top folder.
MODEL_FOLDER = "data/aotinductor/model/"
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def max_package_bytes() -> int:
    """The largest total unpacked size accepted (``TRTDET_MAX_PACKAGE_BYTES``, read on every call)."""
    return positive_int_setting(ENV_MAX_PACKAGE_BYTES, DEFAULT_MAX_PACKAGE_BYTES, "bytes")


def _unsafe(source: str, name: str, why: str) -> ModelError:
    return ModelError(f"{source}: refused before unpacking: member {name!r} {why}")


def _checked_name(info: zipfile.ZipInfo, source: str) -> list[str]:
    """The member's path parts; ``ModelError`` when the name could land anywhere but inside the package."""
    name = info.orig_filename  # before zipfile cuts it at a NUL
    if "\x00" in name:
        raise _unsafe(source, name, "holds a NUL character")
    if "\\" in name:
        raise _unsafe(source, name, "holds a backslash (a Windows path separator)")
    if name.startswith("/") or _DRIVE.match(name):
        raise _unsafe(source, name, "is an absolute path")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _unsafe(source, name, "has an empty, '.' or '..' path part (it could leave the package's folder)")
    return parts


def _kind(info: zipfile.ZipInfo) -> str:
    """``file``, ``folder``, ``link`` or ``special``, from the member's Unix mode (none: a file)."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special"
    return "folder" if info.is_dir() or kind == stat.S_IFDIR else "file"


def checked_members(archive: zipfile.ZipFile, source: str) -> tuple[str, list[zipfile.ZipInfo]]:
    """The package's top folder and its file members, checked from the central directory alone.

    ``ModelError`` naming ``source`` and the first offending member otherwise (see the module docstring).
    """
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelError(f"{source}: refused before unpacking: {len(infos):,} members, more than a package has ({MAX_MEMBERS:,})")
    top = ""
    seen: set[str] = set()
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        parts = _checked_name(info, source)
        name = info.orig_filename
        kind = _kind(info)
        top = top or parts[0]
        if parts[0] != top or (len(parts) < 2 and kind != "folder"):  # the top folder's own entry may be listed
            raise _unsafe(source, name, f"is outside the package's folder {top!r}")
        key = "/".join(parts).casefold()
        if key in seen:
            raise _unsafe(source, name, "appears twice (names may differ only in case)")
        seen.add(key)
        if kind in ("link", "special"):
            raise _unsafe(source, name, f"is a {'symbolic link' if kind == 'link' else 'device, FIFO or socket'}, not a file")
        if info.flag_bits & 0x1:
            raise _unsafe(source, name, "is encrypted")
        if kind == "file":
            files.append(info)
    total = sum(info.file_size for info in files)
    limit = max_package_bytes()
    if total > limit:
        raise ModelError(
            f"{source}: refused before unpacking: its members unpack to {total:,} bytes, over the limit of "
            f"{limit:,} (raise it with {ENV_MAX_PACKAGE_BYTES}=N for a genuine package this large)"
        )
    model = f"{top}/{MODEL_FOLDER}"
    if not any(info.filename.startswith(model) and info.filename.endswith(".so") for info in files):
        raise ModelError(
            f"{source}: no compiled model library ({model}*.so) in the package; trtdet does not compile a "
            "package's sources when loading it: rebuild it with `trtdet build --backend inductor`"
        )
    return top, files


@contextmanager
def _archive_errors(source: str) -> Iterator[None]:
    """Reading problems of the archive as one ``ModelError`` line naming ``source``."""
    try:
        yield
    except zipfile.BadZipFile as exc:
        found = re.search(r"Bad CRC-32 for file '(.*)'", str(exc))
        if found:
            raise ModelError(f"{source}: corrupt AOTInductor package (member {found.group(1)!r} fails its checksum)") from exc
        raise ModelError(f"{source}: corrupt or truncated AOTInductor package ({exc})") from exc
    except (zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{source}: corrupt or truncated AOTInductor package ({exc})") from exc


def check_archive(path: Path) -> None:
    """``ModelError`` naming the file when a member is unsafe (names, kinds, sizes) or fails its CRC."""
    source = str(path)
    try:
        with _archive_errors(source), zipfile.ZipFile(path) as archive:
            _top, files = checked_members(archive, source)
            for info in files:
                with archive.open(info) as member:
                    while member.read(_CHUNK):
                        pass
    except OSError as exc:
        raise ModelError(f"{source}: cannot read the package ({exc.strerror or exc})") from exc


def _copy_members(path: Path, target: Path, tag: str) -> None:
    """Copy the checked members of ``path`` into a new archive at ``target``, top folder renamed ``tag``."""
    source = str(path)
    with _archive_errors(source), zipfile.ZipFile(path) as archive, zipfile.ZipFile(target, "w") as out:
        top, files = checked_members(archive, source)
        for info in files:
            copied = zipfile.ZipInfo(tag + info.filename[len(top):])
            copied.file_size = info.file_size
            with archive.open(info) as reader, out.open(copied, "w", force_zip64=info.file_size > zipfile.ZIP64_LIMIT) as writer:
                shutil.copyfileobj(reader, writer, _CHUNK)


@dataclass
class PrivateCopy:
    """A checked copy of a package: its ``path``; ``tag``, the copy's top folder (named for this load);
    after a load, ``lock``: the descriptor marking torch's unpack folder in use (``leftovers.hold``)."""

    path: Path
    tag: str
    lock: int | None = None

    def local_names(self, text: str) -> str:
        """``text`` (a loader message) with paths inside torch's unpack folder shortened to the member's name."""
        return re.sub(rf"\S*/{re.escape(self.tag)}/", "", text)


@contextmanager
def private_copy(path: Path) -> Iterator[PrivateCopy]:
    """A checked copy of the package at ``path``, in a private temporary folder, for torch to load.

    Leaving the block removes the copy. When the block raises, every folder torch unpacked the
    copy into goes too; when it succeeds, all but the newest (the loaded model's, which torch
    removes with the model), and the newest is marked in use (``PrivateCopy.lock``). Leftovers
    of killed processes are removed first (``leftovers.remove_stale``).
    """
    remove_stale()
    tag = f"{TAG_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    folder = Path(tempfile.mkdtemp(prefix=COPY_PREFIX))
    try:
        copy = folder / "package.pt2"
        try:
            _copy_members(Path(path), copy, tag)
        except OSError as exc:
            raise ModelError(f"{path}: cannot copy the package into a private temporary folder ({exc.strerror or exc})") from exc
        loaded = PrivateCopy(copy, tag)
        try:
            yield loaded
        except BaseException:
            for unpacked in unpack_folders(tag):
                shutil.rmtree(unpacked, ignore_errors=True)
            raise
        unpacked = unpack_folders(tag)
        for stale in unpacked[:-1]:
            shutil.rmtree(stale, ignore_errors=True)
        if unpacked:
            loaded.lock = hold(unpacked[-1] / tag)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
