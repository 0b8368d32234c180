"""The Label tab's work: what an annotator sees next, and storing what they decide.

Stages: in a blind study a person labels without seeing any model judgment (stage 'blind'); with
reveal on, the model's view is then shown and they may revise (stage 'revealed'). In a study that
is not blind the model's view shows from the start, so every label is 'revealed'.

The rules, enforced here for every caller (the Label tab, the JSON API, Live):
- only admins and the study's members reach its items (storage.members): a person removed from a study
  gets nothing more of it and their next submit is refused; what they stored stays;
- once a person has been shown the model's view of an item (storage.reveals), nothing of theirs for
  that item is stored as blind: a blind submit is refused;
- an item opens at the person's latest stage with their latest answers (← back included);
- a submit is the person's whole answer at its stage: it supersedes exactly that stage.
"""

from __future__ import annotations

import hashlib
import random
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from app.services.context import AppContext, ServiceError, TooManyRequests
from app.services.model_view import CardView, card_views
from storage import checklists, human_labels, judgments, label_queue, members, prompts, responses, reveals, studies
from storage.db import Database
from storage.label_sources import IMPORTED, LabelSources
from storage.models import (
    MAX_RESPONSES,
    ChatMessage,
    Judgment,
    HumanMethod,
    JudgmentIn,
    Prompt,
    Question,
    Stage,
    Study,
)

PairVerdict = Literal["A", "B", "tie", "both_bad"]
MAX_DURATION_MS = 2**31 - 1  # the judgment.duration_ms column is a 32-bit INTEGER (24.8 days)

# Free text a person types with a label. A reference answer may be as long as a response; a comment is a
# note. Stored once per submit (an edit keeps the old rows as history), so they bound what one submit adds.
MAX_REFERENCE_CHARS = 20_000
MAX_COMMENT_CHARS = 5_000


class Card(BaseModel):
    response_id: int
    text: str
    finish_reason: str | None = None
    # The turns before this one of a multi-turn answer (an imported MT-Bench turn 2, say): each model's own
    # earlier replies differ, so they belong to the response (its metadata), not to the prompt.
    earlier_turns: list[ChatMessage] = Field(default_factory=list)


def _earlier_turns(metadata: dict | None) -> list[ChatMessage]:
    """`metadata["earlier_turns"]` as messages; anything else there (hand-edited, another tool's) shows nothing."""
    raw = (metadata or {}).get("earlier_turns")
    try:
        return [ChatMessage.model_validate(m) for m in raw] if isinstance(raw, list) else []
    except ValueError:
        return []


class ChecklistQuestion(BaseModel):
    id: int
    question: str


class Answers(BaseModel):
    """What a person answered on one item (also the prefill when they come back to it)."""

    best: int | None = None  # response id
    ratings: dict[int, int] = Field(default_factory=dict)
    pairwise: PairVerdict | None = None  # A = the first card shown, B = the second
    correct: dict[int, bool] = Field(default_factory=dict)
    checklist_yes: dict[int, list[int]] = Field(default_factory=dict)  # response id -> item ids answered YES
    invalid_items: list[int] = Field(default_factory=list)
    critique: dict[int, Literal["agree", "disagree"]] = Field(default_factory=dict)
    reference: str = ""
    comment: str = ""


class LabelItem(BaseModel):
    study: str
    study_id: int
    prompt_id: int
    prompt_external_id: str
    messages: list[ChatMessage]
    cards: list[Card]  # in the order this annotator sees them
    questions: list[Question]
    checklist: list[ChecklistQuestion] = Field(default_factory=list)
    answers: Answers = Field(default_factory=Answers)
    stage: Stage = "blind"
    blind: bool = True  # the study is blind (so a 'revealed' stage here is a revision after reveal)
    editing: bool = False  # the person has answers of this stage already (← back to a labelled item)
    done: int = 0
    total: int = 0
    scale: tuple[int, int] = (1, 7)
    show_model_view: bool = False
    views: dict[int, CardView] = Field(default_factory=dict)


