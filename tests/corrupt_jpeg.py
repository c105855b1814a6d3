"""JPEGs damaged the ways files get damaged, and libjpeg's own verdict on them as OpenCV reports it.

The verdict is the independent reference: ``cv2.imdecode`` runs in a child process and
whatever libjpeg prints on its stderr ("Corrupt JPEG data: ...", "Premature end of JPEG file")
is read back, so a test knows a file is corrupt by a tool trtdet did not write.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_DECODE_IN_CHILD = (
    "import sys, cv2, numpy as np\n"
    "image = cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_COLOR)\n"
    "print('decoded' if image is not None else 'none')\n"
)


@dataclass(frozen=True)
class Verdict:
    """What ``cv2.imdecode`` did with a file in a fresh process: decoded or not, and libjpeg's lines."""

    decoded: bool
    stderr: str

    @property
    def corrupt(self) -> bool:
        return "Corrupt JPEG data" in self.stderr or "Premature end" in self.stderr


def libjpeg_verdict(path: Path) -> Verdict:
    done = subprocess.run([sys.executable, "-c", _DECODE_IN_CHILD, str(path)], capture_output=True, text=True,
                          timeout=60, check=True)
    return Verdict(done.stdout.strip() == "decoded", done.stderr.strip())


def _scan_start(data: bytes) -> int:
    return data.index(b"\xff\xda")


def truncated_scan(data: bytes) -> bytes:
    """The entropy-coded data cut in the middle, the end-of-image marker kept (a half-written upload)."""
    start = _scan_start(data)
    return data[: start + (len(data) - start) // 2] + b"\xff\xd9"


def bytes_before_end(data: bytes) -> bytes:
    """Junk bytes between the last scan and the end-of-image marker."""
    return data[:-2] + b"\x00\x11\x22" + b"\xff\xd9"


def flipped_scan(data: bytes, every: int = 997) -> bytes:
    """Bytes of the entropy-coded data flipped every ``every`` bytes (bit rot)."""
    damaged = bytearray(data)
    for at in range(_scan_start(data) + 600, len(data) - 100, every):
        damaged[at] ^= 0x5A
    return bytes(damaged)


def zeroed_scan(data: bytes) -> bytes:
    """A run of 100 zero bytes over the entropy-coded data (a bad disk block)."""
    damaged = bytearray(data)
    start = _scan_start(data) + 800
    damaged[start : start + 100] = bytes(100)
    return bytes(damaged)


def stray_frame_header(data: bytes) -> bytes:
    """A second start-of-frame marker in the middle of the file (two files spliced together)."""
    middle = _scan_start(data) + (len(data) - _scan_start(data)) // 2
    return data[:middle] + b"\xff\xc0\x00\x04\x00\x00" + data[middle:]


def unknown_marker_at_end(data: bytes) -> bytes:
    """An undefined marker after the last scan, before the end-of-image marker."""
    return data[:-2] + b"\xff\x5a" + b"\xff\xd9"


DAMAGES = {"truncated": truncated_scan, "before_eoi": bytes_before_end, "flipped": flipped_scan, "zeroed": zeroed_scan,
           "stray_sof": stray_frame_header, "unknown_marker": unknown_marker_at_end}


def encoded(photo: Path, **flags: int) -> bytes:
    """``photo`` re-encoded by OpenCV (``progressive=1``, ``rst_interval=4`` ... as IMWRITE_JPEG_* flags)."""
    params: list[int] = []
    for name, value in flags.items():
        params += [getattr(cv2, f"IMWRITE_JPEG_{name.upper()}"), value]
    ok, data = cv2.imencode(".jpg", cv2.imread(str(photo)), params)
    assert ok
    return np.asarray(data).tobytes()
