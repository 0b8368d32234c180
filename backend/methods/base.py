"""What every self-evaluation method is: an id, a version, a signal layer, prompt templates, and one
pure `run(input, engine) -> MethodResult`. Orchestration (what is missing, jobs, storing) lives in
app/services/scoring.py; a method never touches the database."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Literal, NamedTuple

import jinja2
from pydantic import BaseModel, Field

from backend.engines.base import Chat, Engine
from storage.models import ComparedWith

MetricFamily = Literal["calibration", "rank", "top1", "agreement"]


class ResponseInput(BaseModel):
    id: int
    text: str
    origin: str = "sampled"
    token_count: int | None = None
    mean_logprob: float | None = None
    neg_perplexity: float | None = None
    mean_topk_entropy: float | None = None
    self_certainty: float | None = None
    self_certainty_mode: str | None = None
    logprob_mode: str | None = None


class ChecklistItemInput(BaseModel):
    id: int
    question: str


class MethodInput(BaseModel):
    """Everything a method may look at for one prompt."""

    prompt_id: int
    prompt_external_id: str
    messages: Chat
    reference: str | None = None
    responses: list[ResponseInput]  # the responses people label, in a fixed order (by id)
    derived: list[ResponseInput] = Field(default_factory=list)  # revisions and aggregates of this prompt
    checklist: list[ChecklistItemInput] = Field(default_factory=list)  # the stored model checklist, if any
    answer_extraction: str = "none"  # none | last_number | boxed | regex:PATTERN
    seed: int = 0  # fixed per (prompt, method): reruns shuffle and sample the same way
    context_length: int = 4096
    # Top-k alternatives per token of the responses' run: teacher-forced scoring asks for as many, so its
    # top-k entropy and self-certainty proxy are the same kind of figure as the sampled ones'.
    top_logprobs: int = 5

    @property
    def question(self) -> str:
        """The last user message: what the responses answer."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


class Verdict(BaseModel):
    """A judgment without the study, judge and idempotency key (the service adds those)."""

    method: str
    response_id: int | None = None
    response_b_id: int | None = None
    checklist_item: int | None = None  # index into the checklist (the new one when the run wrote one)
    variant: str | None = None
    shown_order: list[int] | None = None
    value: float | None = None
    label: str | None = None
    prob: float | None = None
    dist: dict[str, float] | None = None
    rationale: str | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None


class NewResponse(BaseModel):
    text: str
    origin: Literal["revision", "aggregate"]
    parent_id: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class MethodResult(BaseModel):
    verdicts: list[Verdict] = Field(default_factory=list)
    checklist: list[str] | None = None  # questions this run wrote; stored before its item verdicts
    new_responses: list[NewResponse] = Field(default_factory=list)


class EngineCalls(NamedTuple):
    """What a method asks of the engine for one prompt, in the units a job's speed is measured in."""

    reads: int = 0  # prefill-only passes: one chat of next_token_probs, or one score_response
    generations: int = 0  # sampled completions: one chat x one sample of sample()


class Method(ABC):
    """A self-evaluation method. Class attributes feed the method table (docs/methods.md) and the
    agreement report's method ↔ human-question mapping."""

    id: ClassVar[str]
    version: ClassVar[str]
    layer: ClassVar[Literal["decoding", "response"]]
    title: ClassVar[str]
    brief: ClassVar[str]  # a few words for a picker ("P(True) self-check")
    calls_brief: ClassVar[str]  # its engine calls in a few words ("1 prefill read per response")
    outputs: ClassVar[str]  # column, range, orientation (higher = better everywhere)
    cost: ClassVar[str]
    source: ClassVar[str]
    compared_with: ClassVar[ComparedWith]
    metric_family: ClassVar[MetricFamily]
    score_column: ClassVar[Literal["value", "prob", "response_id", "label"]] = "value"
    # Methods that also judge inp.derived (revisions, aggregates) rerun when one is added.
    uses_derived: ClassVar[bool] = False

    @abstractmethod
    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        """Turn engine calls into verdicts for one prompt. Pure: no storage, no global state."""

    @abstractmethod
    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        """The engine calls `run(inp)` makes when every chat fits the context and every reply parses
        (an overflow or an empty response makes fewer; a retried reply one more). Text is not read, so
        an estimate can pass responses without it."""

    # -- helpers shared by methods ---------------------------------------------------------------
    def template(self, name: str, **values: Any) -> str:
        """Render `backend/templates/<id>.v<version>.<name>.j2` (changing a template bumps the version)."""
        return _template(f"{self.id}.v{self.version}.{name}.j2").render(**values)

    def failed(self, reason: str, **fields: Any) -> Verdict:
        return Verdict(method=self.id, status="failed", error=reason, **fields)


def context_overflow(engine: Engine, chat: Chat, max_new_tokens: int, context_length: int) -> str | None:
    """A readable reason when `chat` plus the reply budget does not fit the context, else None."""
    used = engine.count_tokens(chat)
    if used + max_new_tokens > context_length:
        return (f"context overflow: the prompt needs {used} tokens + {max_new_tokens} for the reply, "
                f"more than the model's {context_length}")
    return None


def method_seed(prompt_external_id: str, method_id: str) -> int:
    """
    >>> method_seed("q1", "pairwise") == method_seed("q1", "pairwise") != method_seed("q2", "pairwise")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{prompt_external_id}:{method_id}".encode()).digest()[:4], "big")


@cache
def _template(filename: str) -> jinja2.Template:
    try:
        source = resources.files("backend.templates").joinpath(filename).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no prompt template backend/templates/{filename}") from None
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(source)
