"""The Label tab's work: what an annotator sees next, and storing what they decide."""

from __future__ import annotations

import hashlib
import random

from pydantic import BaseModel, Field

from app.services.context import AppContext, ServiceError
from app.services.model_view import CardView, card_views
from storage import judgments, label_queue, prompts, responses, studies
from storage.models import ChatMessage, JudgmentIn, MAX_RESPONSES, Study


class Card(BaseModel):
    response_id: int
    text: str
    finish_reason: str | None = None


class LabelItem(BaseModel):
    study: str
    study_id: int
    prompt_id: int
    prompt_external_id: str
    messages: list[ChatMessage]
    cards: list[Card]  # in the order this annotator sees them
    best: int | None = None  # response id, when editing an earlier label
    ratings: dict[int, int] = Field(default_factory=dict)
    comment: str = ""
    done: int = 0
    total: int = 0
    editing: bool = False
    scale: tuple[int, int] = (1, 7)
    # The model's view shows only once the person has labelled the item (or in a non-blind study).
    show_model_view: bool = False
    views: dict[int, CardView] = Field(default_factory=dict)


class LabelSubmission(BaseModel):
    study: str
    prompt_id: int
    shown_order: list[int]
    best: int | None = None
    ratings: dict[int, int] = Field(default_factory=dict)
    comment: str | None = None
    idempotency_key: str = Field(min_length=8, max_length=100)
    duration_ms: int | None = None


def label_run(db, study: Study) -> tuple[int | None, int]:
    """(run id, n) whose samples people label: the study's chosen run, else its latest run."""
    run = None
    if study.config.label_run_id is not None:
        run = next((r for r in studies.list_runs(db, study.id) if r.id == study.config.label_run_id), None)
    run = run or studies.latest_run(db, study.id)
    return (run.id, run.n) if run else (None, 0)


def shown_order(annotator: str, prompt_id: int, response_ids: list[int]) -> list[int]:
    """A per-annotator shuffle of the responses, stable across visits, so position bias averages out
    over annotators and an edit shows the same layout.

    >>> shown_order("ann", 1, [1, 2, 3, 4]) == shown_order("ann", 1, [4, 3, 2, 1])
    True
    """
    ids = sorted(response_ids)
    seed = int.from_bytes(hashlib.sha256(f"{annotator}:{prompt_id}".encode()).digest()[:8], "big")
    random.Random(seed).shuffle(ids)
    return ids


def _item(ctx: AppContext, study: Study, annotator: str, prompt_id: int) -> LabelItem:
    prompt = prompts.get_prompt(ctx.db, prompt_id)
    run_id, _ = label_run(ctx.db, study)
    rows = {r.id: r for r in responses.responses_for_prompt(ctx.db, prompt_id, run_id)[:MAX_RESPONSES]}
    order = shown_order(annotator, prompt_id, list(rows))
    item = LabelItem(study=study.name, study_id=study.id, prompt_id=prompt_id,
                     prompt_external_id=prompt.external_id, messages=prompt.messages,
                     cards=[Card(response_id=i, text=rows[i].text, finish_reason=rows[i].finish_reason)
                            for i in order],
                     scale=study.config.rating_scale)
    for j in judgments.current(ctx.db, study_id=study.id, judge=annotator, prompt_id=prompt_id,
                               judge_kind="human"):
        item.editing = True
        if j.method == "best_of_n":
            item.best, item.comment = j.response_id, j.rationale or ""
        elif j.method == "likert" and j.response_id is not None and j.value is not None:
            item.ratings[j.response_id] = int(j.value)
    item.done, item.total = label_queue.progress(ctx.db, study.id, annotator)
    item.show_model_view = item.editing or not study.config.blind
    if item.show_model_view:
        item.views = card_views(ctx, study.id, prompt_id, order)
    return item


