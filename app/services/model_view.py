"""The model's view of each response on a Label item: its self-scores, checklist answers, critiques,
pairwise verdicts and which selectors picked it, each with the judge model that gave it (a study may be
scored by several models with the same method; data only, app/ui renders it per judge)."""

from __future__ import annotations

from functools import partial

from pydantic import BaseModel, Field

from app.services.context import AppContext
from storage.models import HumanMethod, JudgmentIn
from storage import checklists, judgments

# method id -> (badge name, how to show the score)
BADGES: dict[str, tuple[str, str]] = {
    "p_true": ("P(True)", "{prob:.2f}"),
    "p_true_brainstorm": ("P(True), brainstorm", "{prob:.2f}"),
    "checklist": ("Checklist pass rate", "{value:.0%}"),
    "judge_score": ("Judge score", "{value:.1f} / 9"),
    "rubric": ("Rubric", "{value:.1f} / 5"),
    "critique": ("Critique says correct", "{value:.0%}"),
    "self_certainty": ("Self-certainty", "{value:.2f}"),
    "neg_perplexity": ("−Perplexity", "{value:.2f}"),
    "neg_entropy": ("−Entropy", "{value:.2f}"),
    "follow_up_likelihood": ("Follow-up likelihood", "{value:+.2f}"),
    "selfcheck_prompt": ("Supported by the other samples", "{prob:.2f}"),
    "principles_critique": ("Principles + critique", "{dist[mean]:.1f} / 10, mean of {dist[k]:.0f}"),
}
SELECTOR_NAMES = {"select_majority": "majority vote", "select_usc": "USC", "select_borda": "Borda"}


class Badge(BaseModel):
    name: str
    text: str
    failed: bool = False
    judge: str = ""  # the judge model's id
    method: str = ""  # the method id, for the badge's tooltip (docs/methods.md names methods by id)


class ChecklistAnswer(BaseModel):
    question: str
    answer: str
    p_yes: float | None
    judge: str = ""


class PairwiseResult(BaseModel):
    other_id: int
    outcome: str  # "won", "lost", "tie"
    swap_consistent: bool | None
    judge: str = ""


class Critique(BaseModel):
    text: str
    judge: str = ""


class PrinciplesSample(BaseModel):
    """One principles_critique sample: its 1-10 score and the principles and critique behind it."""

    sample: str  # the variant, s0, s1 ...
    score: float | None
    text: str
    judge: str = ""  # the judge model's id


class CardView(BaseModel):
    badges: list[Badge] = Field(default_factory=list)
    checklist: list[ChecklistAnswer] = Field(default_factory=list)
    critiques: list[Critique] = Field(default_factory=list)
    # principles_critique's samples; apart from `critiques`, which the Label tab's "agree with the model's
    # critique" question is about.
    principles: list[PrinciplesSample] = Field(default_factory=list)
    pairwise: list[PairwiseResult] = Field(default_factory=list)
    picked_by: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.badges or self.checklist or self.critiques or self.principles or self.pairwise
                    or self.picked_by)

    @property
    def judges(self) -> list[str]:
        """The judge models with a verdict shown on this card, in first-seen order."""
        seen = [x.judge for part in (self.badges, self.checklist, self.critiques, self.principles, self.pairwise)
                for x in part]
        return list(dict.fromkeys(seen))


def _badge(j: JudgmentIn) -> Badge:
    name, fmt = BADGES[j.method]
    failed = partial(Badge, name=name, failed=True, judge=j.judge, method=j.method)
    if j.status == "failed":
        return failed(text=f"failed: {j.error or 'no reason given'}")
    if (j.prob if "{prob" in fmt else j.value) is None:
        return failed(text="n/a")
    try:
        text = fmt.format(value=j.value, prob=j.prob, dist=j.dist or {})
    except KeyError:  # a row stored without the figures its badge reads (e.g. imported)
        return failed(text="n/a")
    if j.method == "self_certainty" and j.label == "topk_proxy":
        text += " (top-k proxy)"
    return Badge(name=name, text=text, judge=j.judge, method=j.method)


def card_views(ctx: AppContext, study_id: int, prompt_id: int, response_ids: list[int]) -> dict[int, CardView]:
    """The model's view per response id (empty views when nothing was scored yet)."""
    rows = judgments.current(ctx.db, study_id=study_id, prompt_id=prompt_id, judge_kind="model", stage=None)
    ids = list(dict.fromkeys(j.checklist_item_id for j in rows
                             if j.method == HumanMethod.CHECKLIST_ITEM and j.checklist_item_id is not None))
    found = checklists.item_questions(ctx.db, ids)  # type: ignore[arg-type]
    return views_from(rows, {i: found.get(i, "?") for i in ids}, response_ids)


def views_from(rows: list[JudgmentIn], questions: dict[int, str], response_ids: list[int]) -> dict[int, CardView]:
    """The model's view per response id from model judgments (stored, or still in memory in the Live
    tab); `questions` maps checklist item ids to their text."""
    views = {rid: CardView() for rid in response_ids}
    items = questions
    # a selector's pick names its judge when several models judged the prompt (the card title shows it)
    several = len({j.judge for j in rows}) > 1
    for j in sorted(rows, key=lambda r: (list(BADGES).index(r.method) if r.method in BADGES else 99,
                                         getattr(r, "id", 0))):
        view = views.get(j.response_id) if j.response_id is not None else None
        if j.method in BADGES and j.variant is None and view is not None:
            view.badges.append(_badge(j))
        if j.method == HumanMethod.CHECKLIST_ITEM and view is not None and j.status == "ok":
            view.checklist.append(ChecklistAnswer(question=items.get(j.checklist_item_id, "?"),
                                                  answer=j.label or "?", p_yes=j.prob, judge=j.judge))
        elif j.method == "critique" and j.variant is not None and view is not None and j.rationale:
            view.critiques.append(Critique(text=f"{(j.label or '?').upper()}: {j.rationale}", judge=j.judge))
        elif (j.method == "principles_critique" and j.variant is not None and view is not None and j.rationale
              and j.status == "ok"):
            view.principles.append(PrinciplesSample(sample=j.variant, score=j.value, text=j.rationale,
                                                    judge=j.judge))
        elif j.method == HumanMethod.PAIRWISE and j.variant is None and j.status == "ok" and j.response_b_id is not None:
            consistent = None if not j.dist or "swap_consistent" not in j.dist else bool(j.dist["swap_consistent"])
            for me, other in ((j.response_id, j.response_b_id), (j.response_b_id, j.response_id)):
                if me in views:
                    outcome = "tie" if j.label in (None, "tie") else ("won" if j.label == str(me) else "lost")
                    views[me].pairwise.append(PairwiseResult(other_id=other, outcome=outcome,
                                                             swap_consistent=consistent, judge=j.judge))
        elif j.method in SELECTOR_NAMES and j.status == "ok" and view is not None:
            view.picked_by.append(SELECTOR_NAMES[j.method] + (f" ({j.judge})" if several else ""))
    return views
