"""Background job rows: status and progress that survive restarts."""

from __future__ import annotations

import json
from typing import Any

from storage.db import Database
from storage.models import CallTally, Job, JobFigures


def create_job(db: Database, kind: str, *, study_id: int | None = None, run_id: int | None = None,
               total: int = 0, params: dict[str, Any] | None = None, created_by: str | None = None) -> Job:
    with db.write() as cur:
        jid = cur.execute(
            "INSERT INTO job (kind, study_id, run_id, status, total, params, created_by) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?) RETURNING id",
            [kind, study_id, run_id, total, json.dumps(params or {}), created_by],
        ).fetchall()[0][0]
    return get_job(db, jid)


def get_job(db: Database, job_id: int) -> Job:
    row = db.fetchrow("SELECT * FROM job WHERE id = ?", [job_id])
    if row is None:
        raise LookupError(f"no job {job_id}")
    return Job(**row)


def update_job(db: Database, job_id: int, *, status: str | None = None, done: int | None = None,
               total: int | None = None, message: str | None = None, error: str | None = None) -> None:
    sets, params = [], []
    for col, val in (("status", status), ("done", done), ("total", total), ("message", message), ("error", error)):
        if val is not None:
            sets.append(f"{col} = ?")
            params.append(val)
    if status == "running":
        sets.append("started_at = coalesce(started_at, now())")
    if status in ("done", "failed", "cancelled"):
        sets.append("finished_at = now()")
    if sets:
        with db.write() as cur:
            cur.execute(f"UPDATE job SET {', '.join(sets)} WHERE id = ?", [*params, job_id])


def list_jobs(db: Database, study_id: int | None = None, limit: int = 20) -> list[Job]:
    if study_id is None:
        rows = db.fetchdicts("SELECT * FROM job ORDER BY id DESC LIMIT ?", [limit])
    else:
        rows = db.fetchdicts("SELECT * FROM job WHERE study_id = ? ORDER BY id DESC LIMIT ?", [study_id, limit])
    return [Job(**r) for r in rows]


def active_and_recent(db: Database, recent: int = 5) -> tuple[list[Job], list[Job]]:
    """(every queued or running job, oldest first; the `recent` jobs that ended last, newest first)."""
    active = db.fetchdicts("SELECT * FROM job WHERE status IN ('queued', 'running') ORDER BY id")
    ended = db.fetchdicts(
        "SELECT * FROM job WHERE status NOT IN ('queued', 'running') "
        "ORDER BY coalesce(finished_at, created_at) DESC, id DESC LIMIT ?", [recent])
    return [Job(**r) for r in active], [Job(**r) for r in ended]


def record_figures(db: Database, job_id: int, engine_model: str, figures: JobFigures) -> None:
    with db.write() as cur:
        cur.execute("UPDATE job SET engine_model = ?, figures = ? WHERE id = ?",
                    [engine_model, figures.model_dump_json(), job_id])


def latest_rate(db: Database, engine_model: str, kind: str) -> tuple[int, CallTally] | None:
    """(job id, its tally) of the job of this engine and model that ended last having made calls of
    `kind` ("reads" or "generations"), or None when none has."""
    rows = db.fetchall(
        "SELECT id, figures FROM job WHERE engine_model = ? AND finished_at IS NOT NULL AND figures IS NOT NULL "
        "ORDER BY finished_at DESC, id DESC", [engine_model])
    for job_id, raw in rows:
        tally: CallTally = getattr(JobFigures.model_validate_json(raw), kind)
        if tally.calls > 0:
            return job_id, tally
    return None


def fail_interrupted(db: Database) -> int:
    """Mark jobs left running by a crashed process as failed (their finished work is kept)."""
    with db.write() as cur:
        rows = cur.execute(
            "UPDATE job SET status = 'failed', error = 'interrupted: the server stopped while it ran; "
            "run it again to finish what is missing', finished_at = now() "
            "WHERE status IN ('queued', 'running') RETURNING id").fetchall()
    return len(rows)
