"""Pair policies: which responses become chosen / rejected (dpo, rm), the best-of-N completion (sft), the
labelled completion (kto) or the chosen / rejected critique (judge), from one chunk of prompts.

Every policy yields `Item`s, or a skip reason (a string) for each unit it could not use, so the exporter
counts kept and skipped rows by reason. The units: a prompt (best-pick consensus, best vs worst ratings,
model scores), a response pair (pairwise votes, all-pairs ratings, pairwise model verdicts), a
(prompt, annotator) with `per_annotator`, a response (kto, judge).

Human consensus = plurality with a unique mode over the current blind labels (`storage.analysis`'s rule);
ratings use the mean. docs/formats.md ("Preference data exports") states every rule.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

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


def _excluded(chunk: Chunk, origins: set[str], rid: int | None) -> bool:
    """True when the response exists but its origin is not exported (a missing one is caught later)."""
    r = chunk.responses.get(rid) if rid is not None else None
    return r is not None and r.origin not in origins


def _unique_mode(counts: Counter[Any]) -> tuple[Any, int, int] | None:
    """(mode, its count, total) when the most frequent value is unique, else None."""
    if not counts:
        return None
    (top, n_top), *rest = counts.most_common()
    if rest and rest[0][1] == n_top:
        return None
    return top, n_top, sum(counts.values())


def _means(h: Human) -> dict[int, tuple[float, int]]:
    acc: dict[int, list[float]] = defaultdict(list)
    for per in h.ratings.values():
        for rid, (v, _) in per.items():
            acc[rid].append(v)
    return {rid: (sum(vs) / len(vs), len(vs)) for rid, vs in acc.items()}


def _rating_ids(h: Human, rids: list[int]) -> list[int]:
    return [per[r][1] for per in h.ratings.values() for r in rids if r in per]


def _pair_agreement(h: Human, chosen: int, rejected: int) -> tuple[list[str], int, float | None]:
    """Raters of both responses, how many, and the share whose own ratings put chosen strictly above."""
    both = [j for j, per in h.ratings.items() if chosen in per and rejected in per]
    if not both:
        return both, 0, None
    same = sum(1 for j in both if h.ratings[j][chosen][0] > h.ratings[j][rejected][0])
    return sorted(both), len(both), same / len(both)


def _rating_votes(h: Human, rids: list[int]) -> list[Vote]:
    return [(j, r, None, per[r][0]) for j, per in sorted(h.ratings.items()) for r in rids if r in per]


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


# -- human: best-of-N picks -------------------------------------------------------------------------------
def best_pairs(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.picks:
        return
    valid = [x for x in h.picks if x[1] is not None]
    pickers = sorted({x[0] for x in valid})
    counts = Counter(x[1] for x in valid)
    all_votes: list[Vote] = [(j, pick, None, None) for j, pick, _, _ in sorted(valid)]
    if c.per_annotator:
        for judge, pick, shown, jid in sorted(h.picks, key=lambda x: x[0]):
            if pick is None:
                yield "no_pick"
                continue
            if not shown:
                yield "no_shown_order"
                continue
            if _excluded(chunk, c.origins, pick):
                yield "excluded_origin"
                continue
            own = {r: v for r, (v, _) in h.ratings.get(judge, {}).items()}
            shown_u = list(dict.fromkeys(shown))
            cands = [r for r in shown_u if r == pick or not _excluded(chunk, c.origins, r)]
            rej, reason = pick_rejected(pick, cands, own)
            if reason is not None:
                yield reason
                continue
            yield Item(p, "best", chosen=pick, rejected=rej, annotator=judge, voters=pickers,
                       n_annotators=len(valid), agreement=counts[pick] / len(valid), votes=all_votes,
                       ratings=[(r, own[r], 1) for r in shown_u if r in own], chosen_rating=own[pick],
                       rejected_rating=own[rej], margin=own[pick] - own[rej], margin_kind="rating_gap",
                       shown_order=shown_u,
                       judgment_ids=[jid] + [h.ratings[judge][r][1] for r in (pick, rej)])
        return
    if not valid:
        yield "no_pick"
        return
    mode = _unique_mode(counts)
    if mode is None:
        yield "no_consensus"
        return
    chosen, n_top, n = mode
    shown: list[int] = []
    for _, pick, order, _ in valid:
        shown.extend(order or [])
    if not shown:
        yield "no_shown_order"
        return
    shown = list(dict.fromkeys([*shown, chosen]))
    if _excluded(chunk, c.origins, chosen):
        yield "excluded_origin"
        return
    means = _means(h)
    cands = [r for r in shown if r == chosen or not _excluded(chunk, c.origins, r)]
    rej, reason = pick_rejected(chosen, cands, {r: m for r, (m, _) in means.items()})
    if reason is not None:
        yield reason
        return
    yield Item(p, "best", chosen=chosen, rejected=rej, voters=pickers, n_annotators=n, agreement=n_top / n,
               votes=all_votes, ratings=[(r, *means[r]) for r in shown if r in means],
               chosen_rating=means[chosen][0], rejected_rating=means[rej][0],
               margin=means[chosen][0] - means[rej][0], margin_kind="rating_gap", shown_order=shown,
               judgment_ids=[x[3] for x in valid] + _rating_ids(h, [chosen, rej]))


def best_sft(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.picks:
        return
    valid = [x for x in h.picks if x[1] is not None]
    counts = Counter(x[1] for x in valid)
    pickers = sorted({x[0] for x in valid})
    votes: list[Vote] = [(j, pick, None, None) for j, pick, _, _ in sorted(valid)]
    means = _means(h)
    if c.per_annotator:
        for judge, pick, shown, jid in sorted(h.picks, key=lambda x: x[0]):
            if pick is None:
                yield "no_pick"
                continue
            if _excluded(chunk, c.origins, pick):
                yield "excluded_origin"
                continue
            own = h.ratings.get(judge, {})
            yield Item(p, "best", completion=pick, annotator=judge, voters=pickers, n_annotators=len(valid),
                       agreement=counts[pick] / len(valid), votes=votes,
                       chosen_rating=own[pick][0] if pick in own else None,
                       shown_order=list(dict.fromkeys(shown or [])), judgment_ids=[jid])
        return
    if not valid:
        yield "no_pick"
        return
    mode = _unique_mode(counts)
    if mode is None:
        yield "no_consensus"
        return
    chosen, n_top, n = mode
    if _excluded(chunk, c.origins, chosen):
        yield "excluded_origin"
        return
    shown = list(dict.fromkeys(r for _, _, order, _ in valid for r in (order or [])))
    yield Item(p, "best", completion=chosen, voters=pickers, n_annotators=n, agreement=n_top / n, votes=votes,
               ratings=[(r, *means[r]) for r in shown if r in means],
               chosen_rating=means[chosen][0] if chosen in means else None, shown_order=shown,
               judgment_ids=[x[3] for x in valid])


# -- human: pairwise votes --------------------------------------------------------------------------------
def _pair_units(h: Human) -> dict[tuple[int, int], list[tuple[str, str, str, int]]]:
    """(lo, hi) → [(judge, class first|second|tie, raw label, judgment id)]; labels naming neither response
    are left out."""
    units: dict[tuple[int, int], list[tuple[str, str, str, int]]] = defaultdict(list)
    for judge, a, b, label, jid in h.pairwise:
        lo, hi = min(a, b), max(a, b)
        cls = ("tie" if label in TIE_WORDS else "first" if label == str(lo) else "second" if label == str(hi)
               else None)
        if cls is not None:
            units[(lo, hi)].append((judge, cls, label, jid))
    return units


def _tie_reason(votes: list[tuple[str, str, str, int]]) -> str:
    raw = Counter(v[2] for v in votes if v[1] == "tie")
    return "both_bad" if raw["both_bad"] > raw["tie"] else "tie"


def _pair_votes(votes: list[tuple[str, str, str, int]]) -> list[Vote]:
    return [(j, None, raw, None) for j, _, raw, _ in sorted(votes)]


def pairwise_pairs(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    means = _means(h)
    for (lo, hi), votes in sorted(_pair_units(h).items()):
        counts = Counter(v[1] for v in votes)
        voters = sorted({v[0] for v in votes})
        meta_votes = _pair_votes(votes)
        if c.per_annotator:
            for judge, cls, raw, jid in sorted(votes):
                if cls == "tie":
                    yield "both_bad" if raw == "both_bad" else "tie"
                    continue
                ch, rj = (lo, hi) if cls == "first" else (hi, lo)
                if _excluded(chunk, c.origins, ch) or _excluded(chunk, c.origins, rj):
                    yield "excluded_origin"
                    continue
                own = h.ratings.get(judge, {})
                yield Item(p, "pairwise", chosen=ch, rejected=rj, annotator=judge, voters=voters,
                           n_annotators=len(votes), agreement=counts[cls] / len(votes), votes=meta_votes,
                           ratings=[(r, *means[r]) for r in (ch, rj) if r in means],
                           chosen_rating=own[ch][0] if ch in own else None,
                           rejected_rating=own[rj][0] if rj in own else None,
                           margin=1.0, margin_kind="vote_share_gap", shown_order=[], judgment_ids=[jid])
            continue
        mode = _unique_mode(counts)
        if mode is None:
            yield "no_consensus"
            continue
        cls, n_top, n = mode
        if cls == "tie":
            yield _tie_reason(votes)
            continue
        ch, rj = (lo, hi) if cls == "first" else (hi, lo)
        if _excluded(chunk, c.origins, ch) or _excluded(chunk, c.origins, rj):
            yield "excluded_origin"
            continue
        loser_cls = "second" if cls == "first" else "first"
        yield Item(p, "pairwise", chosen=ch, rejected=rj, voters=voters, n_annotators=n, agreement=n_top / n,
                   votes=meta_votes, ratings=[(r, *means[r]) for r in (ch, rj) if r in means],
                   chosen_rating=means[ch][0] if ch in means else None,
                   rejected_rating=means[rj][0] if rj in means else None,
                   margin=(n_top - counts[loser_cls]) / n, margin_kind="vote_share_gap",
                   judgment_ids=[v[3] for v in votes])


def _unique_winner(decided: list[tuple[int, int]]) -> int | None:
    """The one response that wins at least one decided pair and loses none, if exactly one does."""
    wins, losses = Counter(w for w, _ in decided), Counter(loser for _, loser in decided)
    winners = [r for r in wins if losses[r] == 0]
    return winners[0] if len(winners) == 1 else None


def pairwise_sft(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    units = _pair_units(h)
    if not units:
        return
    if c.per_annotator:
        by_judge: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for (lo, hi), votes in units.items():
            for judge, cls, _, jid in votes:
                if cls != "tie":
                    by_judge[judge].append(((lo, hi) if cls == "first" else (hi, lo)) + (jid,))  # type: ignore[arg-type]
        for judge in sorted({v[0] for vs in units.values() for v in vs}):
            decided = [(w, lo_) for w, lo_, _ in by_judge.get(judge, [])]
            win = _unique_winner(decided)
            if win is None:
                yield "no_unique_winner"
                continue
            if _excluded(chunk, c.origins, win):
                yield "excluded_origin"
                continue
            yield Item(p, "pairwise", completion=win, annotator=judge, voters=[judge], n_annotators=1,
                       agreement=1.0, judgment_ids=[j for _, _, j in by_judge[judge]])
        return
    decided, ns, agreements, voters, jids = [], [], [], set(), []
    for (lo, hi), votes in sorted(units.items()):
        mode = _unique_mode(Counter(v[1] for v in votes))
        if mode is None or mode[0] == "tie":
            continue
        decided.append((lo, hi) if mode[0] == "first" else (hi, lo))
        ns.append(mode[2])
        agreements.append(mode[1] / mode[2])
        voters.update(v[0] for v in votes)
        jids.extend(v[3] for v in votes)
    win = _unique_winner(decided)
    if win is None:
        yield "no_unique_winner"
        return
    if _excluded(chunk, c.origins, win):
        yield "excluded_origin"
        return
    yield Item(p, "pairwise", completion=win, voters=sorted(voters), n_annotators=min(ns),
               agreement=min(agreements), judgment_ids=jids)


# -- human: ratings ---------------------------------------------------------------------------------------
def _ratings_pair(p: PromptRow, h: Human, ch: int, rj: int, ratings: dict[int, tuple[float, int]],
                  annotator: str | None, chunk: Chunk) -> Item:
    voters, n_both, agreement = _pair_agreement(h, ch, rj)
    return Item(p, "ratings", chosen=ch, rejected=rj, annotator=annotator,
                voters=voters if annotator is None else sorted(set(voters) | {annotator}),
                n_annotators=n_both if annotator is not None else min(ratings[ch][1], ratings[rj][1]),
                agreement=agreement, votes=_rating_votes(h, [ch, rj]),
                ratings=[(r, *ratings[r]) for r in sorted(ratings)], chosen_rating=ratings[ch][0],
                rejected_rating=ratings[rj][0], margin=ratings[ch][0] - ratings[rj][0], margin_kind="rating_gap",
                judgment_ids=_rating_ids(h, [ch, rj]) if annotator is None
                else [h.ratings[annotator][r][1] for r in (ch, rj)])


def _rating_sets(h: Human, chunk: Chunk, c: Ctx) -> Iterator[tuple[str | None, dict[int, tuple[float, int]]]]:
    """(annotator or None, {response: (rating, n)}) over the exported origins: the means, or each person's."""
    if c.per_annotator:
        for judge in sorted(h.ratings):
            yield judge, {r: (v, 1) for r, (v, _) in h.ratings[judge].items() if not _excluded(chunk, c.origins, r)}
    else:
        yield None, {r: m for r, m in _means(h).items() if not _excluded(chunk, c.origins, r)}


