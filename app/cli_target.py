"""How a CLI command reaches the database: through the critlab server that holds it (found through
the lock file beside it, which must be the user's own private file), or by opening the file itself."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from app import lockfile
from app.services.context import EngineConfig


def fail(msg: str) -> None:
    click.secho(f"Error: {msg}", fg="red", err=True)
    sys.exit(1)


# -- reaching the database: directly, or through the running server --------------------------------
class Remote:
    """Operations sent to the critlab server that holds the database."""

    def __init__(self, lock: lockfile.ServerLock):
        self.lock = lock
        engine = f"; its engine: {lock.engine}" if lock.engine else ""
        click.echo(f"(sent to the critlab server at {lock.url}, PID {lock.pid}{engine})", err=True)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        import httpx

        try:
            r = httpx.request(method, f"{self.lock.url}{path}", json=payload, timeout=600,
                              headers={"Authorization": f"Bearer {self.lock.token}"})
        except httpx.HTTPError as e:
            fail(f"the critlab server (PID {self.lock.pid}) at {self.lock.url} holds the database but did not "
                 f"answer: {e}")
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"error": r.text}
        if r.status_code >= 400:
            fail(body.get("error") or body.get("detail") or f"server answered {r.status_code}")
        return body

    def op(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/admin/op/{name}", payload)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/jobs/{job_id}")


class Local:
    """Operations run in this process on the database file."""

    def __init__(self, db_path: str, engine: EngineConfig | None):
        from app.services.context import AppContext
        from storage.db import Database, DatabaseLockedError

        try:
            db = Database(db_path)
        except DatabaseLockedError as e:
            fail(str(e))
        self.ctx = AppContext(db=db, default_engine=engine or EngineConfig())

    def op(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        from app.services.context import ServiceError
        from app.services.ops import run_op
        from backend.engines.base import EngineError

        try:
            return run_op(self.ctx, "cli", name, payload)
        except (ServiceError, EngineError, ValueError, LookupError, PermissionError, OSError) as e:
            fail(str(e))
        raise AssertionError("unreachable")

    def job(self, job_id: int) -> dict[str, Any]:
        return self.op("job_status", {"id": job_id})

    def close(self) -> None:
        self.ctx.close()


def _running_server(db_path: str) -> lockfile.ServerLock | None:
    """The lock of the server holding the database, after warning about unsafe surroundings; a lock that
    is not this user's private file stops the command before anything is sent anywhere."""
    from app.private_files import directory_warnings

    for warning in directory_warnings(db_path):
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
    try:
        return lockfile.read_lock(db_path)
    except lockfile.UntrustedFileError as e:
        fail(str(e))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def target(db_path: str, engine: EngineConfig | None = None) -> Iterator[Remote | Local]:
    """The server holding the database when one runs (found through its lock file), else the file."""
    lock = _running_server(db_path)
    if lock is not None:
        yield Remote(lock)
        return
    local = Local(db_path, engine)
    try:
        yield local
    finally:
        local.close()


def call(db_path: str, op: str, payload: dict[str, Any]) -> dict[str, Any]:
    with target(db_path) as t:
        return t.op(op, payload)
