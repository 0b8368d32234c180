"""Judgment rows: every verdict, human or model, with idempotent submits and supersede-on-edit."""

from __future__ import annotations

import json

import duckdb

from storage.db import Database
from storage.models import HumanMethod, Judgment, JudgmentIn

# Methods whose target is the prompt as a whole (a pick among its responses), not one response.
PROMPT_LEVEL_METHODS = {HumanMethod.BEST, HumanMethod.REFERENCE, HumanMethod.COMMENT, "gsa"}


class IdempotencyConflict(ValueError):
    """An idempotency key already names a different judgment (another judge, prompt or method)."""


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


# One INSERT for a whole submit: each column arrives as a list (static SQL, no per-row statements).
_INSERT_ROWS = f"""INSERT INTO judgment ({_INSERT_COLS}, superseded_at)
    SELECT unnest($study_id::BIGINT[]), unnest($prompt_id::BIGINT[]), unnest($judge_kind::VARCHAR[]),
           unnest($judge::VARCHAR[]), unnest($method::VARCHAR[]), unnest($method_version::VARCHAR[]),
           unnest($target_key::VARCHAR[]), unnest($response_id::BIGINT[]), unnest($response_b_id::BIGINT[]),
           unnest($checklist_item_id::BIGINT[]), unnest($variant::VARCHAR[]), unnest($shown_order::BIGINT[][]),
           unnest($value::DOUBLE[]), unnest($label::VARCHAR[]), unnest($prob::DOUBLE[]), unnest($dist::JSON[]),
           unnest($rationale::VARCHAR[]), unnest($stage::VARCHAR[]), unnest($source::VARCHAR[]),
           unnest($template_version::VARCHAR[]), unnest($status::VARCHAR[]), unnest($error::VARCHAR[]),
           unnest($duration_ms::INTEGER[]), unnest($idempotency_key::VARCHAR[]),
           CASE WHEN unnest($superseded::BOOLEAN[]) THEN now() END
    RETURNING idempotency_key, id"""


def record(db: Database, judgments: list[JudgmentIn], *, whole_stage: bool = False) -> list[int]:
    """Store judgments in one transaction; returns their ids (see _record)."""
    return _record(db, judgments, whole_stage=whole_stage)[0]


def record_new(db: Database, judgments: list[JudgmentIn]) -> list[int]:
    """Store judgments as `record` does; returns the ids of those this call stored, without the ones whose
    idempotency key was already stored (what a scoring run counts as written)."""
    return _record(db, judgments, whole_stage=False)[1]


def _record(db: Database, judgments: list[JudgmentIn], *, whole_stage: bool) -> tuple[list[int], list[int]]:
    """Store judgments in one transaction; returns (their ids, the ids of the rows this call inserted).

    A judgment whose idempotency key is already stored is not stored again (its existing id is
    returned), so a double submit is harmless. A new judgment supersedes the current one of the
    same judge, method, stage and target.

    Keys come from clients, so a stored key is honoured only for the same judge, prompt and method:
    otherwise one person's key (or a buggy client reusing a key) would silently swallow another's
    label and answer with ids that are not theirs. That raises IdempotencyConflict and stores nothing.

    `whole_stage`: the judgments are one person's complete answer to one prompt at one stage (a submit
    of the Label tab), so an edit supersedes exactly that stage: the person's current judgments of the
    stage that the new submit does not restate (an answer they cleared) stop being current too. A retried
    submit (every key known) changes nothing, so a late retry cannot undo a newer edit.

    Every statement runs while the process-wide write lock is held, so a submit costs a fixed handful
    of statements (known keys, one supersede per judge and prompt, one insert), not three per row.
    """
    if not judgments:
        return [], []
    if whole_stage and len({(j.study_id, j.prompt_id, j.judge_kind, j.judge, j.stage) for j in judgments}) != 1:
        raise ValueError("a whole-stage submit holds one person's judgments of one prompt at one stage")
    with db.write() as cur:
        keys = list(dict.fromkeys(j.idempotency_key for j in judgments))
        prompt_ids = sorted({j.prompt_id for j in judgments})
        # One round trip: the keys already stored, and which (study, prompt, kind, judge) have current
        # judgments at all (most submits are someone's first label there: nothing to supersede). Those
        # rows are few and deduplicated in the set below: a DISTINCT costs DuckDB half a millisecond.
        found = cur.execute(
            """SELECT idempotency_key, id, judge, prompt_id, method, NULL, NULL FROM judgment
               WHERE list_contains($keys, idempotency_key)
               UNION ALL
               SELECT NULL, NULL, judge, prompt_id, NULL, study_id, judge_kind FROM judgment
               WHERE prompt_id BETWEEN $lo AND $hi AND list_contains($prompts, prompt_id)
                 AND list_contains($judges, judge) AND superseded_at IS NULL""",
            {"keys": keys, "lo": prompt_ids[0], "hi": prompt_ids[-1], "prompts": prompt_ids,
             "judges": sorted({j.judge for j in judgments})}).fetchall()
        known = {k: (jid, judge, prompt_id, method) for k, jid, judge, prompt_id, method, _, _ in found if k}
        occupied = {(study_id, prompt_id, kind, judge) for k, _, judge, prompt_id, _, study_id, kind in found if not k}
        new: dict[str, tuple[JudgmentIn, str]] = {}  # key -> (judgment, target key), first of each key
        inserted: list[int] = []
        for j in judgments:
            k = j.idempotency_key
            if k in known:
                owner = known[k][1:]
            elif k in new:
                owner = (new[k][0].judge, new[k][0].prompt_id, new[k][0].method)
            else:
                new[k] = (j, target_key(j))
                continue
            if owner != (j.judge, j.prompt_id, j.method):
                raise IdempotencyConflict(
                    f"idempotency key {k!r} was already used for another judgment; send a new key for a new submit")
        if new:
            _supersede(cur, [(j, t) for j, t in new.values()
                             if (j.study_id, j.prompt_id, j.judge_kind, j.judge) in occupied])
            rows = list(new.values())
            # Within one call the last judgment of a target is the current one, as if stored one by one.
            last = {_slot(j, t): k for k, (j, t) in new.items()}
            cols: dict[str, list] = {c.strip(): [] for c in _INSERT_COLS.split(",")}
            for j, t in rows:
                for c, values in cols.items():
                    v = t if c == "target_key" else getattr(j, c)
                    values.append(json.dumps(v) if c == "dist" and v is not None else v)
            cols["superseded"] = [last[_slot(j, t)] != j.idempotency_key for j, t in rows]
            stored = cur.execute(_INSERT_ROWS, cols).fetchall()
            inserted = [jid for _, jid in stored]
            known.update({k: (jid, None, None, None) for k, jid in stored})
        ids = [known[j.idempotency_key][0] for j in judgments]
        j = judgments[0]
        if new and whole_stage and (j.study_id, j.prompt_id, j.judge_kind, j.judge) in occupied:
            cur.execute(
                """UPDATE judgment SET superseded_at = now() WHERE study_id = $study AND prompt_id = $prompt
                   AND judge_kind = $kind AND judge = $judge AND stage = $stage AND superseded_at IS NULL
                   AND NOT list_contains($ids, id)""",
                {"study": j.study_id, "prompt": j.prompt_id, "kind": j.judge_kind, "judge": j.judge,
                 "stage": j.stage, "ids": ids})
    return ids, inserted


