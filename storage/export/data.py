"""What the pair policies read, one chunk of prompts at a time (so a 200k-pair export holds one chunk in
memory, never the study): prompts, responses, current blind human labels and one model method's verdicts.

Human labels are the *current* (not superseded) *blind* rows with status ok, the latest per (judge, method,
target) should an old database hold two. Model verdicts are current rows with status ok.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from storage.db import Database
from storage.models import HumanMethod

CHUNK_PROMPTS = 1000


@dataclass
class PromptRow:
    id: int
    external_id: str
    messages: list[dict[str, str]]


@dataclass
class Resp:
    id: int
    prompt_id: int
    text: str
    origin: str
    run_id: int | None
    model_id: str | None
    parent_id: int | None


@dataclass
class Human:
    """One prompt's current blind human labels (judge names as stored)."""

    picks: list[tuple[str, int | None, list[int] | None, int]] = field(default_factory=list)  # judge, pick, shown, id
    ratings: dict[str, dict[int, tuple[float, int]]] = field(default_factory=lambda: defaultdict(dict))
    pairwise: list[tuple[str, int, int, str, int]] = field(default_factory=list)  # judge, a, b, label, id
    correct: dict[int, list[tuple[str, bool, int]]] = field(default_factory=lambda: defaultdict(list))
    checklist: dict[int, dict[str, list[tuple[bool, int]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))


@dataclass
class ModelRow:
    id: int
    judge: str
    response_id: int | None
    response_b_id: int | None
    variant: str | None
    value: float | None
    prob: float | None
    label: str | None
    dist: dict[str, float] | None
    rationale: str | None
    method_version: str | None


@dataclass
class Chunk:
    prompts: list[PromptRow]
    responses: dict[int, Resp]
    by_prompt: dict[int, list[Resp]]
    human: dict[int, Human]
    model: dict[int, list[ModelRow]]


def prompt_ids(db: Database, study_id: int) -> list[int]:
    return [r[0] for r in db.fetchall("SELECT id FROM prompt WHERE study_id = ? ORDER BY position, id", [study_id])]


_HUMAN_SQL = f"""
SELECT id, prompt_id, judge, method, response_id, response_b_id, checklist_item_id, shown_order, value, label
FROM judgment
WHERE study_id = $study AND judge_kind = 'human' AND stage = 'blind' AND superseded_at IS NULL AND status = 'ok'
  AND method IN (SELECT unnest($methods::VARCHAR[]))
  AND prompt_id IN (SELECT unnest($ids::BIGINT[]))
  AND (method <> '{HumanMethod.RATING}' OR (response_id IS NOT NULL AND value IS NOT NULL))
QUALIFY row_number() OVER (PARTITION BY prompt_id, judge, method, target_key ORDER BY created_at DESC, id DESC) = 1
ORDER BY prompt_id, judge, id
"""

_MODEL_SQL = """
SELECT id, prompt_id, judge, response_id, response_b_id, variant, value, prob, label, dist, rationale, method_version
FROM judgment
WHERE study_id = $study AND judge_kind = 'model' AND superseded_at IS NULL AND status = 'ok'
  AND method = $method AND checklist_item_id IS NULL AND ($judge IS NULL OR judge = $judge)
  AND prompt_id IN (SELECT unnest($ids::BIGINT[]))
QUALIFY row_number() OVER (PARTITION BY prompt_id, judge, target_key, stage ORDER BY created_at DESC, id DESC) = 1
ORDER BY prompt_id, id
"""


def load_chunk(db: Database, study_id: int, ids: list[int], *, human_methods: list[str],
               model_method: str | None, model_judge: str | None) -> Chunk:
    prompts = [PromptRow(r[0], r[1], [{"role": m["role"], "content": m["content"]} for m in json.loads(r[2])])
               for r in db.fetchall("SELECT id, external_id, messages FROM prompt WHERE id IN (SELECT unnest(?::BIGINT[])) "
                                    "ORDER BY position, id", [ids])]
    responses: dict[int, Resp] = {}
    by_prompt: dict[int, list[Resp]] = defaultdict(list)
    for r in db.fetchall(
            """SELECT r.id, r.prompt_id, r.text, r.origin, r.run_id, coalesce(r.model_id, g.model_id), r.parent_id
               FROM response r LEFT JOIN generation_run g ON g.id = r.run_id
               WHERE r.prompt_id IN (SELECT unnest(?::BIGINT[])) ORDER BY r.prompt_id, r.id""", [ids]):
        resp = Resp(*r)
        responses[resp.id] = resp
        by_prompt[resp.prompt_id].append(resp)
    human: dict[int, Human] = defaultdict(Human)
    if human_methods:
        for (jid, pid, judge, method, rid, rid_b, item, shown, value, label) in db.fetchall(
                _HUMAN_SQL, {"study": study_id, "methods": human_methods, "ids": ids}):
            h = human[pid]
            if method == HumanMethod.BEST:
                h.picks.append((judge, rid, list(shown) if shown else None, jid))
            elif method == HumanMethod.RATING:
                h.ratings[judge][rid] = (float(value), jid)
            elif method == HumanMethod.PAIRWISE and rid is not None and rid_b is not None and rid != rid_b and label:
                h.pairwise.append((judge, rid, rid_b, label, jid))
            elif method == HumanMethod.CORRECT and rid is not None:
                ok = label == "correct" if label in ("correct", "incorrect") else (
                    value >= 0.5 if value is not None else None)
                if ok is not None:
                    h.correct[rid].append((judge, ok, jid))
            elif method == HumanMethod.CHECKLIST_ITEM and rid is not None and item is not None and label in ("YES", "NO"):
                h.checklist[rid][judge].append((label == "YES", jid))
    model: dict[int, list[ModelRow]] = defaultdict(list)
    if model_method:
        for r in db.fetchall(_MODEL_SQL, {"study": study_id, "method": model_method, "judge": model_judge,
                                          "ids": ids}):
            model[r[1]].append(ModelRow(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                                        json.loads(r[9]) if r[9] else None, r[10], r[11]))
    return Chunk(prompts, responses, by_prompt, human, model)


def chunks(db: Database, study_id: int, *, human_methods: list[str], model_method: str | None,
           model_judge: str | None, size: int = CHUNK_PROMPTS) -> Iterator[Chunk]:
    ids = prompt_ids(db, study_id)
    for i in range(0, len(ids), size):
        yield load_chunk(db, study_id, ids[i:i + size], human_methods=human_methods, model_method=model_method,
                         model_judge=model_judge)


def human_methods_present(db: Database, study_id: int) -> set[str]:
    return {r[0] for r in db.fetchall(
        """SELECT DISTINCT method FROM judgment WHERE study_id = ? AND judge_kind = 'human' AND stage = 'blind'
           AND superseded_at IS NULL AND status = 'ok'""", [study_id])}


def model_judges(db: Database, study_id: int, method: str) -> list[str]:
    return [r[0] for r in db.fetchall(
        """SELECT judge FROM judgment WHERE study_id = ? AND judge_kind = 'model' AND method = ?
           AND superseded_at IS NULL AND status = 'ok' GROUP BY judge ORDER BY count(*) DESC, judge""",
        [study_id, method])]


def model_sources(db: Database, study_id: int) -> list[dict[str, Any]]:
    """Model methods with current verdicts in the study: [{method, judge, n}] (for the Export tab)."""
    return [{"method": m, "judge": j, "n": n} for m, j, n in db.fetchall(
        """SELECT method, judge, count(*) FROM judgment WHERE study_id = ? AND judge_kind = 'model'
           AND superseded_at IS NULL AND status = 'ok' AND checklist_item_id IS NULL
           GROUP BY method, judge ORDER BY method, judge""", [study_id])]
