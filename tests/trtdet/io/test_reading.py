"""Reading inputs ahead of detection: JPEG headers for the GPU route, threaded and video read-ahead."""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest

from trtdet.io.gpu_jpeg import gpu_decodable
from trtdet.io.jpeg_header import jpeg_header, plain_orientation
from trtdet.io.sources import Source, _read_ahead, expand_sources, iter_frames


def _jpeg(image: np.ndarray, *params: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, list(params))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize(
    ("params", "process"),
    [((), 0xC0), ((cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 0xC2)],
    ids=["baseline", "progressive"],
)
def test_jpeg_header_reads_what_the_encoder_wrote(params, process):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    header = jpeg_header(_jpeg(image, *params))
    assert header is not None
    assert (header.process, header.precision, header.height, header.width, header.components) == (process, 8, 37, 53, 3)
    assert gpu_decodable(_jpeg(image, *params))


def test_grayscale_jpeg_goes_to_the_gpu_cmyk_png_and_cut_files_do_not():
    gray = _jpeg(np.full((9, 7), 90, np.uint8))
    assert jpeg_header(gray).components == 1 and gpu_decodable(gray)  # type: ignore[union-attr]
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (8, 6), (10, 20, 30, 40)).save(buffer, "JPEG")
    cmyk = buffer.getvalue()
    assert jpeg_header(cmyk).components == 4 and not gpu_decodable(cmyk)  # type: ignore[union-attr]
    ok, png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    assert jpeg_header(png.tobytes()) is None and not gpu_decodable(png.tobytes())
    whole = _jpeg(np.zeros((16, 16, 3), np.uint8))
    assert jpeg_header(whole[:20]) is None  # cut before the frame header
    assert jpeg_header(b"\xff\xd8\xff\xda\x00\x02") is None  # a scan before any frame header


@pytest.mark.parametrize(("orientation", "on_gpu"), [(1, True), (3, False), (6, False), (8, False), (9, False)])
def test_jpegs_turned_by_exif_go_to_the_cpu_reader(orientation, on_gpu):
    """nvJPEG ignores EXIF orientation; cv2.imread (the CPU reader) applies values 2..8, and an
    out-of-range value is OpenCV's to interpret (the CPU reader hands such files to it)."""
    from tests.trtdet.io.test_images import _with_exif_orientation

    data = _with_exif_orientation(_jpeg(np.zeros((12, 20, 3), np.uint8)), orientation, b"MM")
    assert plain_orientation(jpeg_header(data)) == (orientation if orientation <= 8 else None)
    assert gpu_decodable(data) is on_gpu


@pytest.fixture()
def mixed_folder(tmp_path, photos):
    """Good and bad images with a video in the middle of the sources."""
    rng = np.random.default_rng(1)
    for n in range(11):
        image = rng.integers(0, 256, (20 + n, 30, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"img_{n:02d}.{'png' if n % 3 else 'jpg'}"), image)
    (tmp_path / "img_04.txt").write_text("not an image")
    (tmp_path / "img_07.jpg").write_bytes(b"")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (32, 24))
    for shift in range(5):
        writer.write(np.full((24, 32, 3), 40 * shift, np.uint8))
    writer.release()
    images = expand_sources([str(tmp_path)])
    images = [s for s in images if s.kind == "image"] + [Source(str(tmp_path / "img_04.txt"), "image")]
    return images[:6] + [Source(str(video), "video")] + images[6:]


def _summary(frames):
    return [(f.name, f.index, f.error, None if f.image is None else f.image.tobytes()) for f in frames]


@pytest.mark.parametrize("workers", [2, 3])
def test_threaded_read_ahead_gives_the_same_frames_in_the_same_order(mixed_folder, workers):
    expected = _summary(iter_frames(mixed_folder))
    assert [e[1] for e in expected if e[0].endswith("clip.mp4")] == [0, 1, 2, 3, 4]
    assert sum(e[2] is not None for e in expected) == 2
    got = _summary(iter_frames(mixed_folder, workers=workers, chunk=2))
    assert got == expected


def test_read_ahead_stops_its_thread_when_the_consumer_stops_early():
    produced = []

    def frames():
        for n in range(1000):
            produced.append(n)
            yield n

    before = threading.active_count()
    iterator = _read_ahead(frames(), depth=4)  # type: ignore[arg-type]
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    iterator.close()
    assert threading.active_count() == before
    assert len(produced) < 20  # it never ran far ahead


def test_read_ahead_reraises_the_producers_error():
    def frames():
        yield 1
        raise ValueError("decoder broke")

    iterator = _read_ahead(frames(), depth=2)  # type: ignore[arg-type]
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="decoder broke"):
        next(iterator)


