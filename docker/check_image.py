"""The CPU image's build-time check (Dockerfile, stage `check`): run `critlab demo` as a user would and
wait until the embedded model has sampled an item that the admin can fetch through the JSON API.

Standard library only, so it needs nothing the image does not ship. Every wait is on state (a line
printed, an HTTP answer, an item served) with a deadline; any failure exits non-zero with the server's
output, which fails the build. Usage: python check_image.py [CRITLAB_COMMAND...]  (default: critlab)
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# Deadlines, generous for a shared 2-core builder: the model loads, then samples 2 x 8 tokens per prompt.
START_S = 180.0
SAMPLE_S = 900.0
POLL_S = 0.5
BANNER = re.compile(r"Log in as\s+admin / (\S+)")


def free_port() -> int:
    # A RUN step shares the build host's network: a fixed port could belong to something else there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(msg: str, log: list[str]) -> None:
    sys.stderr.write("".join(log[-60:]))
    sys.exit(f"image check FAILED: {msg}")


def wait_for(what: str, probe, deadline_s: float, proc: subprocess.Popen, log: list[str]):  # noqa: ANN001
    """probe() until it returns something truthy; fail if the server exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = probe()
        if got:
            return got
        if proc.poll() is not None:
            fail(f"critlab demo exited with {proc.returncode} while waiting for {what}", log)
        time.sleep(POLL_S)
    fail(f"no {what} within {deadline_s:.0f} s", log)


def main(cmd: list[str]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = tempfile.mkdtemp(prefix="critlab-check-")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([*cmd, "demo", "--n", "2", "--max-tokens", "8", "--port", str(port),
                             "--db", os.path.join(work, "check.duckdb")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=work)
    log: list[str] = []
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            log.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        def banner() -> str | None:
            while not lines.empty():
                m = BANNER.search(lines.get())
                if m:
                    return m.group(1)
            return None

        password = wait_for("admin password in the demo's banner", banner, START_S, proc, log)
        jar = http.cookiejar.CookieJar()
        http_open = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open

        def get_json(path: str) -> dict | None:
            try:
                with http_open(base + path, timeout=10) as r:
                    return json.load(r)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None

        wait_for("answer from /api/health", lambda: (get_json("/api/health") or {}).get("ok"), START_S, proc, log)
        login = urllib.request.Request(base + "/api/login", method="POST",
                                       data=json.dumps({"name": "admin", "password": password}).encode(),
                                       headers={"Content-Type": "application/json"})
        try:
            with http_open(login, timeout=30) as r:
                if r.status != 200:
                    fail(f"login answered {r.status}", log)
        except urllib.error.HTTPError as e:
            fail(f"login answered {e.code}: {e.read()[:300]!r}", log)

        def sampled_item() -> dict | None:
            item = (get_json("/api/studies/sample/next") or {}).get("item")
            return item if item and len(item.get("cards", [])) >= 2 else None

        item = wait_for("sampled item from /api/studies/sample/next", sampled_item, SAMPLE_S, proc, log)
        texts = [c["text"] for c in item["cards"]]
        print(f"image check passed: demo on :{port}, admin logged in, prompt {item['prompt_id']} "
              f"sampled by the embedded model: {texts!r}")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main(sys.argv[1:] or ["critlab"])
