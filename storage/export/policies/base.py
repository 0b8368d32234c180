"""What every pair policy shares: the `Item` a policy yields, its context `Ctx`, the best-pick rule
`pick_rejected`, and the helpers for consensus, mean ratings and extremes (storage/export/policies/)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from storage.export.data import Chunk, Human, ModelRow, PromptRow

Vote = tuple[str, int | None, str | None, float | None]          # annotator, response, label, value
Score = tuple[int | None, str, str, str | None, float | None, str | None]  # response, method, judge, variant, score, label
TIE_WORDS = ("tie", "both_bad")


def pick_rejected(pick: int, shown: Sequence[int], ratings: Mapping[int, float]) -> tuple[int | None, str | None]:
    """(rejected response id, None), or (None, skip reason).

    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 4, 3: 2})
    (3, None)
    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 2, 3: 2})
    (None, 'tied_lowest')
    >>> pick_rejected(1, [2, 1], {1: 3, 2: 3})
    (None, 'rejected_not_below_chosen')
    >>> pick_rejected(1, [1, 2, 3], {1: 6, 2: 2})
    (None, 'missing_ratings')
    >>> pick_rejected(1, [1], {1: 6})
    (None, 'no_other_response')
    """
    others = [r for r in dict.fromkeys(shown) if r != pick]
    if not others:
        return None, "no_other_response"
    if pick not in ratings or any(r not in ratings for r in others):
        return None, "missing_ratings"
    lowest = min(ratings[r] for r in others)
    at_lowest = [r for r in others if ratings[r] == lowest]
    if len(at_lowest) > 1:
        return None, "tied_lowest"
    if not lowest < ratings[pick]:
        return None, "rejected_not_below_chosen"
    return at_lowest[0], None


@dataclass
class Item:
    prompt: PromptRow
    signal: str
    chosen: int | None = None
    rejected: int | None = None
    completion: int | None = None       # kto / sft
    target: int | None = None           # judge: the response the critiques judge
    label: bool | None = None
    margin: float | None = None
    margin_kind: str | None = None
    annotator: str | None = None        # per-annotator rows (real name; pseudonymised when written)
    voters: list[str] = field(default_factory=list)
    n_annotators: int | None = None
    agreement: float | None = None
    votes: list[Vote] = field(default_factory=list)
    ratings: list[tuple[int, float, int]] = field(default_factory=list)  # response, mean, n
    chosen_rating: float | None = None
    rejected_rating: float | None = None
    scores: list[Score] = field(default_factory=list)
    swap_consistent: bool | None = None
    shown_order: list[int] = field(default_factory=list)
    judgment_ids: list[int] = field(default_factory=list)
    chosen_sample: ModelRow | None = None
    rejected_sample: ModelRow | None = None
    method_version: str | None = None

    def response_ids(self) -> list[int]:
        ids = [self.chosen, self.rejected] if self.chosen is not None else [self.completion or self.target]
        return [i for i in ids if i is not None]


Out = Iterator["Item | str"]


@dataclass
class Ctx:
    """What a policy needs besides the chunk."""

    kind: str
    signal: str
    per_annotator: bool
    all_pairs: bool
    origins: set[str]
    kto_threshold: float
    model_method: str | None = None
    score_column: str | None = None   # value | prob | label (pairwise) | response_id (selectors)
    model_judge: str | None = None
    # --consensus dawid_skene | mace: the fitted consensus per (prompt id, unit key of `unit_key`), None where
    # the model's posterior has a shared maximum; None: plurality (storage.export.consensus)
    fitted: dict[tuple[int, str], Any] | None = None


def _excluded(chunk: Chunk, origins: set[str], rid: int | None) -> bool:
    """True when the response exists but its origin is not exported (a missing one is caught later)."""
    r = chunk.responses.get(rid) if rid is not None else None
    return r is not None and r.origin not in origins


class Mode(NamedTuple):
    choice: Any
    n_top: int  # ballots for it
    n: int  # all ballots


def _unique_mode(counts: Counter[Any]) -> Mode | None:
    """(mode, its count, total) when the most frequent value is unique, else None."""
    if not counts:
        return None
    (top, n_top), *rest = counts.most_common()
    if rest and rest[0][1] == n_top:
        return None
    return Mode(top, n_top, sum(counts.values()))


@dataclass(frozen=True)
class Ballot:
    """One annotator's vote on one unit (a prompt's pick, a pair, a response): what they chose, the raw label
    where the choice is coded (pairwise: first / second / tie from the winner's id), their rating where the
    unit is rated, and the judgment id."""

    judge: str
    choice: Any
    id: int
    raw: str | None = None
    value: float | None = None


@dataclass
class Tally:
    """The ballots on one unit and the bookkeeping every human policy does with them: who voted, the counts,
    each ballot's agreement (per-annotator rows) and the consensus (plurality with a unique mode)."""

    ballots: list[Ballot]

    @property
    def voters(self) -> list[str]:
        return sorted({b.judge for b in self.ballots})

    @property
    def counts(self) -> Counter[Any]:
        return Counter(b.choice for b in self.ballots)

    @property
    def ids(self) -> list[int]:
        return [b.id for b in self.ballots]

    def agreement(self, choice: Any) -> float:
        """The share of ballots that chose `choice`."""
        return sum(1 for b in self.ballots if b.choice == choice) / len(self.ballots)

    def consensus(self) -> Mode | None:
        """(choice, its count, ballots) when one choice has the most ballots, else None."""
        return _unique_mode(self.counts)


def unit_key(signal: str, *ids: int) -> str:
    """The unit of a consensus within its prompt: "best" (the prompt's pick), "<lo>-<hi>" (a response pair),
    "<id>" (a response's correct label)."""
    return "best" if signal == "best" else "-".join(map(str, ids))


def decide(t: Tally, c: Ctx, prompt_id: int, unit: str) -> Mode | None:
    """The unit's consensus: plurality with a unique mode, or with `c.fitted` the annotator model's choice
    (None where it has none); n_top counts the ballots for the choice, which may be fewer than for another
    choice when the model trusts a minority."""
    if c.fitted is None:
        return t.consensus()
    choice = c.fitted.get((prompt_id, unit)) if t.ballots else None
    if choice is None:
        return None
    return Mode(choice, sum(1 for b in t.ballots if b.choice == choice), len(t.ballots))


def correct_tally(h: Human, rid: int) -> Tally:
    """The correct / incorrect labels of one response as votes (True = correct), by annotator."""
    return Tally([Ballot(x.judge, x.ok, x.id) for x in sorted(h.correct.get(rid, []),
                                                               key=lambda x: (x.judge, x.ok, x.id))])


class Mean(NamedTuple):
    """A response's rating: the mean over its raters (or one person's rating, n = 1) and how many rated it."""

    value: float
    n: int


def _means(h: Human) -> dict[int, Mean]:
    acc: dict[int, list[float]] = defaultdict(list)
    for per in h.ratings.values():
        for rid, r in per.items():
            acc[rid].append(r.value)
    return {rid: Mean(sum(vs) / len(vs), len(vs)) for rid, vs in acc.items()}


def _rating_ids(h: Human, rids: list[int]) -> list[int]:
    return [per[r].id for per in h.ratings.values() for r in rids if r in per]


def _pair_agreement(h: Human, chosen: int, rejected: int) -> tuple[list[str], int, float | None]:
    """Raters of both responses, how many, and the share whose own ratings put chosen strictly above."""
    both = [j for j, per in h.ratings.items() if chosen in per and rejected in per]
    if not both:
        return both, 0, None
    same = sum(1 for j in both if h.ratings[j][chosen].value > h.ratings[j][rejected].value)
    return sorted(both), len(both), same / len(both)


def _rating_votes(h: Human, rids: list[int]) -> list[Vote]:
    return [(j, r, None, per[r].value) for j, per in sorted(h.ratings.items()) for r in rids if r in per]


def _extremes(scored: list[tuple[int, float]]) -> tuple[int, int] | str:
    """(best, worst) of (id, score) pairs, or why not: fewer than two, a shared top, a shared bottom."""
    hi = max(s for _, s in scored)
    lo = min(s for _, s in scored)
    top = [r for r, s in scored if s == hi]
    bottom = [r for r, s in scored if s == lo]
    if len(top) > 1:
        return "tied_best"
    if len(bottom) > 1:
        return "tied_lowest"
    return top[0], bottom[0]


def _unique_winner(decided: list[tuple[int, int]]) -> int | None:
    """The one response that wins at least one decided pair and loses none, if exactly one does."""
    wins, losses = Counter(w for w, _ in decided), Counter(loser for _, loser in decided)
    winners = [r for r in wins if losses[r] == 0]
    return winners[0] if len(winners) == 1 else None


def _sole_winner(decided: list[tuple[int, int]], chunk: Chunk, origins: set[str]) -> int | str:
    """`_unique_winner` of the decided (winner, loser) pairs when its origin is exported, else why not."""
    win = _unique_winner(decided)
    if win is None:
        return "no_unique_winner"
    return "excluded_origin" if _excluded(chunk, origins, win) else win
