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


def _step(ctx: AppContext, user: str, study_name: str, item: LabelItem | None, event: Event, **extra) -> Step:
    study = studies.get_study(ctx.db, study_name)
    done, total = (item.done, item.total) if item else label_queue.progress(ctx.db, study.id, user)
    return Step(item=item, study=study.name, guidelines=study.guidelines, done=done, total=total, event=event,
                **extra)


def open_study(ctx: AppContext, user: str, study_name: str | None) -> Step:
    """The person's next item of the study (their open reservation first)."""
    if not study_name:
        return Step(event="no_study")
    return _step(ctx, user, study_name, labelling.next_item(ctx, user, study_name), "opened")


class PickBelowRating(ServiceError):
    """The best pick is rated below another response: submitted only when the person confirms."""


def pick_rating_conflict(sub: LabelSubmission) -> str | None:
    """Why the answers contradict each other, naming both cards by their position, or None.

    >>> sub = LabelSubmission(study="s", prompt_id=1, shown_order=[7, 8, 9], best=8, ratings={7: 5, 8: 3, 9: 6},
    ...                       idempotency_key="k" * 8)
    >>> pick_rating_conflict(sub)
    'Your best pick, response 2, is rated 3, below response 3 (rated 6).'
    >>> pick_rating_conflict(sub.model_copy(update={"best": 9})) is None
    True
    """
    if sub.best is None or sub.best not in sub.ratings:
        return None
    mine = sub.ratings[sub.best]
    top = max(((v, -sub.shown_order.index(r), r) for r, v in sub.ratings.items() if r != sub.best), default=None)
    if top is None or top[0] <= mine:
        return None
    pos = {r: i + 1 for i, r in enumerate(sub.shown_order)}
    return (f"Your best pick, response {pos[sub.best]}, is rated {mine}, below response {pos[top[2]]} "
            f"(rated {top[0]}).")


def submit_and_next(ctx: AppContext, user: str, sub: LabelSubmission, *, confirmed: bool = False) -> Step:
    """Store the label; then the reveal step of the same item (a blind label in a study with reveal and
    model judgments), else the next item. ServiceError when the label cannot be taken (nothing stored);
    PickBelowRating when the best pick is rated below another card and the person has not `confirmed` it
    (the guidelines forbid it, and preference exports drop such pairs)."""
    conflict = pick_rating_conflict(sub)
    if conflict and not confirmed:
        raise PickBelowRating(f"{conflict} The guidelines ask for the best response to be rated highest, and "
                              "exports drop such pairs: change the pick or the ratings, or press Ctrl+Enter again "
                              "to submit it as it is.")
    result = labelling.submit(ctx, user, sub)
    name = _external_id(ctx, sub.prompt_id)
    if result.reveal:
        item = labelling.open_item(ctx, user, sub.study, sub.prompt_id, stage="revealed")
        return _step(ctx, user, sub.study, item, "reveal", prompt=name)
    study = studies.get_study(ctx.db, sub.study)
    nxt = labelling.next_item(ctx, user, sub.study, after=sub.prompt_id)
    return _step(ctx, user, sub.study, nxt, "saved", prompt=name,
                 revised=sub.stage == "revealed" and study.config.blind)


def skip_and_next(ctx: AppContext, user: str, study_name: str, prompt_id: int) -> Step:
    labelling.skip(ctx, user, study_name, prompt_id)
    nxt = labelling.next_item(ctx, user, study_name, after=prompt_id)
    return _step(ctx, user, study_name, nxt, "skipped", prompt=_external_id(ctx, prompt_id))


def back(ctx: AppContext, user: str, study_name: str, current: int | None) -> Step:
    """The item labelled before `current`, at its latest stage with the latest answers; event 'no_back'
    (and no item) when there is none."""
    prev = labelling.previous_item(ctx, user, study_name, current)
    return _step(ctx, user, study_name, prev, "back" if prev else "no_back")


def open_prompt(ctx: AppContext, user: str, study_name: str, external_id: str) -> Step:
    """One prompt of the study by its external id (the Agreement tab's most disagreed items)."""
    study = studies.get_study(ctx.db, study_name)
    pid = prompts.find_prompt_id(ctx.db, study.id, external_id.strip())
    if pid is None:
        raise ServiceError(f"no prompt {external_id.strip()!r} in study {study.name!r}")
    return _step(ctx, user, study.name, labelling.open_item(ctx, user, study.name, pid), "opened",
                 prompt=external_id.strip())


def _external_id(ctx: AppContext, prompt_id: int) -> str:
    return prompts.get_prompt(ctx.db, prompt_id).external_id
