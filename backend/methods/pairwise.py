"""Pairwise comparison with position swap: MT-Bench's LLM-as-a-judge (Zheng et al. 2023, arXiv 2306.05685).

Each judged pair is shown in both orders with the MT-Bench pairwise prompt (system prompt after FastChat's
``pair-v2`` judge prompt; ``[User Question]`` and ``[The Start/End of Assistant A's/B's Answer]`` blocks)
and two worked examples (verdicts A and B, so the examples favour neither position). The verdict is read
without an explanation first: the assistant turn starts with ``[[`` and the next-token probabilities of
``A``, ``B`` and ``C`` (tie) are read in one batched prefill call for every pair and both orders.

Which pairs: every unordered pair when n ≤ 4 (at most 6 pairs). Above that, a ring through the responses in
a seeded random order (seed = the method seed): n pairs, each response compared exactly twice, so the cost
grows linearly and no response is left out; the same seed and responses always give the same pairs.

Stored per order (variant ``order:<first>-<second>``): response_id = the response shown first, response_b_id
= second, shown_order = [first, second], dist = ``{"A", "B", "tie"}`` renormalised over the three candidates
plus ``label_mass`` (their raw probability sum), prob = P(first wins), value = 1 / 0.5 / 0 for a first-shown
win / tie / loss, label = the winner's id or ``"tie"`` (argmax; a shared maximum is a tie). Per pair (variant
None): response_id = the lower id, response_b_id = the higher, label = the winner's id only when both orders
name the same winner, else ``"tie"`` (MT-Bench's conservative rule); value = 1 / 0.5 / 0 for a lower-id win /
tie / loss; prob = mean over the two orders of P(lower id wins); dist = ``{"swap_consistent": 1/0,
"tie": mean P(tie)}`` where consistent means both orders gave the same label. A chat that does not fit the
context, or an order with no probability on A/B/C, gives failed verdicts (and a failed pair verdict).
"""

from __future__ import annotations

import itertools
import json
import random
from typing import ClassVar

from backend.engines.base import Chat, Engine
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    Verdict,
    context_overflow,
)
from storage.models import HumanMethod

CANDIDATES = ["A", "B", "C"]  # C = tie, as in MT-Bench's [[C]]
PREFIX = "[["
ALL_PAIRS_UP_TO = 4


def select_pairs(ids: list[int], seed: int) -> list[tuple[int, int]]:
    """The unordered pairs to judge, each as (lower id, higher id), sorted.

    >>> select_pairs([3, 1, 2], seed=0)
    [(1, 2), (1, 3), (2, 3)]
    >>> pairs = select_pairs([1, 2, 3, 4, 5, 6], seed=42)
    >>> len(pairs), pairs == select_pairs([6, 5, 4, 3, 2, 1], seed=42)
    (6, True)
    >>> sorted(sum(((a, b) for a, b in pairs), ()))  # every response in exactly two pairs
    [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    """
    ids = sorted(set(ids))
    if len(ids) <= ALL_PAIRS_UP_TO:
        return list(itertools.combinations(ids, 2))
    ring = ids[:]
    random.Random(seed).shuffle(ring)
    return sorted({tuple(sorted((ring[i], ring[(i + 1) % len(ring)]))) for i in range(len(ring))})  # type: ignore[misc]


def order_outcome(probs: dict[str, float]) -> tuple[dict[str, float], str] | None:
    """Renormalised {"A", "B", "tie", "label_mass"} and the argmax ("A", "B" or "tie"; a shared maximum is a
    tie); None when the candidates have no probability at all.

    >>> order_outcome({"A": 0.3, "B": 0.1, "C": 0.1})
    ({'A': 0.6, 'B': 0.2, 'tie': 0.2, 'label_mass': 0.5}, 'A')
    >>> order_outcome({"A": 0.2, "B": 0.2, "C": 0.1})[1]
    'tie'
    """
    a, b, t = (max(0.0, float(probs.get(c, 0.0))) for c in CANDIDATES)
    mass = a + b + t
    if mass <= 0:
        return None
    dist = {"A": a / mass, "B": b / mass, "tie": t / mass, "label_mass": mass}
    winner = "A" if a > b and a > t else "B" if b > a and b > t else "tie"
    return dist, winner


