"""Connecting to Ray: a local Ray started on demand (the embedded default), or a cluster by ``--address``."""

from __future__ import annotations

from typing import Any

from trtdet.errors import UsageError
from trtdet.options import DetectorOptions


def import_ray() -> Any:
    """``ray``, or a one-line ``UsageError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("this command runs on Ray, which is not installed: pip install 'trtdet[ray]'") from exc
    return ray


def connect(address: str | None = None, **local: Any) -> Any:
    """Initialise Ray once: join ``address`` (``auto``, ``HOST:PORT``, ``ray://...``), else start a local one.

    ``local`` are ``ray.init`` arguments for a local start (e.g. ``num_cpus``); already
    initialised, this changes nothing (a caller that started Ray itself keeps its cluster).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(include_dashboard=False, **local)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        text = str(exc).strip().splitlines()
        raise UsageError(f"cannot start or join {where}: {text[0] if text else type(exc).__name__}") from exc
    return ray


def worker_resources(device: str, gpus_per_worker: float | None, cpus_per_worker: float) -> dict[str, float]:
    """The Ray resources one detector (actor or replica) asks for.

    On CUDA a worker takes ``gpus_per_worker`` GPUs (default 1; fractions share a GPU) and
    sees them as ``cuda`` through ``CUDA_VISIBLE_DEVICES``; on the CPU none unless asked.
    """
    from trtdet.devices import parse_device

    parsed = parse_device(device)
    if parsed.index is not None:
        raise UsageError(
            f"--device {parsed}: Ray assigns each worker its GPUs; use --device cuda (and --gpus-per-worker)"
        )
    gpus = (1.0 if parsed.is_cuda else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if gpus < 0 or cpus_per_worker < 0:
        raise UsageError("GPUs and CPUs per worker must be >= 0")
    if parsed.is_cuda and gpus == 0:
        raise UsageError("--device cuda needs --gpus-per-worker > 0 (Ray hides GPUs from workers that ask for none)")
    return {"num_gpus": gpus, "num_cpus": float(cpus_per_worker)}


def check_capacity(ray: Any, resources: dict[str, float], count: int, what: str) -> None:
    """A one-line ``UsageError`` when the cluster cannot hold ``count`` workers of ``resources``
    (Ray would otherwise wait for them forever)."""
    total = ray.cluster_resources()
    gpus_needed = resources["num_gpus"] * count
    gpus = float(total.get("GPU", 0))
    if gpus_needed > gpus:
        raise UsageError(
            f"{count} {what} x {resources['num_gpus']:g} GPUs need {gpus_needed:g} GPUs; the Ray cluster has {gpus:g}"
            + (" (use --device cpu, or join a cluster with GPUs: --address)" if gpus == 0 else "")
        )
    cpus = float(total.get("CPU", 0))
    if resources["num_cpus"] * count > cpus:
        raise UsageError(f"{count} {what} x {resources['num_cpus']:g} CPUs need more than the cluster's {cpus:g} CPUs")


def plain_options(options: DetectorOptions) -> dict[str, Any]:
    """The options as plain values, model files as absolute paths (what is sent to actors and replicas)."""
    from dataclasses import fields
    from pathlib import Path

    values = {f.name: getattr(options, f.name) for f in fields(options)}
    values["build_options"] = dict(options.build_options)
    for name in ("weights", "onnx", "engine"):
        if values[name] is not None:
            values[name] = str(Path(values[name]).resolve()) if "://" not in str(values[name]) else str(values[name])
    return values
