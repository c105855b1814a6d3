"""Connecting to Ray: a local Ray started on demand (the embedded default), or a cluster by ``--address``.

A local Ray that trtdet starts is private to this machine: every process it starts (GCS,
raylet, agents, workers) listens on the loopback interface only and no dashboard runs. A
cluster joined with ``--address`` exposes whatever its operator configured: see Ray's
security guidance, https://docs.ray.io/en/latest/ray-security/index.html.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from trtdet.errors import UsageError
from trtdet.options import DetectorOptions

#: Ray's switch (read when it starts a node) that makes a node's address the loopback one:
#: ``get_node_ip_address`` answers 127.0.0.1 and every server binds to it.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray's loggers that print INFO/WARNING lines on the driver's stderr.
RAY_LOGGERS = ("ray", "ray.data", "ray.serve", "ray.util", "ray._private")
#: The level of Ray's C++ logging, which the driver prints straight to stderr (``core_worker.cc:...``
#: lines, the shutdown's complaints); read when Ray's processes start.
BACKEND_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"
#: The smallest CPU share Ray schedules (its resources have four decimals).
CPU_GRAIN = 1e-4


def import_ray() -> Any:
    """``ray``, or a one-line ``UsageError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("this command runs on Ray, which is not installed: pip install 'trtdet[ray]'") from exc
    return ray


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` holding ``values`` (for the processes Ray starts meanwhile), restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _native_stderr_silenced(silence: bool) -> Iterator[None]:
    """File descriptor 2 to /dev/null meanwhile: Ray's C++ core prints a line there when it reads
    its log level, before that level applies. Python's own errors are raised, not printed."""
    if not silence:
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """While starting a local Ray: its node address is 127.0.0.1, so nothing listens beyond loopback.

    The environment variable reaches the processes Ray starts; Ray's constant is what the driver
    reads. Both are restored afterwards.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environment({LOOPBACK_SWITCH: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """SIGINT and SIGTERM received meanwhile are listed instead of acted on (main thread only).

    For the time Ray starts: stopped half-way, it would leave the processes it had started so
    far running, unknown to ``ray.shutdown``. Ray's own SIGTERM handler (``sys.exit``, which
    ``ray.init`` installs) is held back too. The caller acts on the list once Ray is up.
    """
    import signal

    from ray._private import utils

    received: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    saved = {sig: signal.getsignal(sig) for sig in signals}
    install = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda _handler: None
    for sig in signals:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield received
    finally:
        utils.set_sigterm_handler = install
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def quiet_ray_loggers(verbose: bool) -> None:
    """Ray's own INFO/WARNING lines and Python warnings on stderr only with ``--verbose``.

    Call it again after importing ``ray.data`` or ``ray.serve``: they set their loggers' levels
    when imported.
    """
    import warnings

    level = logging.INFO if verbose else logging.ERROR
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")


def _names_loopback(address: str) -> bool:
    """Whether a ``--address`` (``HOST:PORT``, ``ray://HOST:PORT``) names a loopback host."""
    import ipaddress

    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mute_raylet_messages() -> None:
    """Stop the driver printing the error messages Ray's processes publish (``(raylet) ...`` lines
    on stdout), e.g. the complaints of actors being stopped while a command shuts down."""
    from ray._private import worker

    worker.print_to_stdstream = lambda *_args, **_kwargs: None


def connect(address: str | None = None, *, verbose: bool = False, **local: Any) -> Any:
    """Initialise Ray once: join ``address`` (``auto``, ``HOST:PORT``, ``ray://...``), else start a local one.

    A local Ray listens on loopback only, without a dashboard. ``local`` are further ``ray.init``
    arguments for a local start (e.g. ``num_cpus``). Without ``verbose`` Ray's own log lines and
    its workers' output stay out of the terminal (they remain in Ray's log files). Already
    initialised, this changes nothing (a caller that started Ray itself keeps its cluster).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    backend = {} if verbose or BACKEND_LOG_LEVEL in os.environ else {BACKEND_LOG_LEVEL: "fatal"}
    try:
        with _environment(backend), _native_stderr_silenced(bool(backend)):
            if address and _names_loopback(address):
                with loopback_node():  # a cluster on this machine's loopback: this driver joins it there
                    ray.init(address=address, **quiet)
            elif address:
                ray.init(address=address, **quiet)
            else:
                with loopback_node():
                    ray.init(address="local", include_dashboard=False, **quiet, **local)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        text = str(exc).strip().splitlines()
        raise UsageError(f"cannot start or join {where}: {text[0] if text else type(exc).__name__}") from exc
    quiet_ray_loggers(verbose)
    return ray


def worker_resources(device: str, gpus_per_worker: float | None, cpus_per_worker: float | None) -> dict[str, Any]:
    """The Ray resources one detector (actor or replica) asks for.

    On CUDA a worker takes ``gpus_per_worker`` GPUs (default 1; fractions share a GPU) and
    sees them as ``cuda`` through ``CUDA_VISIBLE_DEVICES``; on the CPU none unless asked.
    ``num_cpus`` stays None when not given: ``share_cpus`` sizes it to the cluster.
    """
    from trtdet.devices import parse_device

    parsed = parse_device(device)
    if parsed.index is not None:
        raise UsageError(
            f"--device {parsed}: Ray assigns each worker its GPUs; use --device cuda (and --gpus-per-worker)"
        )
    gpus = (1.0 if parsed.is_cuda else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if gpus < 0 or (cpus_per_worker is not None and cpus_per_worker < 0):
        raise UsageError("GPUs and CPUs per worker must be >= 0")
    if parsed.is_cuda and gpus == 0:
        raise UsageError("--device cuda needs --gpus-per-worker > 0 (Ray hides GPUs from workers that ask for none)")
    return {"num_gpus": gpus, "num_cpus": None if cpus_per_worker is None else float(cpus_per_worker)}


def share_cpus(total: float, count: int, per_worker: float | None, other: float, what: str, flag: str,
               other_what: str) -> float:
    """The CPUs each of ``count`` workers asks for, next to ``other`` CPUs the job needs besides them.

    Given (``per_worker``), it is kept when ``count * per_worker + other`` fits in ``total``, else
    a one-line ``UsageError`` (Ray would wait for the missing CPUs forever). Not given, each
    worker takes up to one CPU, sharing what ``other`` leaves: on a 2-CPU machine two workers
    get 0.95 CPUs each next to 0.1 for the rest. CPUs are Ray's scheduling units, not a limit on
    the threads a worker runs.
    """
    room = total - other
    if per_worker is None:
        if room < count * CPU_GRAIN:
            raise UsageError(f"the Ray cluster has {total:g} CPUs, too few for {count} {what} and {other_what}")
        return min(1.0, int(room / count / CPU_GRAIN) * CPU_GRAIN)
    if count * per_worker > room + 1e-9:
        raise UsageError(
            f"{count} {what} x {per_worker:g} CPUs and {other:g} CPUs for {other_what} need "
            f"{count * per_worker + other:g} CPUs; the Ray cluster has {total:g}: lower {flag} "
            "(or leave it out to share the CPUs)"
        )
    return per_worker


def check_gpus(ray: Any, resources: dict[str, Any], count: int, what: str) -> None:
    """A one-line ``UsageError`` when the cluster has too few GPUs for ``count`` workers of ``resources``
    (Ray would otherwise wait for them forever)."""
    gpus_needed = resources["num_gpus"] * count
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus_needed > gpus:
        raise UsageError(
            f"{count} {what} x {resources['num_gpus']:g} GPUs need {gpus_needed:g} GPUs; the Ray cluster has {gpus:g}"
            + (" (use --device cpu, or join a cluster with GPUs: --address)" if gpus == 0 else "")
        )


def cluster_cpus(ray: Any) -> float:
    """The CPUs the Ray cluster has (its total, whether or not other jobs hold some now)."""
    return float(ray.cluster_resources().get("CPU", 0))


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