def next_item(ctx: AppContext, annotator: str, study_name: str, *, after: int | None = None) -> LabelItem | None:
    """The annotator's next prompt, or None when nothing is left (or nothing is ready yet)."""
    study = studies.get_study(ctx.db, study_name)
    run_id, n = label_run(ctx.db, study)
    prompt_id = label_queue.next_prompt(ctx.db, study.id, annotator, run_id, n, exclude=after)
    return _item(ctx, study, annotator, prompt_id) if prompt_id is not None else None


def previous_item(ctx: AppContext, annotator: str, study_name: str, current: int | None) -> LabelItem | None:
    """The item labelled just before `current` in this annotator's history (for ← edit)."""
    study = studies.get_study(ctx.db, study_name)
    history = label_queue.labelled_history(ctx.db, study.id, annotator)
    if current in history:
        history = history[: history.index(current)]
    return _item(ctx, study, annotator, history[-1]) if history else None


def open_item(ctx: AppContext, annotator: str, study_name: str, prompt_id: int) -> LabelItem:
    study = studies.get_study(ctx.db, study_name)
    if ctx.db.fetchval("SELECT study_id FROM prompt WHERE id = ?", [prompt_id]) != study.id:
        raise ServiceError(f"prompt {prompt_id} is not in study {study.name!r}")
    return _item(ctx, study, annotator, prompt_id)


def progress_text(item: LabelItem | None, done: int | None = None, total: int | None = None) -> str:
    d, t = (item.done, item.total) if item else (done or 0, total or 0)
    return f"{d} / {t} labelled by you"


def submit(ctx: AppContext, annotator: str, sub: LabelSubmission, *, source: str = "ui") -> list[int]:
    """Validate a label against what the annotator was shown and store it (one transaction).

    Every judgment gets an idempotency key derived from the client's, so a double submit stores
    nothing new; a changed label supersedes the earlier one.
    """
    study = studies.get_study(ctx.db, sub.study)
    if ctx.db.fetchval("SELECT study_id FROM prompt WHERE id = ?", [sub.prompt_id]) != study.id:
        raise ServiceError(f"prompt {sub.prompt_id} is not in study {study.name!r}")
    run_id, _ = label_run(ctx.db, study)
    expected = {r.id for r in responses.responses_for_prompt(ctx.db, sub.prompt_id, run_id)[:MAX_RESPONSES]}
    if set(sub.shown_order) != expected or len(sub.shown_order) != len(expected):
        raise ServiceError("the responses shown no longer match this prompt's responses; reload the item")
    lo, hi = study.config.rating_scale
    if sub.best is None and not sub.ratings:
        raise ServiceError("pick the best response (or rate at least one) before submitting")
    if sub.best is not None and sub.best not in expected:
        raise ServiceError(f"response {sub.best} is not one of this prompt's responses")
    for rid, rating in sub.ratings.items():
        if rid not in expected:
            raise ServiceError(f"response {rid} is not one of this prompt's responses")
        if not lo <= rating <= hi:
            raise ServiceError(f"rating {rating} is outside the scale {lo}-{hi}")
    common = dict(study_id=study.id, prompt_id=sub.prompt_id, judge_kind="human", judge=annotator,
                  shown_order=sub.shown_order, stage="blind", source=source, duration_ms=sub.duration_ms)
    rows = []
    if sub.best is not None:
        rows.append(JudgmentIn(**common, method="best_of_n", response_id=sub.best,
                               rationale=(sub.comment or "").strip() or None,
                               idempotency_key=f"{sub.idempotency_key}:best"))
    for rid, rating in sorted(sub.ratings.items()):
        rows.append(JudgmentIn(**common, method="likert", response_id=rid, value=float(rating),
                               idempotency_key=f"{sub.idempotency_key}:r{rid}"))
    return judgments.record(ctx.db, rows)


def skip(ctx: AppContext, annotator: str, study_name: str, prompt_id: int) -> None:
    study = studies.get_study(ctx.db, study_name)
    if ctx.db.fetchval("SELECT study_id FROM prompt WHERE id = ?", [prompt_id]) != study.id:
        raise ServiceError(f"prompt {prompt_id} is not in study {study.name!r}")
    label_queue.record_skip(ctx.db, study.id, prompt_id, annotator)
