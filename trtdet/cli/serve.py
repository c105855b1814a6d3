"""``trtdet serve``: an HTTP detection service on Ray Serve (extra ``[ray]``)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from trtdet.cli.common import detector_options, handle_errors, model_options, renamed_flag, take_renamed

#: Exit status after SIGINT/SIGTERM stopped a service that was not up yet (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived (a ``BaseException``: no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, _frame: Any) -> None:
    # Once: the shutdown that follows is not interrupted by a second Ctrl-C.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def _catch_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_stopped)


@contextmanager
def _stopping() -> Iterator[None]:
    """SIGINT/SIGTERM stop the service at any moment (starting Ray, deploying, serving)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _catch_signals()
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class _Service:
    """One ``trtdet serve`` run: what it started (so that it ends exactly that) and how far it got."""

    def __init__(self, address: str | None, verbose: bool) -> None:
        self.address = address
        self.verbose = verbose
        self.ray: Any = None
        #: "local" for a local Ray it started, "joined" for a cluster it joined, None for a Ray
        #: the caller had initialised (left as it was).
        self.owned: str | None = None
        self.started = False
        self.serving = False
        self.url: str | None = None
        self.what = ""

    def run(self, model: str, options: Any, host: str, port: int, replicas: int, **app: Any) -> None:
        """Start Ray and the service, wait until it answers, say so, and serve until a signal."""
        from trtdet.errors import UsageError
        from trtdet.ray.cluster import connect, import_ray, quiet_ray_loggers, signals_deferred

        if not import_ray().is_initialized():
            self.owned = "joined" if self.address else "local"
        with signals_deferred() as received:  # Ray starts whole, so that all of it can be ended
            self.ray = connect(self.address, verbose=self.verbose)
        _catch_signals()
        if received:
            raise Stopped(received[0])
        from trtdet.ray.serve import build_app, start, wait_healthy

        quiet_ray_loggers(self.verbose)  # ray.serve, now imported, set its loggers' levels
        application = build_app(model, options, replicas=replicas, **app)
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        self.what = f"{model} on {self.url} ({replicas} replica(s)"
        self.started = True
        start(application, host, port)
        try:
            self.announce(wait_healthy(self.url))
        except TimeoutError as exc:
            raise UsageError(f"the service did not come up: {exc}") from exc
        while True:
            time.sleep(3600)

    def announce(self, info: dict[str, Any]) -> None:
        """Say the service is up (``info``: its ``/healthz`` answer)."""
        self.serving = True
        click.echo(f"serving {self.what}, {info['backend']} on {info['device']}); "
                   "POST /detect, GET /healthz, GET /models; Ctrl-C stops", err=True)

    def check_up(self) -> bool:
        """Whether the service was up when a signal stopped it: announced, or answering ``/healthz``
        already (a client can see it a moment before this command does; then it is announced now)."""
        if self.serving or not self.started or self.url is None:
            return self.serving
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                self.announce(json.loads(response.read()))
        except Exception:  # not up: refused, timed out, 5xx
            return False
        return True

    def shut_down(self) -> None:
        """End what this run started: a local Ray with every process of it; on a joined cluster
        Ray Serve (the cluster stays up); in a caller's Ray only the service, if it was started."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        ray = self.ray or sys.modules.get("ray")  # stopped while Ray was starting: end what it started so far
        if ray is None:
            return
        if not self.verbose and self.owned is not None:
            from trtdet.ray.cluster import mute_raylet_messages

            mute_raylet_messages()  # e.g. "Task ServeController.graceful_shutdown failed" as Serve stops
        try:
            if self.owned != "local" and self.started and ray.is_initialized():
                from ray import serve

                serve.shutdown()
        finally:
            if self.owned is not None:
                ray.shutdown()


@click.command("serve", short_help="Serve detection over HTTP on Ray Serve.")
@model_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the HTTP port listens on (0.0.0.0: every interface). A local Ray listens on loopback only.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Detector replicas.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Largest batch formed from concurrent requests (images per engine call).")
@renamed_flag("--max-batch", "batch", type=click.IntRange(min=1))
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long a batch waits to fill.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001), default=32.0, show_default=True,
              help="Largest request body (larger: 413).")
@click.option("--gpus-per-replica", type=click.FloatRange(min=0), default=None,
              help="GPUs each replica asks Ray for (default: 1 on --device cuda, 0 on cpu).")
@click.option("--cpus-per-replica", type=click.FloatRange(min=0), default=None,
              help="CPUs each replica asks Ray for (default: up to 1, sharing the cluster's CPUs with the ingress).")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, HOST:PORT); default: a local Ray on loopback. A cluster exposes what "
                   "its operator configured: see https://docs.ray.io/en/latest/ray-security/index.html")
@click.option("--verbose", "-v", is_flag=True, help="Also Ray's own log lines and its processes' output.")
@handle_errors
def serve_command(model, host, port, replicas, batch, renamed_batch, max_wait_ms, max_body_mb, gpus_per_replica,
                  cpus_per_replica, address, verbose, **model_flags):
    """Serve detections over HTTP: POST /detect (image bytes or multipart) -> JSON; GET /healthz, /models.

    Runs until SIGINT or SIGTERM (at any moment, starting up included), then shuts the
    service down; a local Ray it started ends with it.
    """
    batch = take_renamed(batch, renamed_batch, param="batch", old="--max-batch", new="--batch")
    service = _Service(address, verbose)
    try:
        with _stopping():
            service.run(model, detector_options(model_flags), host, port, replicas, batch=batch,
                        max_wait_ms=max_wait_ms, max_body_bytes=int(max_body_mb * 1024 * 1024),
                        gpus_per_replica=gpus_per_replica, cpus_per_replica=cpus_per_replica)
    except Stopped as stopped:
        up = service.check_up()
        click.echo("shutting down" if up else f"stopped ({stopped}) before the service was up; shutting down",
                   err=True)
        service.shut_down()
        if not up:
            sys.exit(EXIT_INTERRUPTED)
    except BaseException:
        service.shut_down()
        raise
