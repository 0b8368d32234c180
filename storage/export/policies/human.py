"""Policies over human labels: best-of-N picks, pairwise votes and ratings (pairs and sft), and the unpaired
labels of kto. Each yields `Item`s or skip reasons for one prompt of a chunk; the votes on each unit are a
`Tally` (base), which does the per-annotator and consensus bookkeeping."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations

from storage.export.data import Chunk, Human, PromptRow
from storage.export.policies.base import (
    Ballot,
    correct_tally,
    Ctx,
    decide,
    _excluded,
    _extremes,
    Item,
    Mean,
    _means,
    Mode,
    Out,
    _pair_agreement,
    pick_rejected,
    _rating_ids,
    _rating_votes,
    _sole_winner,
    Tally,
    TIE_WORDS,
    unit_key,
    Vote,
)


# -- human: best-of-N picks -------------------------------------------------------------------------------
def _pick_tally(h: Human) -> tuple[Tally, list[Vote]]:
    """The prompt's picks of a response (picks of nothing left out) and their votes for the metadata."""
    t = Tally([Ballot(x.judge, x.response_id, x.id) for x in h.picks if x.response_id is not None])
    return t, [(b.judge, b.choice, None, None) for b in sorted(t.ballots, key=lambda b: (b.judge, b.choice, b.id))]


def _pick_consensus(t: Tally, c: Ctx, prompt_id: int) -> Mode | str:
    """(the consensus pick, its count, picks), or why there is none."""
    if not t.ballots:
        return "no_pick"
    mode = decide(t, c, prompt_id, "best")
    return "no_consensus" if mode is None else mode


