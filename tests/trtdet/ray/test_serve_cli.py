"""``trtdet serve`` as a command: it comes up, answers, and shuts down cleanly on SIGTERM.

Runs after ``test_serve.py`` (file order), joining the session's Ray with ``--address``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import MODEL_ARGS

pytestmark = pytest.mark.slow
requests = pytest.importorskip("requests")


def test_sigterm_shuts_the_service_down_cleanly(ray_session, image_set):
    from trtdet.ray.serve import wait_healthy

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "trtdet.cli.main", "serve", *MODEL_ARGS, "--port", str(port),
               "--cpus-per-replica", "0.5", "--address", ray_session.get_runtime_context().gcs_address]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout_s=120)
        with open(image_set["good"][0], "rb") as handle:
            answer = requests.post(f"{url}/detect", data=handle.read(), timeout=60)
        assert answer.status_code == 200 and answer.json()["error"] is None
        os.kill(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-2000:]
    assert "serving yolo on" in output and "shutting down" in output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/healthz", timeout=2)
        except requests.ConnectionError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the service still answers after SIGTERM")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_local(port: int, *extra: str) -> subprocess.Popen:
    """``trtdet serve`` starting its own Ray (no --address), as on a laptop."""
    command = [sys.executable, "-m", "trtdet.cli.main", "serve", *MODEL_ARGS, "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _end(process: subprocess.Popen, tree: set[int]) -> None:
    """Kill whatever is left of a test's process tree (after a failed assertion)."""
    from .procs import alive

    for pid in alive(tree | {process.pid}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads listening sockets from /proc")
def test_a_local_service_listens_on_loopback_only_and_ctrl_c_ends_every_process(image_set):
    """Two replicas with default CPUs (a 2-CPU machine is enough), everything on loopback, SIGINT ends it all."""
    from trtdet.ray.serve import wait_healthy

    from .procs import alive, descendants, is_loopback, listening_addresses

    port = _free_port()
    process = _start_local(port, "--replicas", "2")
    tree: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, timeout_s=240)
        ready, _, _ = select.select([process.stderr], [], [], 60)  # the command's own check passed too
        first = process.stderr.readline() if ready else ""
        assert first.startswith(f"serving yolo on {url} (2 replica(s)"), first
        with open(image_set["good"][0], "rb") as handle:
            record = requests.post(f"{url}/detect", data=handle.read(), timeout=60).json()
        assert set(record) == {"source", "frame", "width", "height", "detections", "error", "output", "warning", "speed"}
        assert set(record["speed"]) == {"preprocess", "inference", "postprocess"} and min(record["speed"].values()) >= 0
        tree = descendants(process.pid)
        listening = listening_addresses(tree)
        assert len(tree) > 5 and listening, (tree, listening)  # GCS, raylet, agents, controller, proxy, replicas
        exposed = {pid: sorted(a for a in addresses if not is_loopback(a)) for pid, addresses in listening.items()}
        assert not any(exposed.values()), exposed
        started = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=90)
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(tree), f"processes left running: {sorted(alive(tree))}"
    finally:
        _end(process, tree)
    assert process.returncode == 0 and time.monotonic() - started < 120, stderr
    assert stderr.strip().splitlines() == ["shutting down"], stderr
    assert stdout == ""  # Ray's chatter stays out without --verbose


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads its processes from /proc")
def test_sigterm_while_starting_ends_every_process():
    from .procs import alive, descendants

    process = _start_local(_free_port())
    tree: set[int] = set()
    names: set[str] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            tree |= descendants(process.pid)
            names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in alive(tree)}
            if "raylet" in names:  # Ray is starting; the service is not up yet
                break
            time.sleep(0.1)
        assert process.poll() is None and "raylet" in names
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
        tree |= {process.pid}
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(tree), f"processes left running: {sorted(alive(tree))}"
    finally:
        _end(process, tree)
    assert process.returncode != 0 and "Traceback" not in stderr, stderr


def test_replicas_that_cannot_be_placed_fail_at_once_with_one_line(ray_session):
    from click.testing import CliRunner

    from trtdet.cli.main import cli

    started = time.monotonic()
    result = CliRunner().invoke(cli, ["serve", *MODEL_ARGS, "--port", str(_free_port()), "--replicas", "3",
                                      "--cpus-per-replica", "1000"])
    assert result.exit_code == 1 and time.monotonic() - started < 60
    assert result.output.strip().splitlines()[-1] == (
        "error: 3 replicas x 1000 CPUs and 0.1 CPUs for the HTTP ingress need 3000.1 CPUs; the Ray cluster has 4: "
        "lower --cpus-per-replica (or leave it out to share the CPUs)"
    )
    assert ray_session.is_initialized()  # the caller's Ray is left as it was
