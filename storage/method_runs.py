"""Which (prompt, method, version, judge, response set) have been scored: the idempotency record."""

from __future__ import annotations

import hashlib

from storage.db import Database


def responses_key(response_ids: list[int]) -> str:
    """A short stable key of a set of responses.

    >>> responses_key([3, 1, 2]) == responses_key([1, 2, 3])
    True
    """
    return hashlib.sha256(",".join(map(str, sorted(response_ids))).encode()).hexdigest()[:16]


def is_done(db: Database, prompt_id: int, method: str, version: str, judge: str, key: str) -> bool:
    return bool(db.fetchall(
        "SELECT 1 FROM method_run WHERE prompt_id = ? AND method = ? AND method_version = ? AND judge = ? "
        "AND responses_key = ?", [prompt_id, method, version, judge, key]))


def mark_done(db: Database, prompt_id: int, method: str, version: str, judge: str, key: str, *,
              status: str = "ok", error: str | None = None, duration_ms: int | None = None) -> None:
    with db.write() as cur:
        cur.execute(
            "INSERT INTO method_run (prompt_id, method, method_version, judge, responses_key, status, error, "
            "duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [prompt_id, method, version, judge, key, status, error, duration_ms])


def done_keys(db: Database, study_id: int, judge: str) -> set[tuple[int, str, str, str]]:
    """(prompt id, method, version, responses key) of every run of this judge on the study's prompts."""
    return {tuple(r) for r in db.fetchall(  # type: ignore[misc]
        "SELECT m.prompt_id, m.method, m.method_version, m.responses_key FROM method_run m "
        "JOIN prompt p ON p.id = m.prompt_id WHERE p.study_id = ? AND m.judge = ?", [study_id, judge])}
