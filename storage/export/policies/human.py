"""Policies over human labels: best-of-N picks, pairwise votes and ratings (pairs and sft), and the unpaired
labels of kto. Each yields `Item`s or skip reasons for one prompt of a chunk."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import combinations

from storage.export.data import Chunk, Human, PromptRow
from storage.export.policies.base import (
    Ctx,
    _excluded,
    _extremes,
    Item,
    _means,
    Out,
    _pair_agreement,
    pick_rejected,
    _rating_ids,
    _rating_votes,
    TIE_WORDS,
    _unique_mode,
    _unique_winner,
    Vote,
)


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
