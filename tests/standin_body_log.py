"""The request bodies SGLang stand-ins receive, appended to a JSON-lines file for `make check-sglang`
(scripts/check_sglang_bodies.py checks each one with SGLang's own request classes).

Set CRITLAB_SGLANG_BODY_LOG=/some/file.jsonl (or the stand-in option `body_log`) and every stand-in, in
this process or another (`python -m tests.standin_sglang`, the launcher tests' fake server), appends one
line per POST/PUT body it receives:

    {"path": "/generate", "source": "critlab", "status": 200, "body": {...}}

`source` says who sent it: `critlab` (the SGLang client, which names itself in its User-Agent), `router`
(the real sglang-router forwarded it: version 0.3.2 sends no User-Agent, measured, while httpx always
sends one), `standin-router` (a stand-in in router mode; the line holds the body it would forward to a
worker, the fields the router adds included) or `other` (a test posting directly). `status` is the HTTP
status the stand-in answered (null when it dropped the connection): the checker expects SGLang to accept
every body the stand-in did not refuse with 400/422.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BODY_LOG_ENV = "CRITLAB_SGLANG_BODY_LOG"
CLIENT_AGENT_PREFIX = "critlab"

_lock = threading.Lock()  # stand-ins in one process (threads); flock below covers other processes


def source_of(headers: Mapping[str, str]) -> str:
    agent = headers.get("user-agent")
    if agent is None:
        return "router"
    return "critlab" if agent.startswith(CLIENT_AGENT_PREFIX) else "other"


def append(log: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """One JSON line, written with a single write under an exclusive lock on an O_APPEND descriptor, so
    concurrent requests and several stand-in processes never interleave their lines."""
    data = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
    with _lock:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)  # also releases the lock


def read(log: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