class LabelSubmission(Answers):
    study: str
    prompt_id: int
    shown_order: list[int]
    stage: Stage = "blind"
    idempotency_key: str = Field(min_length=8, max_length=100)
    duration_ms: int | None = Field(None, ge=0, le=MAX_DURATION_MS)
    reference: str = Field("", max_length=MAX_REFERENCE_CHARS)
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)

    @field_validator("reference", "comment", "idempotency_key")
    @classmethod
    def _storable_text(cls, v: str) -> str:
        # A lone UTF-16 surrogate (valid in JSON as an escape) is not a character: UTF-8, and so the
        # database, cannot store it.
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text contains \\u{ord(v[e.start]):04x}, half of a UTF-16 surrogate pair, which is "
                             "not a character") from None
        return v


def submission(**fields: object) -> LabelSubmission:
    """A LabelSubmission from the Label tab, the JSON API or Live; ServiceError naming each field that breaks a
    limit, and the limit, otherwise.

    >>> submission(study="s", prompt_id=1, shown_order=[1], idempotency_key="k" * 8, comment="x" * 5001)
    Traceback (most recent call last):
    app.services.context.ServiceError: comment has 5,001 characters; the limit is 5,000
    """
    try:
        return LabelSubmission(**fields)  # type: ignore[arg-type]
    except ValidationError as e:
        raise ServiceError("; ".join(_problem(err) for err in e.errors())) from None


def _problem(err: dict) -> str:
    where = ".".join(str(x) for x in err.get("loc", ()))
    if err.get("type") == "string_too_long":
        return f"{where} has {len(err['input']):,} characters; the limit is {err['ctx']['max_length']:,}"
    return f"{where}: {err.get('msg', 'invalid')}"


class SubmitResult(BaseModel):
    judgment_ids: list[int]
    reveal: bool  # show this item again with the model's view, for an optional revision


def label_run(db: Database, study: Study) -> tuple[int | None, int]:
    """(run id, n) whose samples people label: the study's chosen run, else its latest run."""
    run = None
    if study.config.label_run_id is not None:
        run = next((r for r in studies.list_runs(db, study.id) if r.id == study.config.label_run_id), None)
    run = run or studies.latest_run(db, study.id)
    return (run.id, run.n) if run else (None, 0)


def label_sources(db: Database, study: Study) -> LabelSources:
    """Where the study's cards come from: its `label_runs` (runs and "imported", mixed by
    storage.label_sources' rule), else the one run of `label_run` (no run: the imported responses)."""
    if not study.config.label_runs:
        return LabelSources.of_run(*label_run(db, study))
    ns = {r.id: r.n for r in studies.list_runs(db, study.id)}
    runs = tuple(s for s in study.config.label_runs if isinstance(s, int) and s in ns)
    return LabelSources(runs, sum(ns[r] for r in runs), IMPORTED in study.config.label_runs)


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


def _label_set(ctx: AppContext, study: Study, prompt_id: int,
               sources: LabelSources | None = None) -> dict[int, responses.Response]:
    sources = sources or label_sources(ctx.db, study)
    if (run_id := sources.single_run) is not None:
        # responses.label_set's first case (the usual one), without its join and whole-prompt read.
        rows = responses.run_samples(ctx.db, prompt_id, run_id)
        if rows:
            return {r.id: r for r in rows[:MAX_RESPONSES]}
    return {r.id: r for r in responses.label_set(ctx.db, prompt_id, sources, study.id)[:MAX_RESPONSES]}


def _checked_label_ids(ctx: AppContext, study: Study, prompt_id: int, annotator: str) -> set[int]:
    """members.check and _checked_prompt's test, then the ids of _label_set, in one statement where the
    labelling run has samples for the prompt (a submit's usual case: more round trips and whole rows cost a
    millisecond more)."""
    sources = label_sources(ctx.db, study)
    run_id = sources.single_run
    check = label_queue.submit_check(ctx.db, study.id, prompt_id, run_id, annotator)
    if not check.may_label:
        raise members.NotMember(annotator, study.name)
    if check.prompt_study_id != study.id:
        raise ServiceError(f"prompt {prompt_id} is not in study {study.name!r}")
    if run_id is not None and check.sample_ids:
        return set(check.sample_ids[:MAX_RESPONSES])
    return set(_label_set(ctx, study, prompt_id, sources))


