"""The server's lock file beside the database: who serves it, where, and the admin token for the CLI.

`<db>.lock` holds JSON {pid, start_time, url, token, kind, engine}, mode 0600, so only the owner's CLI can reach
the admin API through it. A lock that is not the user's own private file is refused (see
app.private_files): the CLI would otherwise send commands and passwords wherever a planted lock points.
`start_time` (the process's start time from /proc) tells a live server from an unrelated process that
was given the dead server's PID later.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from app.private_files import UntrustedFileError, create_private, read_private
from app.proctree import alive, start_time  # a zombie left by a killed server counts as dead

KIND = "critlab-server"
PURPOSE = "it tells the critlab command line where the running server is and holds its admin token"
__all__ = ["KIND", "ServerLock", "UntrustedFileError", "lock_path", "read_lock", "remove_lock", "write_lock"]


class ServerLock(BaseModel):
    pid: int
    url: str
    token: str
    kind: str = KIND
    start_time: int | None = None  # None in locks written before it was recorded: the PID alone is checked
    engine: str | None = None  # the server's own engine, for people (EngineConfig.describe())


def lock_path(db_path: str) -> Path:
    return Path(f"{os.path.abspath(db_path)}.lock")


def _read(path: Path) -> ServerLock | None:
    data = read_private(path, PURPOSE)  # UntrustedFileError for a planted or exposed lock
    if data is None:
        return None
    try:
        return ServerLock.model_validate_json(data)
    except ValueError:
        return None


def read_lock(db_path: str) -> ServerLock | None:
    """The live server's lock, or None (a stale lock of a dead process is removed). Raises
    UntrustedFileError for a lock that is not this user's private regular file."""
    path = lock_path(db_path)
    lock = _read(path)
    if lock is None:
        return None
    if lock.kind != KIND or not alive(lock.pid, lock.start_time):
        path.unlink(missing_ok=True)
        return None
    return lock


def write_lock(db_path: str, url: str, token: str, engine: str | None = None) -> Path:
    path = lock_path(db_path)
    existing = read_lock(db_path)
    if existing and existing.pid != os.getpid():
        raise RuntimeError(f"{db_path} is already served by critlab (PID {existing.pid}) at {existing.url}")
    path.unlink(missing_ok=True)
    lock = ServerLock(pid=os.getpid(), start_time=start_time(os.getpid()), url=url, token=token, engine=engine)
    create_private(path, lock.model_dump_json().encode())
    return path


def remove_lock(db_path: str) -> None:
    path = lock_path(db_path)
    try:
        lock = _read(path)
    except UntrustedFileError:
        return  # not ours to remove
    if lock is not None and lock.pid == os.getpid():
        path.unlink(missing_ok=True)
