"""Policies over model verdicts: judge pairs (the model's own critiques against the human label), the
self-rewarding pairs and sft picks of `--source model:METHOD`, and `model_agrees`, the check of a human item
against the model for `--source consensus:METHOD`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from storage.human_labels import CORRECT_LABELS
from storage.export.data import Chunk, Human, ModelRow, PromptRow, Resp
from storage.export.policies.base import (
    correct_tally,
    Ctx,
    decide,
    _excluded,
    _extremes,
    Item,
    Out,
    Score,
    _sole_winner,
    TIE_WORDS,
    unit_key,
    Vote,
)


# -- judge: the model's own critiques against the human label ----------------------------------------------
def _critique_samples(rows: list[ModelRow]) -> dict[int, list[ModelRow]]:
    out: dict[int, list[ModelRow]] = defaultdict(list)
    for r in rows:
        if r.variant is not None and r.response_id is not None and r.response_b_id is None \
                and r.label in CORRECT_LABELS:
            out[r.response_id].append(r)
    for samples in out.values():
        samples.sort(key=lambda r: (len(r.variant or ""), r.variant or ""))
    return out


def judge_items(p: PromptRow, h: Human | None, chunk: Chunk, c: Ctx) -> Out:
    h = h or Human()
    for rid, samples in sorted(_critique_samples(chunk.model.get(p.id, [])).items()):
        t = correct_tally(h, rid)
        if not t.ballots:
            yield "no_human_label"
            continue
        if _excluded(chunk, c.origins, rid):
            yield "excluded_origin"
            continue
        meta_votes: list[Vote] = [(b.judge, rid, "correct" if b.choice else "incorrect", None) for b in t.ballots]
        labels: list[tuple[str | None, bool, float, list[int]]] = []
        if c.per_annotator:
            labels = [(b.judge, b.choice, t.agreement(b.choice), [b.id]) for b in t.ballots]
        else:
            mode = decide(t, c, p.id, unit_key("correct", rid))
            if mode is None:
                yield "no_consensus"
                continue
            labels = [(None, mode.choice, mode.n_top / mode.n, t.ids)]
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
            yield Item(p, "correct", target=rid, label=human_ok, annotator=annotator, voters=t.voters,
                       n_annotators=len(t.ballots), agreement=agreement, votes=meta_votes,
                       scores=[(rid, "critique", s.judge, s.variant, s.value, s.label) for s in (ch, rj)],
                       chosen_sample=ch, rejected_sample=rj, method_version=ch.method_version,
                       judgment_ids=jids + [ch.id, rj.id])


# -- model sources ---------------------------------------------------------------------------------------
class Scored(NamedTuple):
    """A response's score under the method (the mean of its samples' where it has k) and the verdicts' ids."""

    score: float
    ids: list[int]


class PairVerdict(NamedTuple):
    """The model's verdict on a response pair from its two shown orders."""

    status: str  # ok | single_order | swap_inconsistent | tie | invalid
    winner: int | None
    gap: float | None  # the mean probability gap of the two orders
    scores: list[Score]  # the per-order rows
    ids: list[int]


@dataclass
class ModelView:
    """One prompt's verdicts of one method and judge."""

    scores: dict[int, Scored] = field(default_factory=dict)     # response →
    pairs: dict[tuple[int, int], PairVerdict] = field(default_factory=dict)  # (lo, hi) →
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
        voters: dict[int, list[int]] = {}
        for r in rows:
            s = getattr(r, col)
            if r.response_id is None or r.response_b_id is not None or s is None:
                continue
            if r.variant is None:
                plain[r.response_id] = (float(s), r.id)
                if r.voter_ids:
                    voters[r.response_id] = r.voter_ids
            else:
                variants[r.response_id].append((float(s), r.id))
        for rid in set(plain) | set(variants):
            if rid in plain:
                v.scores[rid] = Scored(plain[rid][0], voters.get(rid, [plain[rid][1]]))
            else:
                vs = variants[rid]
                v.scores[rid] = Scored(sum(s for s, _ in vs) / len(vs), [i for _, i in vs])
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
            ids = list(dict.fromkeys(i for x in got for i in (x.voter_ids or [x.id])))
            if ab is None or ba is None:
                v.pairs[(a, b)] = PairVerdict("single_order", None, None, scores, ids)
                continue
            w_ab = "tie" if ab.label in TIE_WORDS else ab.label
            w_ba = "tie" if ba.label in TIE_WORDS else ba.label
            if w_ab != w_ba:
                v.pairs[(a, b)] = PairVerdict("swap_inconsistent", None, None, scores, ids)
            elif w_ab == "tie":
                v.pairs[(a, b)] = PairVerdict("tie", None, None, scores, ids)
            elif w_ab not in (str(a), str(b)):
                v.pairs[(a, b)] = PairVerdict("invalid", None, None, scores, ids)
            else:
                win = int(w_ab)
                p1, p2 = _order_probs(ab, a, b), _order_probs(ba, b, a)
                gap = None
                if p1 is not None and p2 is not None:
                    g1 = p1[0] - p1[1] if win == a else p1[1] - p1[0]
                    g2 = p2[0] - p2[1] if win == b else p2[1] - p2[0]
                    gap = (g1 + g2) / 2
                v.pairs[(a, b)] = PairVerdict("ok", win, gap, scores, ids)
    return v


