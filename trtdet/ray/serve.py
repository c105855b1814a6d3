"""``trtdet serve``: an HTTP detection service on Ray Serve.

Two deployments: ``Ingress`` (HTTP: routes, size limits, decoding, query overrides, retries)
and ``DetectorReplica`` (one detector each, a GPU each on CUDA, requests batched across
concurrent clients with ``@serve.batch``). The ingress retries a request whose replica died
(Ray Serve restarts it) and answers 503 only when no replica takes it.

The ingress's event loop only routes and streams bodies: multipart parsing and decoding run on
a small pool of threads (``DECODE_THREADS``), multipart forms have at most ``MAX_PARTS`` parts,
and decoded images held at once are bounded in bytes (``TRTDET_READ_AHEAD_BYTES``, as
``trtdet run``'s read-ahead), each checked against the image-size limit from its header first.
So one hostile request cannot stall ``/healthz`` or the other clients.

Routes: ``POST /detect`` (image bytes, or a multipart form) -> the record as JSON (``trtdet
run``'s schema: ``output`` and ``warning`` always present, null when there is none);
``?conf=X`` raises the score threshold for that request, ``?model=NAME`` must name the
served model (else 404); ``GET /healthz``; ``GET /models``.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from trtdet.errors import InputError
from trtdet.options import DetectorOptions
from trtdet.results import speed_record

#: How often the ingress retries a request whose replica died before answering 503.
RETRIES = 5
#: Threads of the ingress that parse request bodies and decode images (off its event loop).
DECODE_THREADS = 2
#: CPUs the ingress asks Ray for (the rest of the cluster's CPUs go to the replicas).
INGRESS_CPUS = 0.1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keep_replica_grpc_on_loopback() -> None:
    """On a node whose address is loopback (the local Ray trtdet starts), this Serve replica's
    inter-deployment gRPC server listens on that address too.

    Ray Serve binds that server to ``[::]`` (every interface) whatever the node's address; this
    rebinds it before the replica starts it (called from each deployment's constructor, which
    runs first). On a cluster's node (not loopback) Ray's choice stands: replicas there must be
    reachable from other nodes.
    """
    import ray
    from ray.serve._private import replica

    node_ip = ray.util.get_node_ip_address()
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or not is_loopback(node_ip) or getattr(original, "trtdet_loopback", False):
        return

    def bind(server: Any, address: str) -> Any:
        if address.startswith(("[::]:", "0.0.0.0:")):
            address = f"{node_ip}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    bind.trtdet_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind


class DetectorReplica:
    """One detector; ``detect(image)`` calls from concurrent requests are batched."""

    def __init__(self, model: str, options: dict[str, Any], batch: int, max_wait_ms: float) -> None:
        import trtdet

        keep_replica_grpc_on_loopback()

        self.detector = trtdet.load(model, options=DetectorOptions(**options))
        self.model = model
        self.detect.set_max_batch_size(batch)  # type: ignore[attr-defined]
        self.detect.set_batch_wait_timeout_s(max_wait_ms / 1000.0)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)  # both set per replica in __init__
    async def detect(self, images: list[Any]) -> list[dict[str, Any]]:
        """Per image ``{"detections": [...]}`` or ``{"error": "..."}`` (one bad image fails alone)."""
        return await asyncio.to_thread(self._run, images)

    def _run(self, images: list[Any]) -> list[dict[str, Any]]:
        names = self.detector.class_names
        results: list[dict[str, Any]] = [{} for _ in images]
        with self.detector.scheduler() as scheduler:
            outcomes = [o for i, image in enumerate(images) for o in scheduler.add(image, i)] + scheduler.drain()
        for outcome in outcomes:
            if outcome.error is not None:
                results[outcome.tag] = {"error": f"detection failed: {_first_line(outcome.error)}"}
            else:
                results[outcome.tag] = {"detections": outcome.result.to_records(names),
                                        "speed": speed_record(outcome.result)}
        return results

    def info(self) -> dict[str, Any]:
        """Which model, backend and device this replica runs, and the GPUs Ray gave it."""
        import ray

        spec = self.detector.spec
        return {
            "model": self.model, "backend": self.detector.backend, "device": self.detector.device,
            "batch": self.detector.batch, "input_size": list(spec.input_size),
            "conf": spec.conf_threshold, "classes": len(spec.class_names),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os.getpid(),
        }


class Ingress:
    """The HTTP front: one request in, one JSON answer out; 4xx with one line for bad requests."""

    def __init__(self, detector: Any, model: str, conf: float, max_body_bytes: int,
                 decode_bytes: int | None = None) -> None:
        from trtdet.io.sources import read_ahead_bytes
        from trtdet.ray.http_body import AsyncByteBudget

        keep_replica_grpc_on_loopback()
        self.detector = detector
        self.model = model
        self.conf = conf
        self.max_body_bytes = max_body_bytes
        self.pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="trtdet-decode")
        self.budget = AsyncByteBudget(decode_bytes if decode_bytes is not None else read_ahead_bytes())

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/") or "/"
        try:
            if path == "/detect":
                if request.method != "POST":
                    return self._error(405, "use POST /detect with the image as the body")
                return await self._detect(request)
            if path == "/healthz" and request.method == "GET":
                info = await self._call(lambda: self.detector.info.remote())
                return JSONResponse({"status": "ok", **info})
            if path == "/models" and request.method == "GET":
                return JSONResponse({"models": [self.model]})
            return self._error(404, f"no route {request.method} {path} (POST /detect, GET /healthz, GET /models)")
        except _Unavailable as exc:
            return self._error(503, str(exc))
        except Exception as exc:  # never a 500 that takes the ingress down: one line, and go on
            return self._error(500, f"internal error: {_first_line(exc)}")

    @staticmethod
    def _error(status: int, message: str) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": message}, status_code=status)

    async def _detect(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        from trtdet.io.images import decode_image

        query = dict(request.query_params)
        unknown = sorted(set(query) - {"conf", "model", "source"})
        if unknown:
            return self._error(400, f"unknown query parameter(s) {', '.join(unknown)} (known: conf, model, source)")
        if "model" in query and query["model"] != self.model:
            return self._error(404, f"unknown model {query['model']!r} (this service runs {self.model!r}; GET /models)")
        conf = self.conf
        if "conf" in query:
            try:
                conf = float(query["conf"])
            except ValueError:
                return self._error(400, f"conf: expected a number, got {query['conf']!r}")
            if not self.conf <= conf <= 1:
                return self._error(400, f"conf: expected {self.conf:g}..1 (the service runs at {self.conf:g}; "
                                        f"start it with a lower --conf for lower thresholds), got {conf:g}")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._error(413, f"body of {int(declared)} bytes is over the limit of {self.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                return self._error(413, f"body is over the limit of {self.max_body_bytes} bytes")
        source = query.get("source", "request")
        loop = asyncio.get_running_loop()
        try:
            encoded, cost = await loop.run_in_executor(
                self.pool, _parse, bytes(body), request.headers.get("content-type", ""), source)
            del body
            async with self.budget.hold(cost):
                decoded = await loop.run_in_executor(self.pool, decode_image, encoded, source)
                del encoded
                image = decoded.image
                result = await self._call(lambda: self.detector.detect.remote(image))
        except InputError as exc:
            return self._error(400, str(exc))
        if "error" in result:
            return self._error(422, f"{source}: {result['error']}")
        detections = [d for d in result["detections"] if d["score"] >= conf]
        height, width = image.shape[:2]
        # trtdet run's record schema: every key present, null when there is nothing to say.
        record = {"source": source, "frame": None, "width": int(width), "height": int(height),
                  "detections": detections, "error": None, "output": None, "warning": decoded.warning,
                  "speed": result.get("speed")}
        return JSONResponse(record)

    async def _call(self, make: Any) -> Any:
        """Await ``make()`` (a handle call), retrying while its replica died or is not up yet."""
        from ray import exceptions as ray_exceptions
        from ray.serve import exceptions as serve_exceptions

        retriable = tuple(
            getattr(module, name)
            for module, name in (
                (ray_exceptions, "RayActorError"), (ray_exceptions, "ActorDiedError"),
                (ray_exceptions, "ActorUnavailableError"), (serve_exceptions, "BackPressureError"),
                (serve_exceptions, "DeploymentUnavailableError"),
            )
            if hasattr(module, name)
        )
        delay = 0.2
        for attempt in range(RETRIES + 1):
            try:
                return await make()
            except retriable as exc:
                if attempt == RETRIES:
                    raise _Unavailable(f"no detector replica is available ({_first_line(exc)}); retry later") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")


class _Unavailable(Exception):
    """Every retry found no live replica: the request gets 503."""


def _parse(body: bytes, content_type: str, source: str) -> tuple[bytes, int]:
    """On a decoding thread: the request's encoded image (its size checked from its header) and
    the bytes decoding it will hold."""
    from trtdet.io.images import check_declared_size
    from trtdet.ray.http_body import decode_cost, image_bytes

    encoded = image_bytes(body, content_type, source)
    check_declared_size(encoded, source)
    return encoded, decode_cost(encoded)


#: The largest batch a replica forms from concurrent requests unless ``batch`` says otherwise.
DEFAULT_SERVE_BATCH = 32


def build_app(
    model: str,
    options: DetectorOptions,
    *,
    replicas: int = 1,
    batch: int | None = None,
    max_wait_ms: float = 5.0,
    max_body_bytes: int = 32 * 1024 * 1024,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float | None = None,
    max_batch: int | None = None,
) -> Any:
    """The Ray Serve application: ``Ingress`` in front of ``replicas`` ``DetectorReplica``s.

    ``batch`` is the largest batch a replica forms from concurrent requests (default
    ``DEFAULT_SERVE_BATCH``; ``max_batch`` is its old name, still accepted with a ``DeprecationWarning``).

    With Ray running, what the service needs is checked against the cluster first (one line
    when it cannot be placed, as Ray would wait for ever): the replicas' GPUs, and their CPUs
    next to the ingress's. Without ``cpus_per_replica`` each replica takes up to one CPU,
    sharing what the ingress leaves (0.95 each for two replicas on a 2-CPU machine).
    """
    from trtdet.deprecation import renamed
    from trtdet.plugins import get_model, load_plugins
    from trtdet.ray.cluster import check_gpus, cluster_cpus, plain_options, share_cpus, worker_resources

    batch = renamed(batch, max_batch, old="max_batch", new="batch", new_given=batch is not None)
    batch = DEFAULT_SERVE_BATCH if batch is None else batch
    load_plugins()
    spec = get_model(model).spec  # an unknown model fails here, before any replica starts
    resources = worker_resources(options.device, gpus_per_replica, cpus_per_replica)
    import ray

    if ray.is_initialized():
        check_gpus(ray, resources, replicas, "replicas")
        resources["num_cpus"] = share_cpus(cluster_cpus(ray), replicas, resources["num_cpus"], INGRESS_CPUS,
                                           "replicas", "--cpus-per-replica", "the HTTP ingress")
    elif resources["num_cpus"] is None:
        resources["num_cpus"] = 1.0
    options = options.replace(batch=max(options.batch, batch))
    conf = options.conf if options.conf is not None else spec.conf_threshold
    detector = serve.deployment(
        DetectorReplica,
        name="Detector",
        num_replicas=replicas,
        ray_actor_options={"num_gpus": resources["num_gpus"], "num_cpus": resources["num_cpus"]},
        max_ongoing_requests=max(2 * batch, 8),
        health_check_period_s=2,
        health_check_timeout_s=30,
    ).bind(model, plain_options(options), batch, max_wait_ms)
    ingress = serve.deployment(Ingress, name="Ingress", ray_actor_options={"num_cpus": INGRESS_CPUS},
                               max_ongoing_requests=1000)
    return ingress.bind(detector, model, float(conf), int(max_body_bytes))


def start(app: Any, host: str, port: int) -> None:
    """Run ``app`` under Ray Serve on ``host:port`` (returns once it is up; a replica that cannot
    start is one ``UsageError`` line)."""
    from trtdet.errors import UsageError

    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(app, name="trtdet", route_prefix="/", blocking=False)
    except RuntimeError as exc:  # Ray Serve's "Deploying application trtdet failed: ..."
        raise UsageError(f"the service did not start: {_first_line(exc)}") from exc


def wait_healthy(url: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll ``GET url/healthz`` until it answers 200; its JSON (``TimeoutError`` after ``timeout_s``)."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
                return json.loads(response.read())
        except Exception as exc:  # not up yet
            last = _first_line(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout_s:.0f} s ({last})")