def _model_checklist(ctx: AppContext, prompt_id: int) -> list[ChecklistQuestion]:
    cl = checklists.get_checklist(ctx.db, prompt_id, method="checklist")
    return [ChecklistQuestion(id=i.id, question=i.question) for i in cl.items] if cl else []


def _answers(rows: list[Judgment]) -> Answers:
    """A person's rows of one stage as their answers (oldest first, so the latest of a target wins)."""
    a = Answers()
    for lab in map(human_labels.decode, rows):
        if isinstance(lab, human_labels.Pick):
            a.best = lab.response_id
        elif isinstance(lab, human_labels.Rating):
            a.ratings[lab.response_id] = int(lab.value)
        elif isinstance(lab, human_labels.PairVote):
            a.pairwise = lab.verdict  # type: ignore[assignment]
        elif isinstance(lab, human_labels.CorrectLabel):
            a.correct[lab.response_id] = lab.ok
        elif isinstance(lab, human_labels.ChecklistAnswer) and lab.yes:
            a.checklist_yes.setdefault(lab.response_id, []).append(lab.item_id)
        elif isinstance(lab, human_labels.CriterionVerdict) and not lab.valid:
            a.invalid_items.append(lab.item_id)
        elif isinstance(lab, human_labels.CritiqueVerdict):
            a.critique[lab.response_id] = lab.verdict
        elif isinstance(lab, human_labels.Note):
            setattr(a, lab.kind, lab.text)
    return a


def _item(ctx: AppContext, study: Study, annotator: str, prompt_id: int, stage: Stage,
          sources: LabelSources | None = None, prompt: Prompt | None = None) -> LabelItem:
    prompt = prompt or prompts.get_prompt(ctx.db, prompt_id)
    rows = _label_set(ctx, study, prompt_id, sources)
    order = shown_order(annotator, prompt_id, list(rows))
    item = LabelItem(study=study.name, study_id=study.id, prompt_id=prompt_id,
                     prompt_external_id=prompt.external_id, messages=prompt.messages,
                     cards=[Card(response_id=i, text=rows[i].text, finish_reason=rows[i].finish_reason,
                                 earlier_turns=_earlier_turns(rows[i].metadata)) for i in order],
                     questions=study.config.questions, scale=study.config.rating_scale, stage=stage,
                     blind=study.config.blind)
    if "checklist" in item.questions:
        item.checklist = _model_checklist(ctx, prompt_id)
    mine = judgments.current(ctx.db, study_id=study.id, judge=annotator, prompt_id=prompt_id, judge_kind="human",
                             stage=None)
    item.editing = any(j.stage == stage for j in mine)  # the reveal step is not an edit: nothing revealed yet
    # Prefill with this stage's answers; a reveal step starts from the blind answers.
    same = [j for j in mine if j.stage == stage] or [j for j in mine if j.stage == "blind"]
    item.answers = _answers(same)
    item.done, item.total = label_queue.progress(ctx.db, study.id, annotator)
    item.show_model_view = stage == "revealed"
    if item.show_model_view:
        item.views = card_views(ctx, study.id, prompt_id, order)
        # Recorded before the view leaves the server: from now on this person's labels here are not blind.
        reveals.mark_seen(ctx.db, study.id, prompt_id, annotator)
    return item


def _latest_stage(ctx: AppContext, study: Study, annotator: str, prompt_id: int) -> Stage:
    """The stage an item opens at for this person: 'revealed' once they have seen the model's view of it
    (or when the study is not blind), else 'blind'."""
    if not study.config.blind or reveals.has_seen(ctx.db, study.id, prompt_id, annotator):
        return "revealed"
    return "blind"


def _study(ctx: AppContext, study: str | Study) -> Study:
    """A study named by the caller, or the Study it read already (label_flow reads it once per action)."""
    return study if isinstance(study, Study) else studies.get_study(ctx.db, study)


def next_item(ctx: AppContext, annotator: str, study_name: str | Study, *,
              after: int | None = None) -> LabelItem | None:
    """The annotator's next prompt, or None when nothing is left (or nothing is ready yet)."""
    study = _study(ctx, study_name)
    sources = label_sources(ctx.db, study)
    prompt_id = label_queue.next_prompt(ctx.db, study.id, annotator, sources, exclude=after,
                                        overlap=study.config.overlap, extra=study.config.extra_on_disagreement,
                                        order=study.config.queue_order, gold_rate=study.config.gold_rate)
    if prompt_id is None:
        return None
    return _item(ctx, study, annotator, prompt_id, _latest_stage(ctx, study, annotator, prompt_id), sources)