def _score_list(view: ModelView, c: Ctx, rids: list[int]) -> list[Score]:
    return [(r, c.model_method or "", view.judge or "", None, view.scores[r].score, None) for r in rids if r in view.scores]


def _prompt_view(p: PromptRow, chunk: Chunk, c: Ctx) -> tuple[list[Resp], ModelView] | None:
    """The prompt's responses and the model's view of them, or None when it has no responses."""
    resp = chunk.by_prompt.get(p.id, [])
    return (resp, model_view(chunk.model.get(p.id, []), c)) if resp else None


def _scored(view: ModelView, resp: list[Resp], c: Ctx) -> list[tuple[int, float]] | str:
    """(response, score) of the exported responses the view scores, or why too few are."""
    cands = [(r.id, view.scores[r.id].score) for r in resp if r.id in view.scores and r.origin in c.origins]
    return cands if len(cands) >= 2 else "missing_scores"


def model_pairs(p: PromptRow, chunk: Chunk, c: Ctx) -> Out:
    got = _prompt_view(p, chunk, c)
    if got is None:
        return
    resp, view = got
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
    cands = _scored(view, resp, c)
    if isinstance(cands, str):
        yield cands
        return
    got = _extremes(cands)
    if isinstance(got, str):
        yield got
        return
    ch, rj = got
    yield Item(p, c.model_method or "", chosen=ch, rejected=rj, margin=view.scores[ch].score - view.scores[rj].score,
               margin_kind="score_gap", scores=_score_list(view, c, [r for r, _ in cands]),
               judgment_ids=view.scores[ch].ids + view.scores[rj].ids, method_version=view.version)


def model_sft(p: PromptRow, chunk: Chunk, c: Ctx) -> Out:
    got = _prompt_view(p, chunk, c)
    if got is None:
        return
    resp, view = got
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
        win = _sole_winner(decided, chunk, c.origins)  # type: ignore[arg-type]
        if isinstance(win, str):
            yield win
            return
        pairs = [(k, x) for k, x in view.pairs.items() if x.status == "ok" and win in k]
        yield Item(p, c.model_method or "", completion=win, swap_consistent=True,
                   scores=[s for _, x in pairs for s in x.scores], judgment_ids=[i for _, x in pairs for i in x.ids],
                   method_version=view.version)
        return
    cands = _scored(view, resp, c)
    if isinstance(cands, str):
        yield cands
        return
    hi = max(s for _, s in cands)
    top = [r for r, s in cands if s == hi]
    if len(top) > 1:
        yield "tied_best"
        return
    yield Item(p, c.model_method or "", completion=top[0], scores=_score_list(view, c, [r for r, _ in cands]),
               judgment_ids=view.scores[top[0]].ids, method_version=view.version)


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
        sc, sr = view.scores[ch].score, view.scores[rj].score
        return None if sc > sr else "model_tie" if sc == sr else "model_disagrees"
    best = item.completion
    if c.score_column == "response_id":
        if view.pick is None:
            return "model_missing"
        item.scores.append((view.pick[0], c.model_method or "", view.judge or "", None, None, "picked"))
        return None if view.pick[0] == best else "model_disagrees"
    if c.score_column == "label":
        mine = [(k, x) for k, x in view.pairs.items() if best in k and x.status == "ok"]
        if not mine:
            return "model_missing"
        item.scores += [s for _, x in mine for s in x.scores]
        item.swap_consistent = True
        return None if all(x.winner == best for _, x in mine) else "model_disagrees"
    if best not in view.scores:
        return "model_missing"
    hi = max(x.score for x in view.scores.values())
    item.scores += _score_list(view, c, sorted(view.scores))
    if view.scores[best].score < hi:
        return "model_disagrees"
    return "model_tie" if sum(1 for x in view.scores.values() if x.score == hi) > 1 else None