def _slot(j: JudgmentIn, target: str) -> tuple:
    """What at most one current judgment exists for."""
    return j.study_id, j.judge_kind, j.judge, j.method, j.stage, target


def _supersede(cur: duckdb.DuckDBPyConnection, rows: list[tuple[JudgmentIn, str]]) -> None:
    """Mark the current judgments these new ones replace, one statement per (study, prompt, judge).

    The prompt is part of every target (a response, pair or checklist item belongs to one prompt),
    so filtering on it changes nothing but lets DuckDB skip the row groups of other prompts.
    """
    groups: dict[tuple, list[str]] = {}
    for j, t in rows:
        groups.setdefault((j.study_id, j.prompt_id, j.judge_kind, j.judge), []).append(
            f"{j.method}\x1f{j.stage}\x1f{t}")
    for (study_id, prompt_id, kind, judge), slots in groups.items():
        cur.execute(
            """UPDATE judgment SET superseded_at = now() WHERE study_id = $study AND prompt_id = $prompt
               AND judge_kind = $kind AND judge = $judge AND superseded_at IS NULL
               AND list_contains($slots, method || chr(31) || stage || chr(31) || target_key)""",
            {"study": study_id, "prompt": prompt_id, "kind": kind, "judge": judge, "slots": slots})


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
    # Sorted here: DuckDB's ORDER BY costs about half a millisecond even on the few rows of one prompt.
    rows = db.fetchdicts(f"SELECT * FROM judgment WHERE {' AND '.join(where)}", params)
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    return [_judgment(r) for r in rows]


def has_current(db: Database, *, study_id: int, prompt_id: int, judge_kind: str) -> bool:
    """Whether any current judgment of this kind exists on the prompt (cheaper than reading them)."""
    return bool(db.fetchall(
        """SELECT 1 FROM judgment WHERE study_id = ? AND prompt_id = ? AND judge_kind = ? AND superseded_at IS NULL
           LIMIT 1""", [study_id, prompt_id, judge_kind]))


def submitted(db: Database, judge: str, prompt_id: int, key: str) -> list[int]:
    """The ids a submit with this client key stored for this judge and prompt (its rows' keys are
    `key:<answer>`), in the order stored; empty when it was not stored."""
    return [r[0] for r in db.fetchall(
        """SELECT id FROM judgment WHERE prompt_id = ? AND judge = ? AND starts_with(idempotency_key, ?)
           ORDER BY id""", [prompt_id, judge, key + ":"])]


def has_any_human(db: Database, study_id: int) -> bool:
    """Whether anyone has labelled anything in the study (current or superseded)."""
    return bool(db.fetchall("SELECT 1 FROM judgment WHERE study_id = ? AND judge_kind = 'human' LIMIT 1", [study_id]))


def all_rows(db: Database, *, study_id: int, judge: str | None = None) -> list[Judgment]:
    """Every stored judgment, superseded ones included (for audits and tests)."""
    params: list = [study_id]
    extra = ""
    if judge is not None:
        extra = " AND judge = ?"
        params.append(judge)
    return [_judgment(r) for r in db.fetchdicts(
        f"SELECT * FROM judgment WHERE study_id = ?{extra} ORDER BY id", params)]
