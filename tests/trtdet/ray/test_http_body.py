"""``trtdet serve``'s ingress: bodies parsed and images decoded off its event loop, multipart parts and
decoded bytes bounded, records in ``trtdet run``'s schema. No Ray here: the detector replica is a
stand-in coroutine, the request a plain ASGI scope."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import cv2
import numpy as np
import pytest

from trtdet.errors import InputError
from trtdet.ray.http_body import MAX_PARTS, AsyncByteBudget, image_bytes
from trtdet.ray.serve import DECODE_THREADS, Ingress

RECORD_KEYS = {"source", "frame", "width", "height", "detections", "error", "output", "warning", "speed"}


def _png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))
    assert ok
    return data.tobytes()


def _form(parts: int, image: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    fields = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n".encode()
                      for i in range(parts - 1))
    file = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return fields + file, f"multipart/form-data; boundary={boundary}"


def _request(method: str, path: str, body: bytes = b"", content_type: str = "application/octet-stream"):
    from starlette.requests import Request

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "scheme": "http",
             "server": ("127.0.0.1", 8000), "root_path": "",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    return Request(scope, receive)


class _Remote:
    def __init__(self, function):
        self.function = function

    def remote(self, *args):
        return self.function(*args)


class StandInReplica:
    """What the ingress awaits from the detector deployment; ``detect`` can be held back."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.go.set()
        self.detect = _Remote(self._detect)
        self.info = _Remote(self._info)

    async def _detect(self, image):
        await self.go.wait()
        return {"detections": [{"box": [0.0, 0.0, 1.0, 1.0], "score": 0.9, "class_id": 0, "label": "person"}]}

    async def _info(self):
        return {"model": "yolo", "backend": "stand-in", "device": "cpu"}


def _answer(response) -> tuple[int, dict]:
    return response.status_code, json.loads(response.body)


def test_a_form_of_many_parts_is_refused_before_it_is_parsed():
    body, content_type = _form(100_000, _png(8, 8))
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        image_bytes(body, content_type, "request")
    assert str(caught.value) == f"request: multipart form of 100000 parts; at most {MAX_PARTS} are accepted"
    assert time.perf_counter() - started < 5  # counted, not parsed (the parser takes ~15 s on this many)
    small, content_type = _form(3, _png(8, 8))
    assert image_bytes(small, content_type) == _png(8, 8)
    with pytest.raises(InputError, match="names no boundary"):
        image_bytes(small, "multipart/form-data")


def test_decoding_runs_off_the_event_loop_and_health_answers_meanwhile(monkeypatch):
    import trtdet.io.images as images

    real_decode = images.decode_image
    entered, release = threading.Event(), threading.Event()
    threads: list[str] = []

    def slow_decode(data, source):
        threads.append(threading.current_thread().name)
        entered.set()
        release.wait(10)
        return real_decode(data, source)

    monkeypatch.setattr(images, "decode_image", slow_decode)
    ingress = Ingress(StandInReplica(), "yolo", 0.25, 1 << 20)
    body, content_type = _form(3, _png(64, 48))

    async def scenario():
        detect = asyncio.create_task(ingress(_request("POST", "/detect", body, content_type)))
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        health = await asyncio.wait_for(ingress(_request("GET", "/healthz")), 5)  # the loop is free
        answered_while_decoding = not release.is_set()
        release.set()
        return _answer(health), answered_while_decoding, _answer(await asyncio.wait_for(detect, 10))

    health, answered_while_decoding, (status, record) = asyncio.run(scenario())
    assert health == (200, {"status": "ok", "model": "yolo", "backend": "stand-in", "device": "cpu"})
    assert answered_while_decoding and threads and all(t.startswith("trtdet-decode") for t in threads)
    assert ingress.pool._max_workers == DECODE_THREADS
    assert status == 200 and set(record) == RECORD_KEYS
    assert (record["width"], record["height"], record["output"], record["warning"], record["error"]) == (64, 48, None, None, None)


def test_decoded_images_held_at_once_stay_within_the_byte_budget(monkeypatch):
    """Two images of 64x48 (9,216 bytes decoded) under a 10,000-byte budget: the second is decoded
    only once the first has been answered."""
    import trtdet.io.images as images

    real_decode = images.decode_image
    decoded: list[str] = []

    def counting_decode(data, source):
        decoded.append(source)
        return real_decode(data, source)

    monkeypatch.setattr(images, "decode_image", counting_decode)
    replica = StandInReplica()
    ingress = Ingress(replica, "yolo", 0.25, 1 << 20, decode_bytes=10_000)

    async def scenario():
        replica.go.clear()  # the first request waits in the replica, holding its image
        first = asyncio.create_task(ingress(_request("POST", "/detect", _png(64, 48))))
        while not decoded:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(ingress(_request("POST", "/detect", _png(64, 48))))
        await asyncio.sleep(0.5)
        waiting = len(decoded)
        replica.go.set()
        return waiting, [_answer(r)[0] for r in await asyncio.wait_for(asyncio.gather(first, second), 10)]

    waiting, statuses = asyncio.run(scenario())
    assert waiting == 1 and statuses == [200, 200] and len(decoded) == 2


def test_a_declared_pixel_bomb_is_refused_from_its_header(monkeypatch):
    monkeypatch.setenv("TRTDET_MAX_IMAGE_PIXELS", "1000")
    ingress = Ingress(StandInReplica(), "yolo", 0.25, 1 << 20)
    status, answer = asyncio.run(_call(ingress, _png(64, 48)))
    assert status == 400 and answer["error"].startswith("request: image too large: 64x48 = 3,072 pixels")


async def _call(ingress, body):
    return _answer(await ingress(_request("POST", "/detect", body)))


def test_the_budget_lets_one_oversized_image_through_alone():
    async def scenario():
        budget = AsyncByteBudget(100)
        order = []

        async def hold(name, nbytes, seconds):
            async with budget.hold(nbytes):
                order.append((name, budget.used))
                await asyncio.sleep(seconds)

        await asyncio.gather(hold("a", 60, 0.2), hold("b", 60, 0), hold("huge", 500, 0))
        return order

    order = asyncio.run(scenario())
    assert order[0] == ("a", 60) and sorted(order[1:]) == [("b", 60), ("huge", 500)]