def has_work(ctx: AppContext, annotator: str, study_name: str) -> bool:
    """Whether the study has an item for this annotator now (nothing is reserved by asking)."""
    study = studies.get_study(ctx.db, study_name)
    return label_queue.next_prompt(ctx.db, study.id, annotator, label_sources(ctx.db, study),
                                   overlap=study.config.overlap, extra=study.config.extra_on_disagreement,
                                   reserve=False, order=study.config.queue_order,
                                   gold_rate=study.config.gold_rate) is not None


def previous_item(ctx: AppContext, annotator: str, study_name: str | Study,
                  current: int | None) -> LabelItem | None:
    """The item labelled just before `current` in this annotator's history (for ← edit), at its latest
    stage with the latest answers: an item whose model's view they have seen reopens revealed."""
    study = _study(ctx, study_name)
    members.check(ctx.db, study.id, annotator)
    history = label_queue.labelled_history(ctx.db, study.id, annotator)
    if current in history:
        history = history[: history.index(current)]
    if not history:
        return None
    return _item(ctx, study, annotator, history[-1], _latest_stage(ctx, study, annotator, history[-1]))


def open_item(ctx: AppContext, annotator: str, study_name: str | Study, prompt_id: int,
              stage: Stage | None = None) -> LabelItem:
    """One item of the study for this person: at their latest stage, or `stage='revealed'` to show the
    model's view (the reveal step; in a blind study only after their blind label)."""
    study = _study(ctx, study_name)
    members.check(ctx.db, study.id, annotator)
    prompt = _checked_prompt(ctx, study, prompt_id)
    latest = _latest_stage(ctx, study, annotator, prompt_id)
    if stage == "blind" and latest == "revealed":
        raise ServiceError("you have seen the model's view of this item: it can no longer be opened blind")
    if stage == "revealed" and latest == "blind" and not _has_blind_label(ctx, study, annotator, prompt_id):
        raise ServiceError("label this item blind first; the model's view shows after you submit")
    return _item(ctx, study, annotator, prompt_id, stage or latest, prompt=prompt)


def reveal_item(ctx: AppContext, annotator: str, study: Study, prompt_id: int) -> LabelItem:
    """The reveal step, straight after `submit` stored this person's blind label of the item and answered
    `reveal`: open_item(stage='revealed') without asking again what that submit has just checked (the
    prompt's study, the stage, the blind label). Membership is checked again: a removal may come between."""
    members.check(ctx.db, study.id, annotator)
    return _item(ctx, study, annotator, prompt_id, "revealed")


def progress_text(item: LabelItem | None, done: int | None = None, total: int | None = None) -> str:
    d, t = (item.done, item.total) if item else (done or 0, total or 0)
    return f"{d} / {t} labelled by you"


def _checked_prompt(ctx: AppContext, study: Study, prompt_id: int) -> Prompt:
    """The prompt, read once for the check and for whoever shows it next; ServiceError unless it is the study's."""
    try:
        prompt = prompts.get_prompt(ctx.db, prompt_id)
    except LookupError:
        prompt = None
    if prompt is None or prompt.study_id != study.id:
        raise ServiceError(f"prompt {prompt_id} is not in study {study.name!r}")
    return prompt


def _has_blind_label(ctx: AppContext, study: Study, annotator: str, prompt_id: int) -> bool:
    return bool(judgments.current(ctx.db, study_id=study.id, judge=annotator, prompt_id=prompt_id,
                                  judge_kind="human", stage="blind"))


