"""Corrupt JPEGs on the GPU reader (``--decode cuda``): what nvJPEG refuses is decoded on the CPU and warned.

nvJPEG (through torchvision) has no warning channel: a damaged file it decodes comes back as a
plain image, as the README says. The reference for "damaged" is libjpeg's verdict through
OpenCV in a child process (tests/corrupt_jpeg.py). Run with ``-s`` to see which damages nvJPEG
accepted.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.corrupt_jpeg import DAMAGES, encoded, libjpeg_verdict
from trtdet.io.images import decode_image
from trtdet.io.sources import FrameReader, Source

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_files_nvjpeg_refuses_get_the_cpu_readers_warning(decoder, photos, tmp_path):
    reader = FrameReader(decoder)
    seen = []
    for encoding, flags in {"baseline": {}, "progressive": {"progressive": 1}}.items():
        for damage, make in DAMAGES.items():
            path = tmp_path / f"{encoding}_{damage}.jpg"
            path.write_bytes(make(encoded(photos["grace_hopper"], **flags)))
            verdict = libjpeg_verdict(path)
            if not (verdict.decoded and verdict.corrupt):
                continue
            refused = decoder.decode([(str(path), path.read_bytes())])[0] is None
            (frame,) = reader.read([Source(str(path), "image")])
            assert frame.error is None, frame.error
            if refused:  # decoded on the CPU: libjpeg's warning, as with --decode cpu
                expected = decode_image(path.read_bytes(), str(path)).warning
                assert expected is not None and frame.warning == expected
                assert isinstance(frame.image, np.ndarray)
            else:  # nvJPEG decoded it: no warning channel (the README's stated limit)
                assert frame.warning is None and frame.image.is_cuda
            seen.append(f"{path.name}: {'refused by nvJPEG -> CPU, warned' if refused else 'decoded by nvJPEG, no warning'}")
    assert len(seen) >= 6
    print("\n" + "\n".join(seen))
