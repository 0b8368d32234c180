"""What the pair policies read, one chunk of prompts at a time (so a 200k-pair export holds one chunk in
memory, never the study): prompts, responses, current blind human labels and one model method's verdicts.

Human labels are the *current* (not superseded) *blind* rows with status ok, the latest per (judge, method,
target) should an old database hold two, except those of the people the gold gate leaves out (`leave_out`,
storage.gold.gate). Model verdicts are current rows with status ok. Gold items (prompts with a gold answer)
are never read: they are not data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.current import current_sql
from storage.db import Database
from storage.human_labels import (
    ChecklistAnswer,
    CorrectLabel,
    decode,
    PairVote,
    Pick,
    Rating,
    StoredLabel,
)
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
    """One prompt's current blind human labels (judge names as stored), decoded by storage.human_labels."""

    picks: list[Pick] = field(default_factory=list)
    ratings: dict[str, dict[int, Rating]] = field(default_factory=lambda: defaultdict(dict))  # judge → response →
    pairwise: list[PairVote] = field(default_factory=list)  # votes between two different responses
    correct: dict[int, list[CorrectLabel]] = field(default_factory=lambda: defaultdict(list))  # response →
    checklist: dict[int, dict[str, list[ChecklistAnswer]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))  # response → judge →


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
    # a row standing for several judgments (PRE's vote, storage.export.pre): their ids, the row's provenance
    voter_ids: list[int] | None = None


@dataclass
class Chunk:
    prompts: list[PromptRow]
    responses: dict[int, Resp]
    by_prompt: dict[int, list[Resp]]
    human: dict[int, Human]
    model: dict[int, list[ModelRow]]
    # The same method's verdicts by the --consistent-with judge (empty without it).
    consistency: dict[int, list[ModelRow]] = field(default_factory=dict)


def prompt_ids(db: Database, study_id: int) -> list[int]:
    """The study's prompts that are data: all but the gold items."""
    return [r[0] for r in db.fetchall(
        "SELECT id FROM prompt WHERE study_id = ? AND id NOT IN (SELECT prompt_id FROM gold WHERE study_id = ?) "
        "ORDER BY position, id", [study_id, study_id])]


# The current blind human labels: one per slot (storage.current), should an old database hold two.
_HUMAN_SQL = current_sql(
    "j.prompt_id, j.id, j.judge, j.method, j.response_id, j.response_b_id, j.checklist_item_id, j.shown_order, "
    "j.value, j.label",
    "j.study_id = $study AND j.judge_kind = 'human' AND j.stage = 'blind' AND j.status = 'ok' "
    "AND j.method IN (SELECT unnest($methods::VARCHAR[])) AND j.prompt_id IN (SELECT unnest($ids::BIGINT[])) "
    "AND (j.method <> $rating OR (j.response_id IS NOT NULL AND j.value IS NOT NULL))",
    one_per="slot") + " ORDER BY j.prompt_id, j.judge, j.id"
# The rows the gold gate takes out of _HUMAN_SQL's, on the prompts that are data, per person.
_GATED_SQL = current_sql(
    "j.judge, count(*)",
    "j.study_id = $study AND j.judge_kind = 'human' AND j.stage = 'blind' AND j.status = 'ok' "
    "AND j.method IN (SELECT unnest($methods::VARCHAR[])) AND j.judge IN (SELECT unnest($gated::VARCHAR[])) "
    "AND j.prompt_id NOT IN (SELECT prompt_id FROM gold WHERE study_id = $study) "
    "AND (j.method <> $rating OR (j.response_id IS NOT NULL AND j.value IS NOT NULL))",
    one_per="slot") + " GROUP BY j.judge ORDER BY j.judge"


