"""``trtdet serve``: an HTTP detection service on Ray Serve (extra ``[ray]``)."""

from __future__ import annotations

import signal
import threading

import click

from trtdet.cli.common import detector_options, handle_errors, model_options


@click.command("serve", short_help="Serve detection over HTTP on Ray Serve.")
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Detector replicas.")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Largest batch formed from concurrent requests.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long a batch waits to fill.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001), default=32.0, show_default=True,
              help="Largest request body (larger: 413).")
@click.option("--gpus-per-replica", type=click.FloatRange(min=0), default=None,
              help="GPUs each replica asks Ray for (default: 1 on --device cuda, 0 on cpu).")
@click.option("--cpus-per-replica", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--address", default=None, help="Ray cluster to join (auto, HOST:PORT); default: a local Ray.")
@handle_errors
def serve_command(model, host, port, replicas, max_batch, max_wait_ms, max_body_mb, gpus_per_replica,
                  cpus_per_replica, address, **model_flags):
    """Serve detections over HTTP: POST /detect (image bytes or multipart) -> JSON; GET /healthz, /models.

    Runs until SIGINT or SIGTERM, then shuts the service down.
    """
    from trtdet.ray.cluster import connect

    options = detector_options(model_flags)
    ray = connect(address)
    from trtdet.ray.serve import build_app, start, wait_healthy

    app = build_app(model, options, replicas=replicas, max_batch=max_batch, max_wait_ms=max_wait_ms,
                    max_body_bytes=int(max_body_mb * 1024 * 1024), gpus_per_replica=gpus_per_replica,
                    cpus_per_replica=cpus_per_replica)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start(app, host, port)
    url = f"http://{host if host != '0.0.0.0' else '127.0.0.1'}:{port}"
    info = wait_healthy(url)
    click.echo(f"serving {model} on {url} ({replicas} replica(s), {info['backend']} on {info['device']}); "
               "POST /detect, GET /healthz, GET /models; Ctrl-C stops", err=True)
    stop.wait()
    click.echo("shutting down", err=True)
    from ray import serve

    serve.shutdown()
    ray.shutdown()
