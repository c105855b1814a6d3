"""``trtdet serve`` as a command: it comes up, answers, and shuts down cleanly on SIGTERM.

Runs after ``test_serve.py`` (file order), joining the session's Ray with ``--address``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

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