def best_pairs(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.picks:
        return
    t, all_votes = _pick_tally(h)
    if c.per_annotator:
        for x in sorted(h.picks, key=lambda x: x.judge):
            judge, pick, shown = x.judge, x.response_id, x.shown
            if pick is None:
                yield "no_pick"
                continue
            if not shown:
                yield "no_shown_order"
                continue
            if _excluded(chunk, c.origins, pick):
                yield "excluded_origin"
                continue
            own = {r: v.value for r, v in h.ratings.get(judge, {}).items()}
            shown_u = list(dict.fromkeys(shown))
            cands = [r for r in shown_u if r == pick or not _excluded(chunk, c.origins, r)]
            rej, reason = pick_rejected(pick, cands, own)
            if reason is not None:
                yield reason
                continue
            assert rej is not None
            yield Item(p, "best", chosen=pick, rejected=rej, annotator=judge, voters=t.voters,
                       n_annotators=len(t.ballots), agreement=t.agreement(pick), votes=all_votes,
                       ratings=[(r, own[r], 1) for r in shown_u if r in own], chosen_rating=own[pick],
                       rejected_rating=own[rej], margin=own[pick] - own[rej], margin_kind="rating_gap",
                       shown_order=shown_u, judgment_ids=[x.id] + [h.ratings[judge][r].id for r in (pick, rej)])
        return
    mode = _pick_consensus(t, c, p.id)
    if isinstance(mode, str):
        yield mode
        return
    chosen, n_top, n = mode
    shown: list[int] = []
    for x in h.picks:
        if x.response_id is not None:
            shown.extend(x.shown or [])
    if not shown:
        yield "no_shown_order"
        return
    shown = list(dict.fromkeys([*shown, chosen]))
    if _excluded(chunk, c.origins, chosen):
        yield "excluded_origin"
        return
    means = _means(h)
    cands = [r for r in shown if r == chosen or not _excluded(chunk, c.origins, r)]
    rej, reason = pick_rejected(chosen, cands, {r: m.value for r, m in means.items()})
    if reason is not None:
        yield reason
        return
    assert rej is not None
    yield Item(p, "best", chosen=chosen, rejected=rej, voters=t.voters, n_annotators=n, agreement=n_top / n,
               votes=all_votes, ratings=[(r, *means[r]) for r in shown if r in means],
               chosen_rating=means[chosen].value, rejected_rating=means[rej].value,
               margin=means[chosen].value - means[rej].value, margin_kind="rating_gap", shown_order=shown,
               judgment_ids=t.ids + _rating_ids(h, [chosen, rej]))


def best_sft(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    if not h.picks:
        return
    t, votes = _pick_tally(h)
    means = _means(h)
    if c.per_annotator:
        for x in sorted(h.picks, key=lambda x: x.judge):
            pick = x.response_id
            if pick is None:
                yield "no_pick"
                continue
            if _excluded(chunk, c.origins, pick):
                yield "excluded_origin"
                continue
            own = h.ratings.get(x.judge, {})
            yield Item(p, "best", completion=pick, annotator=x.judge, voters=t.voters, n_annotators=len(t.ballots),
                       agreement=t.agreement(pick), votes=votes,
                       chosen_rating=own[pick].value if pick in own else None,
                       shown_order=list(dict.fromkeys(x.shown or [])), judgment_ids=[x.id])
        return
    mode = _pick_consensus(t, c, p.id)
    if isinstance(mode, str):
        yield mode
        return
    chosen, n_top, n = mode
    if _excluded(chunk, c.origins, chosen):
        yield "excluded_origin"
        return
    shown = list(dict.fromkeys(r for x in h.picks if x.response_id is not None for r in (x.shown or [])))
    yield Item(p, "best", completion=chosen, voters=t.voters, n_annotators=n, agreement=n_top / n, votes=votes,
               ratings=[(r, *means[r]) for r in shown if r in means],
               chosen_rating=means[chosen].value if chosen in means else None, shown_order=shown,
               judgment_ids=t.ids)


# -- human: pairwise votes --------------------------------------------------------------------------------
def _pair_units(h: Human) -> dict[tuple[int, int], Tally]:
    """(lo, hi) → the votes, each choosing first | second | tie (the raw label kept); labels naming neither
    response are left out."""
    units: dict[tuple[int, int], Tally] = defaultdict(lambda: Tally([]))
    for v in h.pairwise:
        lo, hi = min(v.a, v.b), max(v.a, v.b)
        cls = ("tie" if v.label in TIE_WORDS else "first" if v.label == str(lo) else "second" if v.label == str(hi)
               else None)
        if cls is not None:
            units[(lo, hi)].ballots.append(Ballot(v.judge, cls, v.id, raw=v.label))
    return units


def _in_order(t: Tally) -> list[Ballot]:
    return sorted(t.ballots, key=lambda b: (b.judge, b.choice, b.raw, b.id))


def _tie_reason(t: Tally) -> str:
    ties = [b.raw for b in t.ballots if b.choice == "tie"]
    return "both_bad" if ties.count("both_bad") > ties.count("tie") else "tie"


def pairwise_pairs(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    means = _means(h)
    for (lo, hi), t in sorted(_pair_units(h).items()):
        counts, n_votes = t.counts, len(t.ballots)
        meta_votes: list[Vote] = [(b.judge, None, b.raw, None) for b in _in_order(t)]
        if c.per_annotator:
            for b in _in_order(t):
                if b.choice == "tie":
                    yield "both_bad" if b.raw == "both_bad" else "tie"
                    continue
                ch, rj = (lo, hi) if b.choice == "first" else (hi, lo)
                if _excluded(chunk, c.origins, ch) or _excluded(chunk, c.origins, rj):
                    yield "excluded_origin"
                    continue
                own = h.ratings.get(b.judge, {})
                yield Item(p, "pairwise", chosen=ch, rejected=rj, annotator=b.judge, voters=t.voters,
                           n_annotators=n_votes, agreement=t.agreement(b.choice), votes=meta_votes,
                           ratings=[(r, *means[r]) for r in (ch, rj) if r in means],
                           chosen_rating=own[ch].value if ch in own else None,
                           rejected_rating=own[rj].value if rj in own else None,
                           margin=1.0, margin_kind="vote_share_gap", shown_order=[], judgment_ids=[b.id])
            continue
        mode = decide(t, c, p.id, unit_key("pairwise", lo, hi))
        if mode is None:
            yield "no_consensus"
            continue
        cls, n_top, n = mode
        if cls == "tie":
            yield _tie_reason(t)
            continue
        ch, rj = (lo, hi) if cls == "first" else (hi, lo)
        if _excluded(chunk, c.origins, ch) or _excluded(chunk, c.origins, rj):
            yield "excluded_origin"
            continue
        loser_cls = "second" if cls == "first" else "first"
        yield Item(p, "pairwise", chosen=ch, rejected=rj, voters=t.voters, n_annotators=n, agreement=n_top / n,
                   votes=meta_votes, ratings=[(r, *means[r]) for r in (ch, rj) if r in means],
                   chosen_rating=means[ch].value if ch in means else None,
                   rejected_rating=means[rj].value if rj in means else None,
                   margin=(n_top - counts[loser_cls]) / n, margin_kind="vote_share_gap", judgment_ids=t.ids)


def pairwise_sft(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    units = _pair_units(h)
    if not units:
        return
    if c.per_annotator:
        by_judge: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for (lo, hi), t in units.items():
            for b in t.ballots:
                if b.choice != "tie":
                    by_judge[b.judge].append(((lo, hi) if b.choice == "first" else (hi, lo)) + (b.id,))  # type: ignore[arg-type]
        for judge in sorted({b.judge for t in units.values() for b in t.ballots}):
            win = _sole_winner([(w, lo_) for w, lo_, _ in by_judge.get(judge, [])], chunk, c.origins)
            if isinstance(win, str):
                yield win
                continue
            yield Item(p, "pairwise", completion=win, annotator=judge, voters=[judge], n_annotators=1,
                       agreement=1.0, judgment_ids=[j for _, _, j in by_judge[judge]])
        return
    decided, ns, agreements, voters, jids = [], [], [], set(), []
    for (lo, hi), t in sorted(units.items()):
        mode = decide(t, c, p.id, unit_key("pairwise", lo, hi))
        if mode is None or mode.choice == "tie":
            continue
        decided.append((lo, hi) if mode.choice == "first" else (hi, lo))
        ns.append(mode.n)
        agreements.append(mode.n_top / mode.n)
        voters.update(t.voters)
        jids.extend(t.ids)
    win = _sole_winner(decided, chunk, c.origins)
    if isinstance(win, str):
        yield win
        return
    yield Item(p, "pairwise", completion=win, voters=sorted(voters), n_annotators=min(ns),
               agreement=min(agreements), judgment_ids=jids)


# -- human: ratings ---------------------------------------------------------------------------------------
def _ratings_pair(p: PromptRow, h: Human, ch: int, rj: int, ratings: dict[int, Mean],
                  annotator: str | None, chunk: Chunk) -> Item:
    voters, n_both, agreement = _pair_agreement(h, ch, rj)
    return Item(p, "ratings", chosen=ch, rejected=rj, annotator=annotator,
                voters=voters if annotator is None else sorted(set(voters) | {annotator}),
                n_annotators=n_both if annotator is not None else min(ratings[ch].n, ratings[rj].n),
                agreement=agreement, votes=_rating_votes(h, [ch, rj]),
                ratings=[(r, *ratings[r]) for r in sorted(ratings)], chosen_rating=ratings[ch].value,
                rejected_rating=ratings[rj].value, margin=ratings[ch].value - ratings[rj].value, margin_kind="rating_gap",
                judgment_ids=_rating_ids(h, [ch, rj]) if annotator is None
                else [h.ratings[annotator][r].id for r in (ch, rj)])


def _rating_sets(h: Human, chunk: Chunk, c: Ctx) -> Iterator[tuple[str | None, dict[int, Mean]]]:
    """(annotator or None, {response: (rating, n)}) over the exported origins: the means, or each person's."""
    if c.per_annotator:
        for judge in sorted(h.ratings):
            yield judge, {r: Mean(x.value, 1) for r, x in h.ratings[judge].items() if not _excluded(chunk, c.origins, r)}
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
                if ratings[a].value == ratings[b].value:
                    yield "tie"
                    continue
                ch, rj = (a, b) if ratings[a].value > ratings[b].value else (b, a)
                yield _ratings_pair(p, h, ch, rj, ratings, annotator, chunk)
            continue
        if len(rated) < 2:
            yield "missing_ratings"
            continue
        got = _extremes([(r, ratings[r].value) for r in rated])
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
        hi = max(m.value for m in ratings.values())
        top = [r for r, m in ratings.items() if m.value == hi]
        if len(top) > 1:
            yield "tied_best"
            continue
        best = top[0]
        raters = sorted(j for j, per in h.ratings.items() if best in per)
        yield Item(p, "ratings", completion=best, annotator=annotator, voters=raters,
                   n_annotators=ratings[best].n, agreement=None, votes=_rating_votes(h, sorted(ratings)),
                   ratings=[(r, *ratings[r]) for r in sorted(ratings)], chosen_rating=hi,
                   judgment_ids=_rating_ids(h, [best]) if annotator is None else [h.ratings[annotator][best].id])


# -- human: unpaired labels (kto) -------------------------------------------------------------------------
def _labelled(h: Human, signal: str, threshold: float) -> dict[int, Tally]:
    """response → the votes, each choosing desirable (True), undesirable (False) or, for a rating at the
    threshold, None; a rating vote keeps the rating as its value."""
    if signal == "correct":
        return {rid: correct_tally(h, rid) for rid in h.correct}
    out: dict[int, Tally] = defaultdict(lambda: Tally([]))
    if signal == "checklist":
        for rid, per in h.checklist.items():
            out[rid] = Tally([Ballot(j, all(a.yes for a in answers), min(a.id for a in answers))
                              for j, answers in sorted(per.items())])
    else:
        for j, per in sorted(h.ratings.items()):
            for rid, r in per.items():
                v = r.value
                out[rid].ballots.append(Ballot(j, True if v > threshold else False if v < threshold else None, r.id,
                                               value=v))
    return out


def kto_items(p: PromptRow, h: Human, chunk: Chunk, c: Ctx) -> Out:
    for rid, t in sorted(_labelled(h, c.signal, c.kto_threshold).items(), key=lambda kv: kv[0]):
        votes = t.ballots
        meta_votes: list[Vote] = [(b.judge, rid, None if b.choice is None else
                                   ("desirable" if b.choice else "undesirable"), b.value) for b in votes]
        if c.signal == "correct":
            meta_votes = [(b.judge, rid, "correct" if b.choice else "incorrect", None) for b in votes]
        elif c.signal == "checklist":
            meta_votes = [(b.judge, rid, "all_yes" if b.choice else "any_no", None) for b in votes]
        rating = None
        if c.signal == "ratings":
            vals = [b.value for b in votes if b.value is not None]
            rating = sum(vals) / len(vals)
        if _excluded(chunk, c.origins, rid):
            yield "excluded_origin"
            continue
        if c.per_annotator:
            for b in votes:
                if b.choice is None:
                    yield "at_threshold"
                    continue
                yield Item(p, c.signal, completion=rid, label=b.choice, annotator=b.judge, voters=t.voters,
                           n_annotators=len(votes), agreement=t.agreement(b.choice), votes=meta_votes,
                           ratings=[(rid, b.value, 1)] if b.value is not None else [],
                           chosen_rating=b.value, judgment_ids=[b.id])
            continue
        if c.signal == "ratings":
            assert rating is not None
            if rating == c.kto_threshold:
                yield "at_threshold"
                continue
            ok = rating > c.kto_threshold
            yield Item(p, "ratings", completion=rid, label=ok, voters=t.voters, n_annotators=len(votes),
                       agreement=t.agreement(ok), votes=meta_votes, ratings=[(rid, rating, len(votes))],
                       chosen_rating=rating, judgment_ids=t.ids)
            continue
        mode = decide(t, c, p.id, unit_key("correct", rid)) if c.signal == "correct" else t.consensus()
        if mode is None:
            yield "no_consensus"
            continue
        ok, n_top, n = mode
        yield Item(p, c.signal, completion=rid, label=ok, voters=t.voters, n_annotators=n, agreement=n_top / n,
                   votes=meta_votes, judgment_ids=t.ids)
