"""The REAL sglang-router binary (the `sglang-router==0.3.2` wheel of the test extras, a Rust program that
needs no GPU) in front of SGLang stand-ins, for tests that must not trust a re-implementation of it.

    url, stop = start_real_router([worker_url, ...], api_key="k")

A missing or mismatched wheel, or a binary that cannot run on this platform, fails the calling test with the
reason (it is a pinned test extra, so a skip would hide a broken install); so does any other failure to
come up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROUTER_VERSION = "0.3.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def router_unavailable() -> str | None:
    """Why the real router cannot run here, or None."""
    try:
        import sglang_router  # noqa: F401
        from sglang_router import sglang_router_rs  # noqa: F401  (the Rust extension: fails off its platforms)
        from sglang_router.version import __version__
    except ImportError as exc:
        return f"the sglang-router {ROUTER_VERSION} binary cannot run here: {exc}"
    if __version__ != ROUTER_VERSION:
        return f"sglang-router {__version__} is installed; these tests pin the measured {ROUTER_VERSION}"
    return None


def start_real_router(worker_urls: list[str], *, api_key: str | None = None, log: Path,
                      tries: int = 300) -> tuple[str, Callable[[], None]]:
    """Start `python -m sglang_router.launch_router` on a free port; wait (bounded) until its /health says
    OK and it lists every worker as healthy; returns (url, stop). `stop` ends it by its PID."""
    reason = router_unavailable()
    if reason:  # a pinned test extra: a broken install must not turn the real-router proof into skips
        pytest.fail(f"{reason} (install the test extras: pip install -e '.[test]')")
    port = _free_port()
    cmd = [sys.executable, "-m", "sglang_router.launch_router", "--worker-urls", *worker_urls,
           "--host", "127.0.0.1", "--port", str(port), "--policy", "round_robin", "--log-level", "warn",
           # no Prometheus listener on the shared default port 29000 (two test runs would collide)
           "--prometheus-port", str(_free_port()), "--prometheus-host", "127.0.0.1"]
    if api_key:
        cmd += ["--api-key", api_key]
    out = log.open("wb")
    # The router fetches each worker's tokenizer from the Hugging Face Hub when it registers it (a warning if
    # that fails); HF_ENDPOINT (read by its Rust hub client) points that at a closed local port, so the
    # tests make no network request.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        out.close()

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=2.0) as client:
        for _ in range(tries):
            if proc.poll() is not None:
                stop()
                raise RuntimeError(f"sglang-router exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                ready = client.get(f"{url}/health").status_code == 200 and client.get(
                    f"{url}/readiness", headers=headers).json().get("healthy_workers") == len(worker_urls)
            except (httpx.HTTPError, ValueError):
                ready = False
            if ready:
                return url, stop
            try:  # wait on the process (returns at once if it dies), bounded per try
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
    stop()
    raise RuntimeError(f"sglang-router did not become ready after {tries} tries: {log.read_text()[-2000:]}")