class RecordingDecoder:
    """Stands in for nvJPEG to test the reader's routing only (nvJPEG itself: tests/trtdet/gpu)."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.seen: list[str] = []

    def decode(self, files):
        self.seen += [name.rsplit("/", 1)[-1] for name, _ in files]
        return [None if name.endswith(self.refuse) else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                for name, data in files]


def test_reader_sends_only_plain_jpegs_to_the_gpu_and_falls_back_per_file(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    cv2.imwrite(str(tmp_path / "b.png"), image)
    cv2.imwrite(str(tmp_path / "c.jpg"), image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    Image.new("CMYK", (10, 12), (1, 2, 3, 4)).save(tmp_path / "d_cmyk.jpg")
    (tmp_path / "e_empty.jpg").write_bytes(b"")
    sources = expand_sources([str(tmp_path)])
    decoder = RecordingDecoder(refuse="c.jpg")
    frames = list(iter_frames(sources, workers=2, jpeg_decoder=decoder, chunk=8))
    assert decoder.seen == ["a.jpg", "c.jpg"]  # PNG, CMYK and the empty file never reach it
    assert [f.name.rsplit("/", 1)[-1] for f in frames] == ["a.jpg", "b.png", "c.jpg", "d_cmyk.jpg", "e_empty.jpg"]
    assert [f.error is None for f in frames] == [True, True, True, True, False]
    for frame in frames[:4]:  # the refused c.jpg was decoded on the CPU instead
        assert frame.image.shape == (12, 10, 3)
    assert frames[4].error.endswith("file is empty")


class _Held:
    """Bytes of decoded images a reader has produced that the consumer has not taken yet."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        with self.lock:
            self.now += nbytes
            self.peak = max(self.peak, self.now)

    def take(self, frame) -> None:
        if frame.image is not None:
            with self.lock:
                self.now -= frame.image.nbytes


@pytest.mark.parametrize("workers", [2, 4])
def test_read_ahead_is_bounded_by_bytes_not_by_count(tmp_path, monkeypatch, workers):
    import time

    from trtdet.io import sources

    big = np.random.default_rng(0).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    for n in range(16):
        cv2.imwrite(str(tmp_path / f"{n:02d}.png"), big)
    held = _Held()
    real_decode = sources.decode_image

    def counting_decode(data, source):
        decoded = real_decode(data, source)
        held.add(decoded.image.nbytes)
        return decoded

    monkeypatch.setattr(sources, "decode_image", counting_decode)
    one = big.nbytes + (tmp_path / "00.png").stat().st_size  # what the reader counts per file
    budget = int(2.5 * one)
    frames = []
    for frame in iter_frames(expand_sources([str(tmp_path)]), workers=workers, chunk=2, max_bytes=budget):
        held.take(frame)
        frames.append(frame)
        time.sleep(0.01)  # a consumer slower than the readers
    assert len(frames) == 16 and all(f.error is None for f in frames)
    assert held.peak <= budget, f"{held.peak / big.nbytes:.1f} images held for a budget of {budget / big.nbytes:.1f}"


def test_an_image_larger_than_the_whole_budget_is_still_read(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.ones((64, 64, 3), np.uint8))
    frames = list(iter_frames(expand_sources([str(tmp_path)]), workers=2, max_bytes=10))
    assert [f.image.shape for f in frames] == [(64, 64, 3)] * 2


def test_video_read_ahead_is_bounded_by_bytes(tmp_path, monkeypatch):
    import time

    from trtdet.io import sources

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for shift in range(30):
        writer.write(np.full((240, 320, 3), 8 * shift, np.uint8))
    writer.release()
    held = _Held()
    real_iter = sources._iter_video

    def counting_iter(source):
        for frame in real_iter(source):
            if frame.image is not None:
                held.add(frame.image.nbytes)
            yield frame

    monkeypatch.setattr(sources, "_iter_video", counting_iter)
    frame_bytes = 240 * 320 * 3
    budget = 3 * frame_bytes
    count = 0
    for frame in iter_frames([Source(str(video), "video")], workers=2, max_bytes=budget):
        held.take(frame)
        count += 1
        time.sleep(0.01)
    assert count == 30
    # The producer holds at most one decoded frame while it waits for room in the budget.
    assert held.peak <= budget + frame_bytes, held.peak / frame_bytes


def test_a_truncated_video_reports_that_it_ended_early(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    rng = np.random.default_rng(4)
    for _ in range(20):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    capture = cv2.VideoCapture(str(cut))  # the reference: what OpenCV itself reads of the cut file
    declared, readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.read()[0]:
        readable += 1
    capture.release()
    assert declared == 20 and 0 < readable < 20
    frames = list(iter_frames([Source(str(cut), "video")]))
    assert [f.index for f in frames[:-1]] == list(range(readable))
    assert frames[-1].index is None and frames[-1].error == (
        f"{cut}: video ended early: {readable} of the 20 frames its container declares were readable "
        "(truncated or corrupt file)"
    )
    whole = list(iter_frames([Source(str(video), "video")]))
    assert len(whole) == 20 and all(f.error is None for f in whole)
