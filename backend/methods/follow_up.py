"""Follow-up likelihood as reward (FLR; Zhang et al. 2024, "Aligning Language Models Using Follow-up Likelihood
as Reward Signal", arXiv 2409.13948).

A good answer makes a satisfied reply from the user likely and a complaint unlikely. Per response, every
follow-up utterance of two fixed lists (29 positive, 30 negative, in the paper's three categories:
understanding, engagingness and instruction following; written for critlab, in
backend/templates/follow_up_likelihood.v1.positive.j2 and .negative.j2) is teacher-forced after the exchange, and

    value = mean over positive follow-ups of their mean token logprob
          − mean over negative follow-ups of their mean token logprob

(higher = better; any real number, 0 = no preference). dist = {positive, negative, follow_ups}.

Where this differs from the paper, and why:
- The engine protocol teacher-forces text only as the *assistant's* reply (`score_response`), so the exchange is
  shown as a transcript in one user turn ("... Write the user's next message") and each follow-up is scored as
  the model's answer to that. The paper scores the follow-up as the user's own next turn of the chat; that
  needs a user-turn scoring call in both engines, which they do not have.
- The per-utterance figure is the mean token logprob, as the paper describes it; the authors' script
  (run_llama3.py) reads raw logits at one position instead, which is not a likelihood, so it is not copied.
- The utterances are critlab's own, not the authors' lists, so the figures compare across critlab runs,
  not with the paper's numbers.
- The paper's fine-tuned FLR model (trained on natural-language feedback) is not used: the judged model
  scores itself.

Cost: one teacher-forced read per (response, follow-up), 59 per response. On the embedded engine the
transcript prefix stays in the KV cache between a response's follow-ups, so each read prefills only the
follow-up's few tokens. A transcript that does not fit the context gets a failed "context overflow" verdict.
"""

from __future__ import annotations

from functools import cached_property

from backend.engines.base import Chat, Engine
from backend.methods.base import EngineCalls, Method, MethodInput, MethodResult, ResponseInput, Verdict, context_overflow
from storage.models import HumanMethod

# The longest follow-up is under 16 tokens on SmolLM2; the budget check leaves room for it.
FOLLOW_UP_BUDGET = 32


def mean_logprob(logprobs: list[float]) -> float | None:
    """The length-normalised log-likelihood of one utterance (None for no tokens).

    >>> mean_logprob([-1.0, -2.0, -0.5, -0.5])
    -1.0
    >>> mean_logprob([]) is None
    True
    """
    return sum(logprobs) / len(logprobs) if logprobs else None


def flr(positive: list[float], negative: list[float]) -> float:
    """Mean positive minus mean negative utterance log-likelihood.

    >>> flr([-1.0, -2.0], [-3.0, -4.0, -5.0])
    2.5
    """
    return sum(positive) / len(positive) - sum(negative) / len(negative)


class FollowUpLikelihood(Method):
    id = "follow_up_likelihood"
    version = "1"
    layer = "response"
    title = "Follow-up likelihood as reward: P(satisfied reply) vs P(complaint)"
    brief = "likelihood of a satisfied vs a dissatisfied user reply"
    calls_brief = "59 prefill reads per response (short, shared prefix)"
    outputs = ("value = mean log-likelihood per token of 29 positive follow-ups − that of 30 negative ones, "
               "any real number, higher = better; dist {positive, negative, follow_ups}")
    cost = ("59 teacher-forced reads per response (one per follow-up utterance, ≤ 16 tokens each after a "
            "cached transcript prefix); no generation")
    source = ("Zhang et al. 2024, Aligning Language Models Using Follow-up Likelihood as Reward Signal "
              "(arXiv 2409.13948); follow-ups written for critlab in the paper's three categories")
    compared_with = HumanMethod.RATING
    metric_family = "rank"
    score_column = "value"

    @cached_property
    def follow_ups(self) -> tuple[list[str], list[str]]:
        """(positive, negative) utterances from the templates, one a line."""
        return tuple([ln.strip() for ln in self.template(name).splitlines() if ln.strip()]  # type: ignore[return-value]
                     for name in ("positive", "negative"))

    def chat(self, inp: MethodInput, response: str) -> Chat:
        turns = [*inp.messages, {"role": "assistant", "content": response.strip()}]
        return [{"role": "user", "content": self.template("conversation", turns=turns)}]

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        pos, neg = self.follow_ups
        return EngineCalls(reads=len(inp.responses) * (len(pos) + len(neg)))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        return MethodResult(verdicts=[self.score(inp, engine, r) for r in inp.responses])

    def score(self, inp: MethodInput, engine: Engine, r: ResponseInput) -> Verdict:
        chat = self.chat(inp, r.text)
        overflow = context_overflow(engine, chat, FOLLOW_UP_BUDGET, inp.context_length)
        if overflow:
            return self.failed(overflow, response_id=r.id)
        means: list[list[float]] = []
        for utterances in self.follow_ups:
            got = []
            for u in utterances:
                m = mean_logprob([t.logprob for t in engine.score_response(chat, u, top_logprobs=0)])
                if m is None:
                    return self.failed(f"the engine returned no tokens for the follow-up {u!r}", response_id=r.id)
                got.append(m)
            means.append(got)
        pos, neg = means
        return Verdict(method=self.id, response_id=r.id, value=flr(pos, neg),
                       dist={"positive": sum(pos) / len(pos), "negative": sum(neg) / len(neg),
                             "follow_ups": float(len(pos) + len(neg))})
