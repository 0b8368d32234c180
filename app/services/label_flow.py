"""The Label tab's actions, one service call each: what the person sees after opening a study,
submitting, skipping, going back or opening a prompt from another tab.

Each returns a Step: the item to show (or None), the study's guidelines and the person's progress, and
what happened, so the UI only renders it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.labelling import LabelItem, LabelSubmission
from storage import label_queue, prompts, studies
from storage.models import Study

Event = Literal["opened", "saved", "reveal", "skipped", "back", "no_back", "no_study"]


class Step(BaseModel):
    item: LabelItem | None = None
    study: str | None = None
    guidelines: str = ""
    done: int = 0
    total: int = 0
    event: Event = "opened"
    prompt: str | None = None  # external id of the prompt the event was about (saved, skipped)
    revised: bool = False  # the saved label was a revision after reveal


def _step(ctx: AppContext, user: str, study: Study, item: LabelItem | None, event: Event, **extra) -> Step:
    done, total = (item.done, item.total) if item else label_queue.progress(ctx.db, study.id, user)
    return Step(item=item, study=study.name, guidelines=study.guidelines, done=done, total=total, event=event,
                **extra)


def open_study(ctx: AppContext, user: str, study_name: str | None) -> Step:
    """The person's next item of the study (their open reservation first)."""
    if not study_name:
        return Step(event="no_study")
    study = studies.get_study(ctx.db, study_name)
    return _step(ctx, user, study, labelling.next_item(ctx, user, study), "opened")


class CheckAnswers(ServiceError):
    """The answers look unfinished or contradict themselves: submitted only when the person confirms."""


def answer_warnings(sub: LabelSubmission, questions: list[str]) -> list[str]:
    """What a careful labeller would want pointed out before submitting, naming cards by their position.

    >>> sub = LabelSubmission(study="s", prompt_id=1, shown_order=[7, 8, 9], best=8, ratings={7: 5, 8: 3, 9: 6},
    ...                       idempotency_key="k" * 8)
    >>> answer_warnings(sub, ["best", "rating"])
    ['Your best pick, response 2, is rated 3, below response 3 (rated 6).']
    >>> answer_warnings(sub.model_copy(update={"best": None, "ratings": {7: 5}}), ["best", "rating"])
    ['No best pick.', 'Responses 2 and 3 are not rated.']
    """
    pos = {r: i + 1 for i, r in enumerate(sub.shown_order)}
    out = []
    if "best" in questions and sub.best is None:
        out.append("No best pick.")
    if sub.best is not None and sub.best in sub.ratings:
        mine = sub.ratings[sub.best]
        top = max(((v, -pos[r], r) for r, v in sub.ratings.items() if r != sub.best), default=None)
        if top is not None and top[0] > mine:
            out.append(f"Your best pick, response {pos[sub.best]}, is rated {mine}, below response {pos[top[2]]} "
                       f"(rated {top[0]}).")
    unrated = [pos[r] for r in sub.shown_order if r not in sub.ratings]
    if "rating" in questions and not sub.ratings:
        out.append("No response is rated.")
    elif "rating" in questions and unrated:
        many = len(unrated) > 1
        names = f"{', '.join(map(str, unrated[:-1]))} and {unrated[-1]}" if many else str(unrated[0])
        out.append(f"Response{'s' * many} {names} {'are' if many else 'is'} not rated.")
    return out


def submit_and_next(ctx: AppContext, user: str, sub: LabelSubmission, *, confirmed: bool = False) -> Step:
    """Store the label; then the reveal step of the same item (a blind label in a study with reveal and
    model judgments), else the next item. ServiceError when the label cannot be taken (nothing stored);
    CheckAnswers when answer_warnings has something to say and the person has not `confirmed` it."""
    study = studies.get_study(ctx.db, sub.study)  # once: every step below is about this study
    warnings = answer_warnings(sub, study.config.questions)
    if warnings and not confirmed:
        raise CheckAnswers(" ".join(warnings) + " Change your answers, or press Ctrl+Enter again to submit them "
                           "as they are.")
    result = labelling.submit(ctx, user, sub, study=study)
    if result.reveal:
        item = labelling.reveal_item(ctx, user, study, sub.prompt_id)
        return _step(ctx, user, study, item, "reveal", prompt=item.prompt_external_id)
    name = _external_id(ctx, sub.prompt_id)
    nxt = labelling.next_item(ctx, user, study, after=sub.prompt_id)
    return _step(ctx, user, study, nxt, "saved", prompt=name,
                 revised=sub.stage == "revealed" and study.config.blind)


def skip_and_next(ctx: AppContext, user: str, study_name: str, prompt_id: int) -> Step:
    study = studies.get_study(ctx.db, study_name)
    skipped = labelling.skip(ctx, user, study, prompt_id)
    nxt = labelling.next_item(ctx, user, study, after=prompt_id)
    return _step(ctx, user, study, nxt, "skipped", prompt=skipped.external_id)


def back(ctx: AppContext, user: str, study_name: str, current: int | None) -> Step:
    """The item labelled before `current`, at its latest stage with the latest answers; event 'no_back'
    (and no item) when there is none."""
    study = studies.get_study(ctx.db, study_name)
    prev = labelling.previous_item(ctx, user, study, current)
    return _step(ctx, user, study, prev, "back" if prev else "no_back")


def open_prompt(ctx: AppContext, user: str, study_name: str, external_id: str) -> Step:
    """One prompt of the study by its external id (the Agreement tab's most disagreed items)."""
    study = studies.get_study(ctx.db, study_name)
    pid = prompts.find_prompt_id(ctx.db, study.id, external_id.strip())
    if pid is None:
        raise ServiceError(f"no prompt {external_id.strip()!r} in study {study.name!r}")
    return _step(ctx, user, study, labelling.open_item(ctx, user, study, pid), "opened", prompt=external_id.strip())


def _external_id(ctx: AppContext, prompt_id: int) -> str:
    return prompts.get_prompt(ctx.db, prompt_id).external_id
