"""``trtdet serve`` on a local Ray: answers equal single-image calls under load, 4xx for bad requests,
no request lost when a replica is killed, replicas placed on the GPUs asked for.

Traffic stays on 127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

import trtdet
from trtdet.options import DetectorOptions

from .conftest import LOAD_KWARGS

pytestmark = pytest.mark.slow
requests = pytest.importorskip("requests")

MAX_BODY = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(ray_session):
    """Two replicas on one logical GPU each (detecting on the CPU), batches of up to 8."""
    from ray import serve

    from trtdet.ray.serve import build_app, start, wait_healthy

    port = _free_port()
    app = build_app("yolo", DetectorOptions(**LOAD_KWARGS), replicas=2, batch=8, max_wait_ms=5,
                    max_body_bytes=MAX_BODY, gpus_per_replica=1, cpus_per_replica=0.5)
    start(app, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def bodies(image_set):
    paths = image_set["good"][:12]
    return [open(path, "rb").read() for path in paths]


@pytest.fixture(scope="module")
def expected(bodies):
    """The reference: the same detector called in this process on each image alone."""
    with trtdet.load("yolo", **LOAD_KWARGS) as detector:
        return [detector(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)).to_records(detector.class_names)
                for b in bodies]


def _load(url: str, bodies: list[bytes], threads: int, per_thread: int, during=None) -> list[tuple[int, int, dict]]:
    answers: list[tuple[int, int, dict]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with requests.Session() as session:
            for n in range(per_thread):
                i = (k * 5 + n) % len(bodies)
                response = session.post(f"{url}/detect", data=bodies[i], timeout=120)
                with lock:
                    answers.append((i, response.status_code, response.json()))

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    if during is not None:
        during(answers)
    for worker in workers:
        worker.join(timeout=300)
    assert not any(w.is_alive() for w in workers), "clients still waiting after 300 s"
    return answers


def _same(got: list[dict], want: list[dict]) -> bool:
    return len(got) == len(want) and all(
        g["class_id"] == w["class_id"] and np.allclose(g["box"], w["box"], atol=1e-3) and abs(g["score"] - w["score"]) <= 1e-3
        for g, w in zip(got, want, strict=True)
    )


def test_eight_clients_times_a_hundred_requests_each_get_their_own_answer(service, bodies, expected):
    started = time.perf_counter()
    answers = _load(service, bodies, threads=8, per_thread=100)
    assert len(answers) == 800 and all(status == 200 for _, status, _ in answers)
    wrong = [i for i, _, body in answers if not _same(body["detections"], expected[i])]
    assert not wrong, f"{len(wrong)} answers differ from the single-image call"
    assert time.perf_counter() - started < 300


def test_bad_requests_get_four_hundreds_with_one_line(service, bodies, expected):
    def post(data=b"", path="/detect", **kwargs):
        return requests.post(f"{service}{path}", data=data, timeout=60, **kwargs)

    for data, status, text in [
        (b"this is not an image", 400, "not a readable image"),
        (b"", 400, "empty body"),
        (b"\xff\xd8\xff" + b"\0" * (MAX_BODY + 10), 413, "over the limit"),
    ]:
        response = post(data)
        message = response.json()["error"]
        assert response.status_code == status and text in message and "\n" not in message, (status, message)
    assert post(bodies[0], params={"model": "centernet"}).status_code == 404
    assert post(bodies[0], params={"conf": "high"}).status_code == 400
    assert post(bodies[0], params={"conf": "0.01"}).status_code == 400  # below the service's threshold
    assert post(bodies[0], params={"colour": "red"}).status_code == 400
    assert requests.get(f"{service}/detect", timeout=30).status_code == 405
    assert requests.get(f"{service}/nowhere", timeout=30).status_code == 404
    assert requests.get(f"{service}/models", timeout=30).json() == {"models": ["yolo"]}
    # Overrides and multipart forms.
    strict = post(bodies[0], params={"conf": "0.5"}).json()["detections"]
    assert strict == [d for d in post(bodies[0]).json()["detections"] if d["score"] >= 0.5]
    form = requests.post(f"{service}/detect", files={"image": ("a.jpg", bodies[1], "image/jpeg")}, timeout=60)
    assert form.status_code == 200 and _same(form.json()["detections"], expected[1])
    assert requests.get(f"{service}/healthz", timeout=30).json()["status"] == "ok"


def test_replicas_are_placed_on_the_gpus_asked_for(service):
    """Each replica asked for one (logical) GPU: the two see different ones, and only theirs."""
    from ray import serve

    handle = serve.get_deployment_handle("Detector", app_name="trtdet")
    seen = {}
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        info = handle.info.remote().result(timeout_s=60)
        seen[info["pid"]] = info
    assert len(seen) == 2
    visible = sorted(info["cuda_visible_devices"] for info in seen.values())
    assert len(set(visible)) == 2 and all(info["gpu_ids"] == [info["cuda_visible_devices"]] for info in seen.values())


def test_a_replica_killed_under_load_loses_no_accepted_request(service, bodies, expected):
    import ray

    def kill_one(answers: list) -> None:
        deadline = time.monotonic() + 60
        while len(answers) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Detector" in a["name"]]
        assert names, "no replica actor found"
        ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=False)

    answers = _load(service, bodies, threads=4, per_thread=60, during=kill_one)
    assert len(answers) == 240
    statuses = [status for _, status, _ in answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) >= 230  # retried onto the other replica, or after the restart
    assert all(_same(body["detections"], expected[i]) for i, status, body in answers if status == 200)


def test_a_corrupt_jpeg_that_decodes_is_answered_with_its_warning(service, photos):
    from tests.corrupt_jpeg import encoded, truncated_scan

    body = truncated_scan(encoded(photos["grace_hopper"]))
    response = requests.post(f"{service}/detect", data=body, params={"source": "rotten.jpg"}, timeout=60)
    assert response.status_code == 200
    answer = response.json()
    assert answer["error"] is None and answer["width"] == 512
    assert answer["warning"] == ("rotten.jpg: corrupt JPEG data (premature end of data segment); "
                                 "decoded anyway, parts of the image may be gray")
    clean = requests.post(f"{service}/detect", data=encoded(photos["grace_hopper"]), timeout=60).json()
    assert clean["warning"] is None and clean["output"] is None  # every key present, as in trtdet run's records