# One method's current ok model verdicts, one per slot: a verdict per stage, as the human rows above.
_MODEL_SQL = current_sql(
    "j.id, j.prompt_id, j.judge, j.response_id, j.response_b_id, j.variant, j.value, j.prob, j.label, j.dist, "
    "j.rationale, j.method_version",
    "j.study_id = $study AND j.judge_kind = 'model' AND j.status = 'ok' AND j.method = $method "
    "AND j.checklist_item_id IS NULL AND ($judge IS NULL OR j.judge = $judge) "
    "AND j.prompt_id IN (SELECT unnest($ids::BIGINT[]))",
    one_per="slot") + " ORDER BY j.prompt_id, j.id"

def _model_rows(db: Database, study_id: int, ids: list[int], method: str,
                judge: str | None) -> dict[int, list[ModelRow]]:
    model: dict[int, list[ModelRow]] = defaultdict(list)
    for r in db.fetchall(_MODEL_SQL, {"study": study_id, "method": method, "judge": judge, "ids": ids}):
        model[r[1]].append(ModelRow(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                                    json.loads(r[9]) if r[9] else None, r[10], r[11]))
    return model


def gated_labels(db: Database, study_id: int, human_methods: list[str], gated: Sequence[str]) -> dict[str, int]:
    """How many of the labels an export reads (`human_methods`) each gated person has: what the gate leaves out."""
    if not gated or not human_methods:
        return {}
    return dict(db.fetchall(_GATED_SQL, {"study": study_id, "methods": human_methods, "gated": list(gated),
                                         "rating": HumanMethod.RATING}))


def load_chunk(db: Database, study_id: int, ids: list[int], *, human_methods: list[str],
               model_method: str | None, model_judge: str | None,
               consistency_judge: str | None = None, leave_out: Sequence[str] = ()) -> Chunk:
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
        for pid, *row in db.fetchall(_HUMAN_SQL, {"study": study_id, "methods": human_methods, "ids": ids,
                                                  "rating": HumanMethod.RATING}):
            if row[1] in leave_out:
                continue
            h, lab = human[pid], decode(StoredLabel(*row))
            if isinstance(lab, Pick):
                h.picks.append(lab)
            elif isinstance(lab, Rating):
                h.ratings[lab.judge][lab.response_id] = lab
            elif isinstance(lab, PairVote) and lab.decided:
                h.pairwise.append(lab)
            elif isinstance(lab, CorrectLabel):
                h.correct[lab.response_id].append(lab)
            elif isinstance(lab, ChecklistAnswer):
                h.checklist[lab.response_id][lab.judge].append(lab)
    model = _model_rows(db, study_id, ids, model_method, model_judge) if model_method else defaultdict(list)
    consistency = (_model_rows(db, study_id, ids, model_method, consistency_judge)
                   if model_method and consistency_judge else {})
    return Chunk(prompts, responses, by_prompt, human, model, consistency)


def chunks(db: Database, study_id: int, *, human_methods: list[str], model_method: str | None,
           model_judge: str | None, consistency_judge: str | None = None, leave_out: Sequence[str] = (),
           size: int = CHUNK_PROMPTS) -> Iterator[Chunk]:
    ids = prompt_ids(db, study_id)
    gone = frozenset(leave_out)
    for i in range(0, len(ids), size):
        yield load_chunk(db, study_id, ids[i:i + size], human_methods=human_methods, model_method=model_method,
                         model_judge=model_judge, consistency_judge=consistency_judge, leave_out=gone)


def human_methods_present(db: Database, study_id: int, leave_out: Sequence[str] = ()) -> set[str]:
    """The human methods an export could read: current blind labels on the prompts that are data, by people
    the gold gate keeps (`leave_out` is whom it gates), so `--signal auto` never picks a signal only they gave."""
    return {r[0] for r in db.fetchall(
        """SELECT DISTINCT method FROM judgment WHERE study_id = $study AND judge_kind = 'human' AND stage = 'blind'
           AND superseded_at IS NULL AND status = 'ok' AND judge NOT IN (SELECT unnest($gated::VARCHAR[]))
           AND prompt_id NOT IN (SELECT prompt_id FROM gold WHERE study_id = $study)""",
        {"study": study_id, "gated": list(leave_out)})}


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
