"""Judgment rows: every verdict, human or model, with idempotent submits and supersede-on-edit."""

from __future__ import annotations

import json

from storage.db import Database
from storage.models import Judgment, JudgmentIn

# Methods whose target is the prompt as a whole (a pick among its responses), not one response.
PROMPT_LEVEL_METHODS = {"best_of_n", "reference", "comment", "gsa"}


def target_key(j: JudgmentIn) -> str:
    """What a judgment is about; one current judgment per (judge, method, stage, target_key).

    >>> target_key(JudgmentIn(study_id=1, prompt_id=7, judge_kind="human", judge="ann", method="best_of_n",
    ...                       response_id=3, idempotency_key="k" * 8))
    'prompt:7'
    >>> target_key(JudgmentIn(study_id=1, prompt_id=7, judge_kind="human", judge="ann", method="pairwise",
    ...                       response_id=9, response_b_id=4, idempotency_key="k" * 8))
    'pair:4-9'
    >>> target_key(JudgmentIn(study_id=1, prompt_id=7, judge_kind="model", judge="m", method="critique",
    ...                       response_id=9, variant="s1", idempotency_key="k" * 8))
    'response:9#s1'
    """
    if j.method in PROMPT_LEVEL_METHODS or j.method.startswith("select_"):
        key = f"prompt:{j.prompt_id}"
    elif j.checklist_item_id is not None:
        key = (f"response:{j.response_id}:item:{j.checklist_item_id}" if j.response_id is not None
               else f"item:{j.checklist_item_id}")
    elif j.response_b_id is not None:
        a, b = sorted((j.response_id, j.response_b_id))
        key = f"pair:{a}-{b}"
    elif j.response_id is not None:
        key = f"response:{j.response_id}"
    else:
        key = f"prompt:{j.prompt_id}"
    return f"{key}#{j.variant}" if j.variant else key


_INSERT_COLS = ("study_id, prompt_id, judge_kind, judge, method, method_version, target_key, response_id, "
                "response_b_id, checklist_item_id, variant, shown_order, value, label, prob, dist, rationale, stage, "
                "source, template_version, status, error, duration_ms, idempotency_key")


def record(db: Database, judgments: list[JudgmentIn]) -> list[int]:
    """Store judgments in one transaction; returns their ids.

    A judgment whose idempotency key is already stored is not stored again (its existing id is
    returned), so a double submit is harmless. A new judgment supersedes the current one of the
    same judge, method, stage and target.
    """
    ids: list[int] = []
    with db.write() as cur:
        for j in judgments:
            known = cur.execute("SELECT id FROM judgment WHERE idempotency_key = ?", [j.idempotency_key]).fetchall()
            if known:
                ids.append(known[0][0])
                continue
            key = target_key(j)
            cur.execute(
                """UPDATE judgment SET superseded_at = now() WHERE judge_kind = ? AND judge = ? AND method = ?
                   AND stage = ? AND target_key = ? AND study_id = ? AND superseded_at IS NULL""",
                [j.judge_kind, j.judge, j.method, j.stage, key, j.study_id],
            )
            row = cur.execute(
                f"INSERT INTO judgment ({_INSERT_COLS}) VALUES ({', '.join('?' * 24)}) RETURNING id",
                [j.study_id, j.prompt_id, j.judge_kind, j.judge, j.method, j.method_version, key, j.response_id,
                 j.response_b_id, j.checklist_item_id, j.variant, j.shown_order, j.value, j.label, j.prob,
                 json.dumps(j.dist) if j.dist is not None else None, j.rationale, j.stage, j.source,
                 j.template_version, j.status, j.error, j.duration_ms, j.idempotency_key],
            ).fetchall()
            ids.append(row[0][0])
    return ids


def _judgment(row: dict) -> Judgment:
    return Judgment(**{**row, "dist": json.loads(row["dist"]) if row["dist"] else None})


def current(db: Database, *, study_id: int, judge: str | None = None, prompt_id: int | None = None,
            method: str | None = None, stage: str | None = "blind", judge_kind: str | None = None) -> list[Judgment]:
    """Current (not superseded) judgments matching the filters, oldest first."""
    where, params = ["study_id = ?", "superseded_at IS NULL"], [study_id]
    for col, val in (("judge", judge), ("prompt_id", prompt_id), ("method", method), ("stage", stage),
                     ("judge_kind", judge_kind)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    return [_judgment(r) for r in db.fetchdicts(
        f"SELECT * FROM judgment WHERE {' AND '.join(where)} ORDER BY created_at, id", params)]


def all_rows(db: Database, *, study_id: int, judge: str | None = None) -> list[Judgment]:
    """Every stored judgment, superseded ones included (for audits and tests)."""
    params: list = [study_id]
    extra = ""
    if judge is not None:
        extra = " AND judge = ?"
        params.append(judge)
    return [_judgment(r) for r in db.fetchdicts(
        f"SELECT * FROM judgment WHERE study_id = ?{extra} ORDER BY id", params)]
