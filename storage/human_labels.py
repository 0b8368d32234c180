"""What a person's stored judgment rows mean: `decode` turns one row into a typed label (a pick, a rating, a
pairwise vote, a correctness label, a checklist answer, a criterion verdict, a critique verdict, a note), the
one reading of the `judgment` columns that the labelling service (a person's prefill), the pair exports and
the judgments file share. Which rows are read at all is `storage.current`'s rule.

A row decodes only when it holds a complete label of its kind (the columns `app/services/labelling.py`
writes and `storage.import_judgments` reads back); any other row gives None and its reader skips it:

- best_of_n: always a `Pick` (the response may be None: a pick of nothing, which the exports count as
  `no_pick`); `shown` is the order the person saw, or None;
- likert: a `Rating` when it names a response and has a value;
- pairwise: a `PairVote` when it names two responses and has a label (the winner's response id as text,
  `tie` or `both_bad`); `decided` says whether the two responses differ (the exports need that);
- correct: a `CorrectLabel` when it names a response and either the label says correct / incorrect or,
  without such a label, a value says it (>= 0.5 is correct);
- checklist_item: a `ChecklistAnswer` when it names a response and an item and says YES or NO;
- criterion_valid: a `CriterionVerdict` when it names an item and says valid or invalid;
- critique_agree: a `CritiqueVerdict` when it names a response and says agree or disagree;
- reference, comment: a `Note` with the text (empty when none).

>>> decode(StoredLabel(id=5, judge="ann", method="likert", response_id=3, value=6.0))
Rating(id=5, judge='ann', response_id=3, value=6.0)
>>> decode(StoredLabel(id=6, judge="ann", method="correct", response_id=3, value=1.0)).ok
True
>>> decode(StoredLabel(id=7, judge="ann", method="pairwise", response_id=3, response_b_id=4, label="4")).verdict
'B'
>>> decode(StoredLabel(id=8, judge="ann", method="checklist_item", response_id=3, label="YES")) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from storage.models import HumanMethod

CORRECT_LABELS = ("correct", "incorrect")
YES_NO = ("YES", "NO")
VALIDITY = ("valid", "invalid")
CRITIQUE_VERDICTS = ("agree", "disagree")


class LabelRow(Protocol):
    """The judgment columns a label is read from (a `storage.models.Judgment` is one)."""

    id: int
    judge: str
    method: str
    response_id: int | None
    response_b_id: int | None
    checklist_item_id: int | None
    shown_order: list[int] | None
    value: float | None
    label: str | None
    rationale: str | None


class StoredLabel(NamedTuple):
    """A judgment row read with just the label columns (what the exports' queries select)."""

    id: int
    judge: str
    method: str
    response_id: int | None = None
    response_b_id: int | None = None
    checklist_item_id: int | None = None
    shown_order: list[int] | None = None
    value: float | None = None
    label: str | None = None
    rationale: str | None = None


@dataclass(frozen=True)
class Pick:
    """best_of_n: the response picked among those shown (None: no pick)."""

    id: int
    judge: str
    response_id: int | None
    shown: list[int] | None


@dataclass(frozen=True)
class Rating:
    """likert: a score on the study's rating scale."""

    id: int
    judge: str
    response_id: int
    value: float


@dataclass(frozen=True)
class PairVote:
    """pairwise: `a` was shown first, `b` second; `label` is the winner's id as text, `tie` or `both_bad`."""

    id: int
    judge: str
    a: int
    b: int
    label: str

    @property
    def verdict(self) -> str:
        """A (the first shown won), B (the second won), or the label itself (tie, both_bad)."""
        return "A" if self.label == str(self.a) else "B" if self.label == str(self.b) else self.label

    @property
    def decided(self) -> bool:
        """Whether the vote is between two different responses."""
        return self.a != self.b


@dataclass(frozen=True)
class CorrectLabel:
    id: int
    judge: str
    response_id: int
    ok: bool


@dataclass(frozen=True)
class ChecklistAnswer:
    id: int
    judge: str
    response_id: int
    item_id: int
    yes: bool


@dataclass(frozen=True)
class CriterionVerdict:
    """criterion_valid: whether a checklist item is a fair criterion at all."""

    id: int
    judge: str
    item_id: int
    valid: bool


@dataclass(frozen=True)
class CritiqueVerdict:
    id: int
    judge: str
    response_id: int
    verdict: Literal["agree", "disagree"]


@dataclass(frozen=True)
class Note:
    """reference or comment: text the person wrote."""

    id: int
    judge: str
    kind: Literal["reference", "comment"]
    text: str


HumanLabel = Pick | Rating | PairVote | CorrectLabel | ChecklistAnswer | CriterionVerdict | CritiqueVerdict | Note


def correct_of(label: str | None, value: float | None) -> bool | None:
    """A correctness label's meaning: the label when it says correct / incorrect, else the value (>= 0.5 is
    correct), else None."""
    if label in CORRECT_LABELS:
        return label == "correct"
    return value >= 0.5 if value is not None else None


def decode(r: LabelRow | Any) -> HumanLabel | None:
    """The typed label one human judgment row holds, or None (not a complete label; see the module)."""
    m, rid, item, label = r.method, r.response_id, r.checklist_item_id, r.label
    if m == HumanMethod.BEST:
        return Pick(r.id, r.judge, rid, list(r.shown_order) if r.shown_order else None)
    if m == HumanMethod.RATING:
        return Rating(r.id, r.judge, rid, float(r.value)) if rid is not None and r.value is not None else None
    if m == HumanMethod.PAIRWISE:
        b = r.response_b_id
        return PairVote(r.id, r.judge, rid, b, label) if rid is not None and b is not None and label else None
    if m == HumanMethod.CORRECT:
        ok = correct_of(label, r.value) if rid is not None else None
        return CorrectLabel(r.id, r.judge, rid, ok) if ok is not None else None  # type: ignore[arg-type]
    if m == HumanMethod.CHECKLIST_ITEM:
        ok = rid is not None and item is not None and label in YES_NO
        return ChecklistAnswer(r.id, r.judge, rid, item, label == "YES") if ok else None  # type: ignore[arg-type]
    if m == HumanMethod.CRITERION_VALID:
        return CriterionVerdict(r.id, r.judge, item, label == "valid") if item is not None and label in VALIDITY \
            else None
    if m == HumanMethod.CRITIQUE_AGREE:
        return CritiqueVerdict(r.id, r.judge, rid, label) if rid is not None and label in CRITIQUE_VERDICTS \
            else None  # type: ignore[arg-type]
    if m in (HumanMethod.REFERENCE, HumanMethod.COMMENT):
        return Note(r.id, r.judge, HumanMethod(m).value, r.rationale or "")  # type: ignore[arg-type]
    return None
