"""Best-of-N selectors: each picks one of a prompt's responses (prompt-level verdicts, `select_*`).

- `MajorityVote` (self-consistency): the most frequent extracted final answer; no model calls.
- `Borda` (Kang et al. 2025): answer votes weighted by the self-certainty rank, (N − r + 1)^p.
- `USC` (Universal Self-Consistency, Chen et al. 2023): the model itself names the most consistent
  response; read from the next-token probabilities of the response index (prefill only).

The random baseline is not stored as a method: its expected top-1 agreement is computed in the report
(`random_baseline_accuracy`). Reference: /work/shared/reference/methods.md §3, §6, §9.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from backend.engines.base import Engine
from backend.methods.answers import extract_answer, normalise, validate_mode
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    ResponseInput,
    Verdict,
    context_overflow,
)
from backend.token_stats import token_stats
from storage.models import HumanMethod


def random_baseline_accuracy(n_responses: int, n_human_best: int = 1) -> float:
    """Expected top-1 agreement of a uniformly random pick: the chance it lands on one of the
    `n_human_best` responses people chose as best among `n_responses`.

    >>> random_baseline_accuracy(4)
    0.25
    >>> random_baseline_accuracy(8, n_human_best=2)
    0.25
    >>> random_baseline_accuracy(0)
    Traceback (most recent call last):
    ValueError: random baseline needs at least one response and 0 <= n_human_best <= n_responses (got 0, 1)
    """
    if n_responses < 1 or not 0 <= n_human_best <= n_responses:
        raise ValueError(f"random baseline needs at least one response and 0 <= n_human_best <= n_responses "
                         f"(got {n_responses}, {n_human_best})")
    return n_human_best / n_responses


@dataclass
class _Cluster:
    answer: str  # the extracted answer of its first member, as written
    members: list[int] = field(default_factory=list)  # indices into the ordered responses
    votes: float = 0.0


def _clusters(answers: list[str | None], weights: list[float]) -> list[_Cluster]:
    """Group equal answers (by `normalise`) in order of first occurrence; None casts no vote."""
    by_key: dict[str, _Cluster] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        if a is None:
            continue
        c = by_key.setdefault(normalise(a), _Cluster(answer=a))
        c.members.append(i)
        c.votes += w
    return list(by_key.values())


def _winner(clusters: list[_Cluster]) -> _Cluster:
    """The cluster with the most votes; ties (within float noise) go to the earlier cluster."""
    best = max(c.votes for c in clusters)
    return next(c for c in clusters if c.votes >= best - 1e-9 * max(1.0, best))


def _dist(clusters: list[_Cluster]) -> dict[str, float]:
    return {c.answer: round(c.votes, 9) for c in clusters}


class MajorityVote(Method):
    id = "select_majority"
    version = "1"
    layer = "response"
    title = "Majority vote (self-consistency)"
    brief = "majority vote over the extracted answers"
    calls_brief = "no engine calls"
    outputs = ("response_id = the first response (in response order) of the largest answer cluster; "
               "label = its answer; value = its vote share among the responses with an extractable answer "
               "(0–1], higher = more agreement); dist = {answer: count} (sum = extractable responses). "
               "Failed 'n/a' verdict when the study has no answer extraction or no response has an answer; "
               "its dist = {extractable, responses}")
    cost = "none: no model calls (answer extraction only)"
    source = "Wang et al. 2022, arXiv 2203.11171 (self-consistency); baseline as in Liu et al. 2025 (methods.md §9)"
    compared_with = HumanMethod.BEST
    metric_family = "top1"
    score_column = "response_id"

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls()

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        mode, n = inp.answer_extraction, len(inp.responses)
        try:
            validate_mode(mode)
        except ValueError as e:
            return MethodResult(verdicts=[self.failed(str(e), dist={"extractable": 0.0, "responses": float(n)})])
        answers = [extract_answer(r.text, mode) for r in inp.responses]
        k = sum(a is not None for a in answers)
        if k == 0:
            return MethodResult(verdicts=[self.failed(
                f"n/a: no extractable answers (mode {mode})", dist={"extractable": 0.0, "responses": float(n)})])
        clusters = _clusters(answers, [1.0] * n)
        win = _winner(clusters)
        pick = inp.responses[win.members[0]]
        return MethodResult(verdicts=[Verdict(
            method=self.id, response_id=pick.id, value=win.votes / k, label=win.answer, dist=_dist(clusters),
            rationale=f"{k} of {n} responses have an extractable answer (mode {mode}); "
                      f"{_describe(clusters, inp.responses)}")])


class Borda(Method):
    """Borda voting with power p over the self-certainty ranking (Kang et al. 2025, repo
    `src/voting_from_list.py`).

    Rank the N responses by self-certainty, highest first (r = 1..N; ties keep response order, responses
    whose self-certainty cannot be had rank last). Each response votes for its extracted answer with
    weight (N − r + 1)^p. Equal answers form one cluster, ordered by the rank of their first member; the
    cluster with the largest summed vote wins (ties: the cluster whose first member ranks higher), and its
    highest-ranked response is the pick.

    `power` p: 0 gives every response one vote, i.e. plain majority vote (self-consistency); larger p
    trusts self-certainty more, approaching self-certainty best-of-N. 0.5 is the reference repo's CLI
    default (the paper tunes p by N).

    Without answer extraction (mode "none"), or when no response has an answer, every response is its
    own cluster, so the pick is the self-certainty argmax (best-of-N); `label` says so.
    """

    id = "select_borda"
    # 2: ranks by raw self-certainty only (temperature-scaled stored figures are teacher-forced again).
    version = "2"
    layer = "decoding"
    title = "Borda vote weighted by self-certainty rank"
    brief = "answer vote weighted by self-certainty rank"
    calls_brief = "free for raw-logprob samples; 1 prefill read per other one"
    outputs = ("response_id = the highest-self-certainty response of the answer with the largest Borda vote "
               "(sum of (N − r + 1)^p, p = 0.5); label = that answer, or 'self-certainty best-of-N (…)' without "
               "extraction; value = the winner's share of all votes (0–1], higher = more agreement); "
               "dist = {answer: votes} (or {response_id: votes} in the best-of-N fallback)")
    cost = ("≈0: uses the raw self-certainty stored with each sampled response; one teacher-forced prefill per "
            "response that lacks it (imported responses) or has it temperature-scaled (SGLang without "
            "SGLANG_RETURN_ORIGINAL_LOGPROB=1)")
    source = "Kang, Zhao, Song 2025, arXiv 2502.18581 (Self-Certainty), repo src/voting_from_list.py (methods.md §3)"
    compared_with = HumanMethod.BEST
    metric_family = "top1"
    score_column = "response_id"

    power: float = 0.5

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        try:
            validate_mode(inp.answer_extraction)
        except ValueError:
            return EngineCalls()
        return EngineCalls(reads=sum(_stored_self_certainty(r) is None for r in inp.responses))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        mode, n = inp.answer_extraction, len(inp.responses)
        try:
            validate_mode(mode)
        except ValueError as e:
            return MethodResult(verdicts=[self.failed(str(e))])
        if n == 0:
            return MethodResult(verdicts=[self.failed("no responses to choose from")])
        certainty, notes = self._self_certainty(inp, engine)
        if all(sc is None for sc in certainty):
            return MethodResult(verdicts=[self.failed(
                "no self-certainty for any response: " + "; ".join(notes), dist={"responses": float(n)})])
        # Highest first; unknown last; ties keep response order (sorted is stable).
        order = sorted(range(n), key=lambda i: -certainty[i] if certainty[i] is not None else math.inf)
        ranked = [inp.responses[i] for i in order]
        weights = [float(n - r) ** self.power for r in range(n)]  # rank r+1 → (N − (r+1) + 1)^p
        answers = [extract_answer(r.text, mode) for r in ranked]
        fallback = None
        if mode == "none":
            fallback = "no answer extraction"
        elif all(a is None for a in answers):
            fallback = f"no extractable answers (mode {mode})"
        if fallback:
            answers = [str(r.id) for r in ranked]  # every response is its own answer → argmax self-certainty
        clusters = _clusters(answers, weights)
        win = _winner(clusters)
        pick = ranked[win.members[0]]
        total = sum(c.votes for c in clusters)
        sc_text = ", ".join(f"#{r.id} {certainty[i]:.4g}" if certainty[i] is not None else f"#{r.id} n/a"
                            for r, i in zip(ranked, order))
        rationale = f"p = {self.power}; self-certainty ranking: {sc_text}"
        if notes:
            rationale += "; " + "; ".join(notes)
        if not fallback:
            rationale += f"; {_describe(clusters, ranked)}"
        return MethodResult(verdicts=[Verdict(
            method=self.id, response_id=pick.id, value=win.votes / total if total > 0 else None,
            label=f"self-certainty best-of-N ({fallback})" if fallback else win.answer,
            dist=_dist(clusters), rationale=rationale)])

    @staticmethod
    def _self_certainty(inp: MethodInput, engine: Engine) -> tuple[list[float | None], list[str]]:
        """Stored raw self-certainty per response, computed by a teacher-forced prefill (raw logprobs, the run's
        top-k) where it is missing or temperature-scaled, so the ranking never mixes the two."""
        out: list[float | None] = []
        notes: list[str] = []
        for r in inp.responses:
            stored = _stored_self_certainty(r)
            if stored is not None:
                out.append(stored)
                continue
            if not r.text.strip():
                out.append(None)
                notes.append(f"#{r.id} is empty")
                continue
            reason = context_overflow(engine, [*inp.messages, {"role": "assistant", "content": r.text}], 0,
                                      inp.context_length)
            if reason:
                out.append(None)
                notes.append(f"#{r.id}: {reason}")
                continue
            stats = token_stats(engine.score_response(inp.messages, r.text, top_logprobs=inp.top_logprobs),
                                vocab_size=getattr(engine, "vocab_size", None), logprob_mode="raw")
            out.append(stats.self_certainty)
            if stats.self_certainty is None:
                notes.append(f"#{r.id}: the engine gives neither exact self-certainty nor top-k logprobs "
                             f"with a vocabulary size")
            elif stats.self_certainty_mode != "exact":
                notes.append(f"#{r.id}: self-certainty is the {stats.self_certainty_mode} estimate")
        return out, notes


class USC(Method):
    """Universal Self-Consistency: one prompt shows all N responses (order shuffled with the prompt's
    seed) and asks which is the most consistent; the answer "Response X" is read from the next-token
    probabilities of the digits 0..N−1 after the prefix "The most consistent response is Response "."""

    id = "select_usc"
    version = "1"
    layer = "response"
    title = "Universal Self-Consistency (model picks the most consistent response)"
    brief = "the model picks the most consistent response"
    calls_brief = "1 prefill read per prompt (all N responses in it)"
    outputs = ("response_id = the response whose shown index has the highest P(next token); value = that "
               "probability renormalised over the N candidate indices (1/N–1, higher = more decided); "
               "dist = {response_id: probability}; shown_order = response ids in the order shown as "
               "Response 0..N−1")
    cost = "one prefill (NEXT1) per prompt holding all N responses; no generation"
    source = ("Chen et al. 2023, arXiv 2311.17311 (USC); prompt as in Self-Certainty repo src/templates/USC.py "
              "(methods.md §6)")
    compared_with = HumanMethod.BEST
    metric_family = "top1"
    score_column = "response_id"

    prefix = "The most consistent response is Response "
    reply_budget = 16  # tokens of the assistant prefix plus the index

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=1 if 1 <= len(inp.responses) <= 10 else 0)

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        n = len(inp.responses)
        if n == 0:
            return MethodResult(verdicts=[self.failed("no responses to choose from")])
        if n > 10:
            return MethodResult(verdicts=[self.failed(f"USC reads one digit: at most 10 responses, got {n}")])
        order = list(range(n))
        random.Random(inp.seed).shuffle(order)
        shown = [inp.responses[i] for i in order]
        shown_ids = [r.id for r in shown]
        chat = [{"role": "user", "content": self.template(
            "prompt", question=inp.question, responses=[r.text for r in shown])}]
        reason = context_overflow(engine, chat, self.reply_budget, inp.context_length)
        if reason:
            return MethodResult(verdicts=[self.failed(reason, shown_order=shown_ids)])
        digits = [str(i) for i in range(n)]
        raw = engine.next_token_probs([chat], self.prefix, digits)[0]
        mass = sum(raw.get(d, 0.0) for d in digits)
        if mass <= 0:
            return MethodResult(verdicts=[self.failed(
                "no probability on any response index after the USC prefix", shown_order=shown_ids)])
        probs = [raw.get(d, 0.0) / mass for d in digits]
        best = max(range(n), key=lambda i: (probs[i], -i))  # ties: the lower shown index
        return MethodResult(verdicts=[Verdict(
            method=self.id, response_id=shown[best].id, shown_order=shown_ids, value=probs[best],
            dist={str(r.id): p for r, p in zip(shown, probs)},
            rationale=f"picked Response {best} (#{shown[best].id}); P(index digits) summed to {mass:.3g} before "
                      f"renormalising; shown order: " + ", ".join(f"{i} = #{rid}" for i, rid in enumerate(shown_ids)))])


def _stored_self_certainty(r: ResponseInput) -> float | None:
    """The self-certainty stored with a response when it is from raw logprobs, else None.

    >>> _stored_self_certainty(ResponseInput(id=1, text="x", self_certainty=2.5, logprob_mode="raw"))
    2.5
    >>> _stored_self_certainty(ResponseInput(id=1, text="x", self_certainty=2.5, logprob_mode="temperature_scaled"))
    """
    return r.self_certainty if r.logprob_mode == "raw" else None


def _describe(clusters: list[_Cluster], ordered: list[ResponseInput]) -> str:
    parts = [f"{c.answer!r} × {len(c.members)} ({', '.join(f'#{ordered[m].id}' for m in c.members)}; "
             f"votes {c.votes:.4g})" for c in clusters]
    return "clusters: " + "; ".join(parts)
