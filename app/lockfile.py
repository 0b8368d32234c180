"""The server's lock file beside the database: who serves it, where, and the admin token for the CLI.

`<db>.lock` holds JSON {pid, url, token, kind}, mode 0600, so only the owner's CLI can reach the
admin API through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

from app.proctree import alive  # a zombie left by a killed server counts as dead

KIND = "critlab-server"


class ServerLock(BaseModel):
    pid: int
    url: str
    token: str
    kind: str = KIND


def lock_path(db_path: str) -> Path:
    return Path(f"{os.path.abspath(db_path)}.lock")


def read_lock(db_path: str) -> ServerLock | None:
    """The live server's lock, or None (a stale lock of a dead process is removed)."""
    path = lock_path(db_path)
    try:
        lock = ServerLock.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    if lock.kind != KIND or not alive(lock.pid):
        path.unlink(missing_ok=True)
        return None
    return lock


def write_lock(db_path: str, url: str, token: str) -> Path:
    path = lock_path(db_path)
    existing = read_lock(db_path)
    if existing and existing.pid != os.getpid():
        raise RuntimeError(f"{db_path} is already served by critlab (PID {existing.pid}) at {existing.url}")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ServerLock(pid=os.getpid(), url=url, token=token).model_dump_json())
    return path


def remove_lock(db_path: str) -> None:
    path = lock_path(db_path)
    try:
        lock = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    if lock.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