class PairwiseSwap(Method):
    id = "pairwise"
    # 2: the A/B/C reading follows backend/engines/candidates.py (on SGLang, lower-case letters no longer count).
    version = "2"
    layer = "response"
    title = "Pairwise judge with position swap (MT-Bench)"
    brief = "pairwise judge, each pair in both orders"
    calls_brief = "2 prefill reads per pair (all pairs for n ≤ 4, n pairs above)"
    outputs = ("label: winner's response id when both orders agree, else 'tie' (value 1 / 0.5 / 0 = lower id "
               "wins / tie / loses; prob = mean P(lower id wins), 0–1; dist.swap_consistent 1/0); per order "
               "(variant order:<first>-<second>): prob = P(first shown wins), dist over A/B/tie")
    cost = ("prefill only (one next-token read per order): 2 chats per pair; all pairs for n ≤ 4, "
            "n pairs (a seeded ring) above: ≈ 2 × 0.1–0.3× per pair")
    source = "Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena, arXiv 2306.05685"
    compared_with = HumanMethod.PAIRWISE
    metric_family = "agreement"
    score_column = "label"

    reply_tokens: ClassVar[int] = 4  # budget for the "[[" prefix and the verdict token

    def chat(self, question: str, first: str, second: str) -> Chat:
        """System prompt, the worked examples as earlier turns, then the pair in the given order."""
        chat: Chat = [{"role": "system", "content": self.template("system")}]
        for ex in json.loads(self.template("examples")):
            chat.append({"role": "user", "content": self.template("user", question=ex["question"],
                                                                  answer_a=ex["answer_a"], answer_b=ex["answer_b"])})
            chat.append({"role": "assistant", "content": f"[[{ex['verdict']}]]"})
        chat.append({"role": "user", "content": self.template("user", question=question, answer_a=first,
                                                              answer_b=second)})
        return chat

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=2 * len(select_pairs([r.id for r in inp.responses], inp.seed)))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        text = {r.id: r.text for r in inp.responses}
        pairs = select_pairs(list(text), inp.seed)
        orders = [o for lo, hi in pairs for o in ((lo, hi), (hi, lo))]
        outcome: dict[tuple[int, int], tuple[dict[str, float], str] | str] = {}  # order -> result or failure
        ask, chats = [], []
        for first, second in orders:
            chat = self.chat(inp.question, text[first], text[second])
            reason = context_overflow(engine, chat, self.reply_tokens, inp.context_length)
            if reason:
                outcome[(first, second)] = reason
            else:
                ask.append((first, second))
                chats.append(chat)
        if chats:
            for order, probs in zip(ask, engine.next_token_probs(chats, PREFIX, CANDIDATES)):
                got = order_outcome(probs)
                outcome[order] = got if got is not None else (
                    f"no probability on the verdict tokens A/B/C after {PREFIX!r}: {probs}")
        verdicts: list[Verdict] = []
        for lo, hi in pairs:
            for first, second in ((lo, hi), (hi, lo)):
                verdicts.append(self._order_verdict(first, second, outcome[(first, second)]))
            verdicts.append(self._pair_verdict(lo, hi, outcome[(lo, hi)], outcome[(hi, lo)]))
        return MethodResult(verdicts=verdicts)

    def _order_verdict(self, first: int, second: int, got: tuple[dict[str, float], str] | str) -> Verdict:
        where = {"response_id": first, "response_b_id": second, "shown_order": [first, second],
                 "variant": f"order:{first}-{second}"}
        if isinstance(got, str):
            return self.failed(got, **where)
        dist, winner = got
        label = {"A": str(first), "B": str(second), "tie": "tie"}[winner]
        return Verdict(method=self.id, **where, dist=dist, prob=dist["A"], label=label,
                       value={"A": 1.0, "B": 0.0, "tie": 0.5}[winner])

    def _pair_verdict(self, lo: int, hi: int, ab: tuple[dict[str, float], str] | str,
                      ba: tuple[dict[str, float], str] | str) -> Verdict:
        if isinstance(ab, str) or isinstance(ba, str):
            reason = ab if isinstance(ab, str) else ba
            return self.failed(f"needs both orders; {reason}", response_id=lo, response_b_id=hi)
        (d_ab, w_ab), (d_ba, w_ba) = ab, ba
        label_ab = {"A": str(lo), "B": str(hi), "tie": "tie"}[w_ab]
        label_ba = {"A": str(hi), "B": str(lo), "tie": "tie"}[w_ba]
        label = label_ab if label_ab == label_ba else "tie"
        return Verdict(method=self.id, response_id=lo, response_b_id=hi, label=label,
                       value=1.0 if label == str(lo) else 0.0 if label == str(hi) else 0.5,
                       prob=(d_ab["A"] + d_ba["B"]) / 2,
                       dist={"swap_consistent": 1.0 if label_ab == label_ba else 0.0,
                             "tie": (d_ab["tie"] + d_ba["tie"]) / 2})
