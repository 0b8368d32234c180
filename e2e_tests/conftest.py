"""A real critlab server (subprocess) on a free port with a fresh database, and Debian's Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
PASSWORDS = {"admin": "admin-pass-1", "ann": "ann-pass-12", "bob": "bob-pass-12", "cy": "cy-pass-1234"}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def critlab(*args: str, db: Path, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    r = subprocess.run([sys.executable, "-m", "app.cli", *args, "--db", str(db)], input=stdin, text=True,
                       capture_output=True, env=env, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"critlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@dataclass
class Server:
    url: str
    db: Path
    proc: subprocess.Popen
    log: Path

    def login(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
        assert r.status_code == 200, r.text
        return c

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_server(db: Path, log: Path) -> Server:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--db", str(db), "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return Server(url, db, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an admin and two annotators and no studies."""
    d = tmp_path_factory.mktemp("e2e")
    db = d / "e2e.duckdb"
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    for name in ("ann", "bob"):
        critlab("annotators", "add", name, "--role", "annotator", "--password-stdin", db=db, stdin=PASSWORDS[name])
    srv = start_server(db, d / "server.log")
    yield srv
    srv.stop()


def login(page, url: str, name: str) -> None:  # noqa: ANN001
    page.goto(f"{url}/")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/**")


def wait_idle(page) -> None:  # noqa: ANN001
    """Wait until no Gradio event is pending."""
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))")