def _validate(ctx: AppContext, study: Study, sub: LabelSubmission, expected: set[int]) -> None:
    q = set(study.config.questions)
    if set(sub.shown_order) != expected or len(sub.shown_order) != len(expected):
        raise ServiceError("the responses shown no longer match this prompt's responses; reload the item")
    if sub.best is None and not sub.ratings and sub.pairwise is None and not sub.correct:
        raise ServiceError("pick the best response (or rate at least one) before submitting")
    asked = {"best": sub.best is not None, "rating": bool(sub.ratings), "pairwise": sub.pairwise is not None,
             "correct": bool(sub.correct), "checklist": bool(sub.checklist_yes or sub.invalid_items),
             "critique": bool(sub.critique), "reference": bool(sub.reference.strip()),
             "comment": bool(sub.comment.strip())}
    extra = [name for name, given in asked.items() if given and name not in q]
    if extra:
        raise ServiceError(f"this study does not ask for: {', '.join(extra)}")
    for rid in [sub.best] * (sub.best is not None) + [*sub.ratings, *sub.correct, *sub.checklist_yes, *sub.critique]:
        if rid not in expected:
            raise ServiceError(f"response {rid} is not one of this prompt's responses")
    lo, hi = study.config.rating_scale
    for rating in sub.ratings.values():
        if not lo <= rating <= hi:
            raise ServiceError(f"rating {rating} is outside the scale {lo}-{hi}")
    if sub.pairwise is not None and len(sub.shown_order) < 2:
        raise ServiceError("a pairwise verdict needs two responses")
    if sub.checklist_yes or sub.invalid_items:
        items = {i.id for i in _model_checklist(ctx, sub.prompt_id)}
        unknown = {i for ids in sub.checklist_yes.values() for i in ids} | set(sub.invalid_items)
        if unknown - items:
            raise ServiceError(f"checklist items {sorted(unknown - items)} are not this prompt's checklist")
    if sub.critique and sub.stage != "revealed":
        raise ServiceError("agreeing with the model's critique needs the model's view: it is asked after reveal")


def submit(ctx: AppContext, annotator: str, sub: LabelSubmission, *, source: str = "ui",
           study: Study | None = None) -> SubmitResult:
    """Validate a label against what the annotator was shown and store it (one transaction).

    Every judgment gets an idempotency key derived from the client's, so a double submit stores
    nothing new; a submit replaces the person's answers of its stage (the old rows stay as history).
    ServiceError, with nothing stored, when the reveal rules or the study refuse it; members.NotMember when
    the person may not label the study (removed from its members while the item was open). Labels from the Live
    tab (`source='live'`) saw the model's scores: they are always 'revealed', with no blind label. `study`: the
    study `sub.study` names, when the caller has read it already.
    """
    if ctx.submit_limit is not None and (wait := ctx.submit_limit.take(annotator)) is not None:
        raise TooManyRequests(f"too many labels at once: at most {ctx.submit_limit.limit} submits a minute per "
                              f"person; try again in {wait} s", retry_after=wait)
    study = study if study is not None and study.name == sub.study else studies.get_study(ctx.db, sub.study)
    seen = members.version(ctx.db)  # read before the membership check, for members.recheck
    expected = _checked_label_ids(ctx, study, sub.prompt_id, annotator)
    live = source == "live"
    stage: Stage = "revealed" if live or not study.config.blind else sub.stage
    try:
        sub = sub.model_copy(update={"stage": stage})
        _validate(ctx, study, sub, expected)
        # Each query here costs about a millisecond under load: ask only what this study uses.
        checklist = _model_checklist(ctx, sub.prompt_id) if "checklist" in study.config.questions else []
        rows = _judgments(study, annotator, sub, source, checklist)
        with ctx.db.write():  # the reveal rules are checked under the write lock: another tab may reveal meanwhile
            members.recheck(ctx.db, study.id, annotator, seen)  # removed from the study since: refused
            if study.config.blind and not live:
                _check_stage(ctx, study, annotator, sub)
            ids = judgments.record(ctx.db, rows, whole_stage=True)
            label_queue.update_disagreement(ctx.db, study.id, sub.prompt_id)
            label_queue.release(ctx.db, study.id, sub.prompt_id, annotator)
    except ServiceError:
        # A retry of a submit that was stored (its answer lost on the way) answers as the first time did,
        # even when the item has moved on since (the reveal was shown, the settings changed).
        stored = judgments.submitted(ctx.db, annotator, sub.prompt_id, sub.idempotency_key)
        if stored:
            return SubmitResult(judgment_ids=stored, reveal=False)
        raise
    reveal = (stage == "blind" and study.config.reveal
              and judgments.has_current(ctx.db, study_id=study.id, prompt_id=sub.prompt_id, judge_kind="model"))
    return SubmitResult(judgment_ids=ids, reveal=reveal)


