"""`critlab serve` in a subprocess, for tests and benchmarks: a free port, start, wait until healthy, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# The suite's cheaper password hashes (tests/conftest.py) also when only e2e_tests/ runs.
ENV = {"CRITLAB_TEST_ONLY_SCRYPT_N": str(2**14), **os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(db: Path, log: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
                preexec_fn: Callable[[], None] | None = None, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """Start `critlab serve --db DB` (plus `args`) and return (process, base URL) once /api/health answers.
    The log is appended to, so a restart keeps what the crashed run wrote."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--db", str(db), "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env or ENV, cwd=ROOT,
                                preexec_fn=preexec_fn)  # noqa: PLW1509 - callers start no threads before it
    # A bounded number of tries rather than a wall-clock budget: a loaded machine only waits longer.
    for _ in range(int(timeout / 0.2)):
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.2)
    proc.kill()
    proc.wait()
    raise AssertionError(f"server did not start:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a clean shutdown: CHECKPOINT, lock file removed), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