def ratings_pairs(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.ratings:
        return
    for annotator, ratings in _rating_sets(h, chunk, c):
        rated = sorted(ratings)
        if c.all_pairs:
            if len(rated) < 2:
                yield "missing_ratings"
            for a, b in combinations(rated, 2):
                if ratings[a][0] == ratings[b][0]:
                    yield "tie"
                    continue
                ch, rj = (a, b) if ratings[a][0] > ratings[b][0] else (b, a)
                yield _ratings_pair(p, h, ch, rj, ratings, annotator, chunk)
            continue
        if len(rated) < 2:
            yield "missing_ratings"
            continue
        got = _extremes([(r, ratings[r][0]) for r in rated])
        if isinstance(got, str):
            yield got
            continue
        yield _ratings_pair(p, h, got[0], got[1], ratings, annotator, chunk)


def ratings_sft(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.ratings:
        return
    for annotator, ratings in _rating_sets(h, chunk, c):
        if len(ratings) < 2:
            yield "missing_ratings"
            continue
        hi = max(m for m, _ in ratings.values())
        top = [r for r, (m, _) in ratings.items() if m == hi]
        if len(top) > 1:
            yield "tied_best"
            continue
        best = top[0]
        raters = sorted(j for j, per in h.ratings.items() if best in per)
        yield Item(p, "ratings", completion=best, annotator=annotator, voters=raters,
                   n_annotators=ratings[best][1], agreement=None, votes=_rating_votes(h, sorted(ratings)),
                   ratings=[(r, *ratings[r]) for r in sorted(ratings)], chosen_rating=hi,
                   judgment_ids=_rating_ids(h, [best]) if annotator is None else [h.ratings[annotator][best][1]])


# -- human: unpaired labels (kto) -------------------------------------------------------------------------
def _labelled(h: Human, signal: str, threshold: float) -> dict[int, list[tuple[str, bool | None, float | None, int]]]:
    """response → [(judge, desirable or None at the threshold, rating, judgment id)]."""
    out: dict[int, list[tuple[str, bool | None, float | None, int]]] = defaultdict(list)
    if signal == "correct":
        for rid, votes in h.correct.items():
            out[rid] = [(j, ok, None, jid) for j, ok, jid in sorted(votes)]
    elif signal == "checklist":
        for rid, per in h.checklist.items():
            out[rid] = [(j, all(yes for yes, _ in answers), None, min(jid for _, jid in answers))
                        for j, answers in sorted(per.items())]
    else:
        for j, per in sorted(h.ratings.items()):
            for rid, (v, jid) in per.items():
                out[rid].append((j, True if v > threshold else False if v < threshold else None, v, jid))
    return out


def kto_items(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    for rid, votes in sorted(_labelled(h, c.signal, c.kto_threshold).items()):
        voters = sorted({v[0] for v in votes})
        meta_votes: list[Vote] = [(j, rid, None if ok is None else ("desirable" if ok else "undesirable"), value)
                                  for j, ok, value, _ in votes]
        if c.signal == "correct":
            meta_votes = [(j, rid, "correct" if ok else "incorrect", None) for j, ok, _, _ in votes]
        elif c.signal == "checklist":
            meta_votes = [(j, rid, "all_yes" if ok else "any_no", None) for j, ok, _, _ in votes]
        rating = None
        if c.signal == "ratings":
            vals = [v for _, _, v, _ in votes if v is not None]
            rating = sum(vals) / len(vals)
        if _excluded(chunk, c.origins, rid):
            yield "excluded_origin"
            continue
        if c.per_annotator:
            for j, ok, value, jid in votes:
                if ok is None:
                    yield "at_threshold"
                    continue
                same = sum(1 for v in votes if v[1] == ok)
                yield Item(p, c.signal, completion=rid, label=ok, annotator=j, voters=voters,
                           n_annotators=len(votes), agreement=same / len(votes), votes=meta_votes,
                           ratings=[(rid, value, 1)] if value is not None else [],
                           chosen_rating=value, judgment_ids=[jid])
            continue
        if c.signal == "ratings":
            assert rating is not None
            if rating == c.kto_threshold:
                yield "at_threshold"
                continue
            ok = rating > c.kto_threshold
            same = sum(1 for v in votes if v[1] == ok)
            yield Item(p, "ratings", completion=rid, label=ok, voters=voters, n_annotators=len(votes),
                       agreement=same / len(votes), votes=meta_votes, ratings=[(rid, rating, len(votes))],
                       chosen_rating=rating, judgment_ids=[v[3] for v in votes])
            continue
        mode = _unique_mode(Counter(v[1] for v in votes))
        if mode is None:
            yield "no_consensus"
            continue
        ok, n_top, n = mode
        yield Item(p, c.signal, completion=rid, label=ok, voters=voters, n_annotators=n, agreement=n_top / n,
                   votes=meta_votes, judgment_ids=[v[3] for v in votes])


# -- judge: the model's own critiques against the human label ----------------------------------------------
def _critique_samples(rows: list[ModelRow]) -> dict[int, list[ModelRow]]:
    out: dict[int, list[ModelRow]] = defaultdict(list)
    for r in rows:
        if r.variant is not None and r.response_id is not None and r.response_b_id is None \
                and r.label in ("correct", "incorrect"):
            out[r.response_id].append(r)
    for samples in out.values():
        samples.sort(key=lambda r: (len(r.variant or ""), r.variant or ""))
    return out


def judge_items(p: PromptRow, h: Human | None, chunk: Chunk, c: Ctx) -> Out:
    h = h or Human()
    for rid, samples in sorted(_critique_samples(chunk.model.get(p.id, [])).items()):
        votes = sorted(h.correct.get(rid, []))
        if not votes:
            yield "no_human_label"
            continue
        if _excluded(chunk, c.origins, rid):
            yield "excluded_origin"
            continue
        voters = sorted({v[0] for v in votes})
        meta_votes: list[Vote] = [(j, rid, "correct" if ok else "incorrect", None) for j, ok, _ in votes]
        counts = Counter(ok for _, ok, _ in votes)
        labels: list[tuple[str | None, bool, float, list[int]]] = []
        if c.per_annotator:
            labels = [(j, ok, counts[ok] / len(votes), [jid]) for j, ok, jid in votes]
        else:
            mode = _unique_mode(counts)
            if mode is None:
                yield "no_consensus"
                continue
            labels = [(None, mode[0], mode[1] / mode[2], [v[2] for v in votes])]
        for annotator, human_ok, agreement, jids in labels:
            if len(samples) < 2:
                yield "too_few_samples"
                continue
            agree = [s for s in samples if (s.label == "correct") == human_ok]
            disagree = [s for s in samples if (s.label == "correct") != human_ok]
            if not agree:
                yield "none_agree"
                continue
            if not disagree:
                yield "all_agree"
                continue
            ch, rj = agree[0], disagree[0]
            yield Item(p, "correct", target=rid, label=human_ok, annotator=annotator, voters=voters,
                       n_annotators=len(votes), agreement=agreement, votes=meta_votes,
                       scores=[(rid, "critique", s.judge, s.variant, s.value, s.label) for s in (ch, rj)],
                       chosen_sample=ch, rejected_sample=rj, method_version=ch.method_version,
                       judgment_ids=jids + [ch.id, rj.id])


# -- model sources ---------------------------------------------------------------------------------------
@dataclass
class ModelView:
    """One prompt's verdicts of one method and judge."""

    scores: dict[int, tuple[float, list[int]]] = field(default_factory=dict)     # response → (score, ids)
    pairs: dict[tuple[int, int], tuple[str, int | None, float | None, list[Score], list[int]]] = \
        field(default_factory=dict)  # (lo, hi) → (status, winner, prob gap, per-order scores, ids)
    pick: tuple[int, int] | None = None                                          # (response, judgment id)
    judge: str | None = None
    version: str | None = None


def _order_probs(row: ModelRow, first: int, second: int) -> tuple[float, float] | None:
    """(P(first shown wins), P(second wins)) of one order: the pairwise method's A/B dist, or an imported
    dist keyed by response id."""
    d = row.dist or {}
    if "A" in d or "B" in d:
        return d.get("A", 0.0), d.get("B", 0.0)
    if str(first) in d or str(second) in d:
        return d.get(str(first), 0.0), d.get(str(second), 0.0)
    return None


def model_view(rows: list[ModelRow], c: Ctx) -> ModelView:
    v = ModelView()
    if rows:
        v.judge, v.version = rows[0].judge, rows[0].method_version
    col = c.score_column
    if col in ("value", "prob"):
        plain: dict[int, tuple[float, int]] = {}
        variants: dict[int, list[tuple[float, int]]] = defaultdict(list)
        for r in rows:
            s = getattr(r, col)
            if r.response_id is None or r.response_b_id is not None or s is None:
                continue
            if r.variant is None:
                plain[r.response_id] = (float(s), r.id)
            else:
                variants[r.response_id].append((float(s), r.id))
        for rid in set(plain) | set(variants):
            if rid in plain:
                v.scores[rid] = (plain[rid][0], [plain[rid][1]])
            else:
                vs = variants[rid]
                v.scores[rid] = (sum(s for s, _ in vs) / len(vs), [i for _, i in vs])
    elif col == "response_id":
        for r in rows:
            if r.response_id is not None and r.variant is None and r.response_b_id is None:
                v.pick = (r.response_id, r.id)
    elif col == "label":  # pairwise: per-order rows
        orders: dict[tuple[int, int], ModelRow] = {}
        for r in rows:
            if r.variant and r.variant.startswith("order:") and r.response_id is not None \
                    and r.response_b_id is not None and r.label:
                orders[(r.response_id, r.response_b_id)] = r
        for a, b in {tuple(sorted(k)) for k in orders}:
            ab, ba = orders.get((a, b)), orders.get((b, a))
            got = [x for x in (ab, ba) if x is not None]
            scores: list[Score] = [(x.response_id, c.model_method or "pairwise", x.judge, x.variant, x.prob, x.label)
                                   for x in got]
            ids = [x.id for x in got]
            if ab is None or ba is None:
                v.pairs[(a, b)] = ("single_order", None, None, scores, ids)
                continue
            w_ab = "tie" if ab.label in TIE_WORDS else ab.label
            w_ba = "tie" if ba.label in TIE_WORDS else ba.label
            if w_ab != w_ba:
                v.pairs[(a, b)] = ("swap_inconsistent", None, None, scores, ids)
            elif w_ab == "tie":
                v.pairs[(a, b)] = ("tie", None, None, scores, ids)
            elif w_ab not in (str(a), str(b)):
                v.pairs[(a, b)] = ("invalid", None, None, scores, ids)
            else:
                win = int(w_ab)
                p1, p2 = _order_probs(ab, a, b), _order_probs(ba, b, a)
                gap = None
                if p1 is not None and p2 is not None:
                    g1 = p1[0] - p1[1] if win == a else p1[1] - p1[0]
                    g2 = p2[0] - p2[1] if win == b else p2[1] - p2[0]
                    gap = (g1 + g2) / 2
                v.pairs[(a, b)] = ("ok", win, gap, scores, ids)
    return v


def _score_list(view: ModelView, c: Ctx, rids: list[int]) -> list[Score]:
    return [(r, c.model_method or "", view.judge or "", None, view.scores[r][0], None) for r in rids if r in view.scores]


def model_pairs(p: PromptRow, chunk: Chunk, c: Ctx) -> Out:
    resp = chunk.by_prompt.get(p.id, [])
    if not resp:
        return
    view = model_view(chunk.model.get(p.id, []), c)
    if c.score_column == "label":
        for (a, b), (status, win, gap, scores, ids) in sorted(view.pairs.items()):
            if status != "ok":
                yield status
                continue
            assert win is not None
            lose = b if win == a else a
            if _excluded(chunk, c.origins, win) or _excluded(chunk, c.origins, lose):
                yield "excluded_origin"
                continue
            yield Item(p, c.model_method or "pairwise", chosen=win, rejected=lose, margin=gap,
                       margin_kind="prob_gap", scores=scores, swap_consistent=True, judgment_ids=ids,
                       method_version=view.version)
        return
    cands = [(r.id, view.scores[r.id][0]) for r in resp if r.id in view.scores and r.origin in c.origins]
    if len(cands) < 2:
        yield "missing_scores"
        return
    got = _extremes(cands)
    if isinstance(got, str):
        yield got
        return
    ch, rj = got
    yield Item(p, c.model_method or "", chosen=ch, rejected=rj, margin=view.scores[ch][0] - view.scores[rj][0],
               margin_kind="score_gap", scores=_score_list(view, c, [r for r, _ in cands]),
               judgment_ids=view.scores[ch][1] + view.scores[rj][1], method_version=view.version)


def model_sft(p: PromptRow, chunk: Chunk, c: Ctx) -> Out:
    resp = chunk.by_prompt.get(p.id, [])
    if not resp:
        return
    view = model_view(chunk.model.get(p.id, []), c)
    if c.score_column == "response_id":
        if view.pick is None:
            yield "missing_scores"
            return
        rid, jid = view.pick
        if _excluded(chunk, c.origins, rid):
            yield "excluded_origin"
            return
        yield Item(p, c.model_method or "", completion=rid, judgment_ids=[jid],
                   scores=[(rid, c.model_method or "", view.judge or "", None, None, "picked")],
                   method_version=view.version)
        return
    if c.score_column == "label":
        decided = [(w, b if w == a else a) for (a, b), (st, w, _, _, _) in view.pairs.items() if st == "ok" and w]
        win = _unique_winner(decided)  # type: ignore[arg-type]
        if win is None:
            yield "no_unique_winner"
            return
        if _excluded(chunk, c.origins, win):
            yield "excluded_origin"
            return
        pairs = [(k, x) for k, x in view.pairs.items() if x[0] == "ok" and win in k]
        yield Item(p, c.model_method or "", completion=win, swap_consistent=True,
                   scores=[s for _, x in pairs for s in x[3]], judgment_ids=[i for _, x in pairs for i in x[4]],
                   method_version=view.version)
        return
    cands = [(r.id, view.scores[r.id][0]) for r in resp if r.id in view.scores and r.origin in c.origins]
    if len(cands) < 2:
        yield "missing_scores"
        return
    hi = max(s for _, s in cands)
    top = [r for r, s in cands if s == hi]
    if len(top) > 1:
        yield "tied_best"
        return
    yield Item(p, c.model_method or "", completion=top[0], scores=_score_list(view, c, [r for r, _ in cands]),
               judgment_ids=view.scores[top[0]][1], method_version=view.version)


def model_agrees(item: Item, view: ModelView, c: Ctx) -> str | None:
    """None when the model method agrees with a human item (keeping its verdicts in the item), else why not."""
    if item.chosen is not None:
        ch, rj = item.chosen, item.rejected
        assert rj is not None
        if c.score_column == "label":
            key = (min(ch, rj), max(ch, rj))
            if key not in view.pairs:
                return "model_missing"
            status, win, _, scores, ids = view.pairs[key]
            item.scores, item.judgment_ids = item.scores + scores, item.judgment_ids + ids
            if status in ("single_order", "swap_inconsistent"):
                item.swap_consistent = False if status == "swap_inconsistent" else None
                return status
            if status == "tie":
                item.swap_consistent = True
                return "model_tie"
            if status != "ok":
                return "model_missing"
            item.swap_consistent = True
            return None if win == ch else "model_disagrees"
        if c.score_column == "response_id":
            if view.pick is None:
                return "model_missing"
            item.scores.append((view.pick[0], c.model_method or "", view.judge or "", None, None, "picked"))
            return None if view.pick[0] == ch else "model_disagrees"
        if ch not in view.scores or rj not in view.scores:
            return "model_missing"
        item.scores += _score_list(view, c, [ch, rj])
        sc, sr = view.scores[ch][0], view.scores[rj][0]
        return None if sc > sr else "model_tie" if sc == sr else "model_disagrees"
    best = item.completion
    if c.score_column == "response_id":
        if view.pick is None:
            return "model_missing"
        item.scores.append((view.pick[0], c.model_method or "", view.judge or "", None, None, "picked"))
        return None if view.pick[0] == best else "model_disagrees"
    if c.score_column == "label":
        mine = [(k, x) for k, x in view.pairs.items() if best in k and x[0] == "ok"]
        if not mine:
            return "model_missing"
        item.scores += [s for _, x in mine for s in x[3]]
        item.swap_consistent = True
        return None if all(x[1] == best for _, x in mine) else "model_disagrees"
    if best not in view.scores:
        return "model_missing"
    hi = max(s for s, _ in view.scores.values())
    item.scores += _score_list(view, c, sorted(view.scores))
    if view.scores[best][0] < hi:
        return "model_disagrees"
    return "model_tie" if sum(1 for s, _ in view.scores.values() if s == hi) > 1 else None


HumanPolicy = Callable[[PromptRow, Human, Chunk, Ctx], Out]
HUMAN_POLICIES: dict[tuple[str, str], HumanPolicy] = {
    ("pair", "best"): best_pairs, ("pair", "pairwise"): pairwise_pairs, ("pair", "ratings"): ratings_pairs,
    ("sft", "best"): best_sft, ("sft", "pairwise"): pairwise_sft, ("sft", "ratings"): ratings_sft,
}


def items(chunk: Chunk, c: Ctx, source_kind: str) -> Out:
    """Every item and skip reason of one chunk, in prompt order. With a consensus source these are the
    human items; the exporter checks them against the model (`model_agrees`) after the human filters."""
    shape = "sft" if c.kind == "sft" else "pair"
    for p in chunk.prompts:
        h = chunk.human.get(p.id)
        if c.kind == "judge":
            yield from judge_items(p, h, chunk, c)
        elif c.kind == "kto":
            if h is not None:
                yield from kto_items(p, h, chunk, c)
        elif source_kind == "model":
            yield from (model_sft if shape == "sft" else model_pairs)(p, chunk, c)
        elif h is not None:
            yield from HUMAN_POLICIES[(shape, c.signal)](p, h, chunk, c)