def _check_stage(ctx: AppContext, study: Study, annotator: str, sub: LabelSubmission) -> None:
    """ServiceError when the reveal rules forbid storing the submit at its stage in this blind study."""
    seen = reveals.has_seen(ctx.db, study.id, sub.prompt_id, annotator)
    if sub.stage == "blind" and seen:
        raise ServiceError("you have already seen the model's view of this item, so your label can no longer "
                           "be stored as blind; reload the item and submit it as a revised label")
    if sub.stage == "revealed" and not seen and not _has_blind_label(ctx, study, annotator, sub.prompt_id):
        raise ServiceError("a revised label needs a blind label first")


def _judgments(study: Study, annotator: str, sub: LabelSubmission, source: str,
               checklist: list[ChecklistQuestion]) -> list[JudgmentIn]:
    common = {"study_id": study.id, "prompt_id": sub.prompt_id, "judge_kind": "human", "judge": annotator,
              "shown_order": sub.shown_order, "stage": sub.stage, "source": source, "duration_ms": sub.duration_ms}
    key = sub.idempotency_key
    rows: list[JudgmentIn] = []
    if sub.best is not None:
        rows.append(JudgmentIn(**common, method=HumanMethod.BEST, response_id=sub.best, idempotency_key=f"{key}:best"))
    for rid, rating in sorted(sub.ratings.items()):
        rows.append(JudgmentIn(**common, method=HumanMethod.RATING, response_id=rid, value=float(rating),
                               idempotency_key=f"{key}:r{rid}"))
    if sub.pairwise is not None:
        a, b = sub.shown_order[0], sub.shown_order[1]
        label = {"A": str(a), "B": str(b)}.get(sub.pairwise, sub.pairwise)
        rows.append(JudgmentIn(**common, method=HumanMethod.PAIRWISE, response_id=a, response_b_id=b, label=label,
                               idempotency_key=f"{key}:pair"))
    for rid, ok in sorted(sub.correct.items()):
        rows.append(JudgmentIn(**common, method=HumanMethod.CORRECT, response_id=rid, value=1.0 if ok else 0.0,
                               label="correct" if ok else "incorrect", idempotency_key=f"{key}:c{rid}"))
    if "checklist" in study.config.questions and checklist and (sub.checklist_yes or sub.invalid_items):
        for rid in sub.shown_order:
            yes = set(sub.checklist_yes.get(rid, []))
            for item in checklist:
                if item.id in sub.invalid_items:
                    continue
                rows.append(JudgmentIn(**common, method=HumanMethod.CHECKLIST_ITEM, response_id=rid, checklist_item_id=item.id,
                                       label="YES" if item.id in yes else "NO", value=1.0 if item.id in yes else 0.0,
                                       idempotency_key=f"{key}:i{rid}:{item.id}"))
        for item in checklist:
            bad = item.id in sub.invalid_items
            rows.append(JudgmentIn(**common, method=HumanMethod.CRITERION_VALID, checklist_item_id=item.id,
                                   label="invalid" if bad else "valid", value=0.0 if bad else 1.0,
                                   idempotency_key=f"{key}:v{item.id}"))
    for rid, verdict in sorted(sub.critique.items()):
        rows.append(JudgmentIn(**common, method=HumanMethod.CRITIQUE_AGREE, response_id=rid, label=verdict,
                               value=1.0 if verdict == "agree" else 0.0, idempotency_key=f"{key}:k{rid}"))
    for method, text in ((HumanMethod.REFERENCE, sub.reference), (HumanMethod.COMMENT, sub.comment)):
        if text and text.strip():
            rows.append(JudgmentIn(**common, method=method, rationale=text.strip(), idempotency_key=f"{key}:{method}"))
    return rows


def skip(ctx: AppContext, annotator: str, study_name: str | Study, prompt_id: int) -> Prompt:
    """Put the item back at the end of this person's queue; the prompt skipped."""
    study = _study(ctx, study_name)
    members.check(ctx.db, study.id, annotator)
    prompt = _checked_prompt(ctx, study, prompt_id)
    label_queue.record_skip(ctx.db, study.id, prompt_id, annotator)
    return prompt
