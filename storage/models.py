"""Plain data models shared by storage, backend and app (pydantic, no behaviour beyond validation)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["admin", "annotator"]
Origin = Literal["sampled", "imported", "reference", "aggregate", "revision"]
JudgeKind = Literal["human", "model"]
Stage = Literal["blind", "revealed"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]

MAX_RESPONSES = 8  # the Label tab shows at most this many cards


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


Question = Literal["best", "rating", "pairwise", "correct", "checklist", "critique", "reference", "comment"]
QUESTIONS: tuple[str, ...] = ("best", "rating", "pairwise", "correct", "checklist", "critique", "reference",
                              "comment")


class HumanMethod(StrEnum):
    """The `judgment.method` a person's answer is stored under: the one vocabulary the labelling service
    writes and the report, the exports, the importers and the method table read. The values are stored
    data and documented (docs/formats.md), so they never change; members compare equal to their values.
    The model's pairwise and checklist methods store their verdicts under the same names (pairwise,
    checklist_item), which is what lets the report compare the two.

    >>> HumanMethod.BEST == "best_of_n", f"{HumanMethod.RATING}"
    (True, 'likert')
    """

    BEST = "best_of_n"  # one pick among the shown responses (a prompt-level judgment)
    RATING = "likert"  # a score on the study's rating scale, per response
    PAIRWISE = "pairwise"  # A / B / tie between the first two shown responses
    CORRECT = "correct"  # correct / incorrect, per response
    CHECKLIST_ITEM = "checklist_item"  # YES / NO on one checklist item for one response
    CRITERION_VALID = "criterion_valid"  # whether a checklist item is a fair criterion at all
    CRITIQUE_AGREE = "critique_agree"  # agree / disagree with the model's critique of a response
    REFERENCE = "reference"  # a reference answer the person wrote
    COMMENT = "comment"  # free text


# Which judgment methods each question of the Label tab writes (study.config.questions names the questions).
QUESTION_METHODS: dict[str, tuple[HumanMethod, ...]] = {
    "best": (HumanMethod.BEST,),
    "rating": (HumanMethod.RATING,),
    "pairwise": (HumanMethod.PAIRWISE,),
    "correct": (HumanMethod.CORRECT,),
    "checklist": (HumanMethod.CHECKLIST_ITEM, HumanMethod.CRITERION_VALID),
    "critique": (HumanMethod.CRITIQUE_AGREE,),
    "reference": (HumanMethod.REFERENCE,),
    "comment": (HumanMethod.COMMENT,),
}
# What a model method's score is compared with (`compared_with` in the method table and the report): a human
# method, or "checklist", the per-item YES/NO answers of the checklist question (stored as checklist_item).
ComparedWith = Literal["correct", "likert", "best_of_n", "pairwise", "checklist"]


class ModelIdentity(BaseModel):
    """Which model produced a run or a judgment. For a GGUF: the name from its metadata, the quantisation,
    the file's size and SHA-256, so two different files never share a `model_id`; for SGLang: the served
    model's id. `chat_template` is the template the engine renders chats with (exports reuse it)."""

    model_id: str  # the judge id stored with every run, response and model judgment
    engine: Literal["embedded", "sglang", "scripted"]
    name: str
    quantisation: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    path: str | None = None  # where the file was when it was last loaded (informational)
    context_length: int | None = None  # what the engine runs with
    chat_template: str | None = None
    special_tokens: dict[str, str] = Field(default_factory=dict)  # bos_token / eos_token the template may use
    bundled: bool = False  # the demo model shipped with critlab (no signal in its self-judgments)
    # Lineage (m027): the model this one was trained from, on which export run; iteration = steps from the
    # family's root (0 for a model with no parent). Never written by record_model, only by set_lineage.
    parent_model_id: str | None = None
    trained_on_export_id: int | None = None
    iteration: int = 0


class StudyConfig(BaseModel):
    """Per-study annotation settings (stored as JSON in study.config)."""

    model_config = ConfigDict(extra="allow")
    # Blind: model judgments stay hidden while a person labels; reveal: after a blind submit the model's
    # view is shown and the person may revise (stored as stage 'revealed'). Not blind: the model's view
    # shows from the start and every label is stored as 'revealed'.
    blind: bool = True
    reveal: bool = True
    questions: list[Question] = Field(default_factory=lambda: ["best", "rating", "comment"])
    rating_scale: tuple[int, int] = (1, 7)
    overlap: int | None = Field(None, ge=1, le=100)  # annotators per prompt; None = everyone labels all
    extra_on_disagreement: int = Field(0, ge=0, le=20)  # more annotators where humans split or the model disagrees
    label_run_id: int | None = None  # the generation run people label; None = the latest run
    # Cards drawn from several sources: generation runs of the study and "imported" (its imported responses),
    # mixed per prompt by storage.label_sources' rule (at most MAX_RESPONSES cards); empty = label_run_id's run.
    label_runs: list[int | Literal["imported"]] = Field(default_factory=list, max_length=MAX_RESPONSES)
    # The order a person's next item is picked in, among the least-labelled open prompts (storage.label_queue):
    # file position; "random", a uniform permutation seeded by the study; "informative", the prompts whose
    # model self-evaluations disagree most or are least certain first (label_queue.INFORMATIVE).
    queue_order: Literal["position", "random", "informative"] = "position"
    # A person whose accuracy on the gold items (storage.gold) is below this, over at least
    # storage.gold.MIN_GOLD_ANSWERS answers, is gated: exports and the agreement report leave their labels out
    # (read-time; nothing is deleted). None: no gate.
    gold_min_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    # How often a fresh pick is a gold item (unannounced; 0 = served as ordinary items, still never exported as data):
    # label_queue.next_prompt.
    gold_rate: float = Field(0.0, ge=0.0, le=1.0)
    answer_extraction: str = "none"  # none | last_number | boxed | regex:PATTERN (for majority vote, Borda)
    live_annotators: bool = False  # annotators may use the Live tab with this study (admins always may)


    @field_validator("label_runs")
    @classmethod
    def _distinct_sources(cls, v: list[int | str]) -> list[int | str]:
        twice = sorted({str(s) for s in v if v.count(s) > 1})
        if twice:
            raise ValueError(f"label_runs lists {', '.join(twice)} more than once")
        return v


class Study(BaseModel):
    id: int
    name: str
    description: str = ""
    guidelines: str = ""
    methods: list[str] = Field(default_factory=list)
    config: StudyConfig = Field(default_factory=StudyConfig)
    created_at: datetime | None = None


class SamplingSettings(BaseModel):
    """What a generation run samples with; stored on generation_run."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(4, ge=1, le=MAX_RESPONSES)
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=32768)
    seed: int | None = Field(None, ge=0, lt=2**32, description="seed base; per-sample seeds derive from it")
    top_logprobs: int = Field(5, ge=0, le=20)


class GenerationRun(BaseModel):
    id: int
    study_id: int
    engine: str
    model_id: str
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed_base: int
    top_logprobs: int
    seeds_honoured: bool | None = None
    logprob_mode: str | None = None
    kind: str = "batch"  # batch | live (the samples of one prompt added from the Live tab)
    created_at: datetime | None = None


class PromptIn(BaseModel):
    """One validated row of a prompts file."""

    model_config = ConfigDict(extra="forbid")
    external_id: str
    messages: list[ChatMessage]
    reference: str | None = None
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Prompt(BaseModel):
    id: int
    study_id: int
    external_id: str
    position: int
    messages: list[ChatMessage]
    reference: str | None = None
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TokenStats(BaseModel):
    """Per-response confidence figures from token logprobs (reference/methods.md §3)."""

    token_count: int
    mean_logprob: float | None = None
    neg_perplexity: float | None = None
    mean_topk_entropy: float | None = None
    self_certainty: float | None = None
    self_certainty_mode: Literal["exact", "topk_proxy"] | None = None
    logprob_mode: Literal["raw", "temperature_scaled"] | None = None


class ResponseIn(BaseModel):
    prompt_id: int
    run_id: int | None = None
    sample_index: int | None = None
    origin: Origin = "sampled"
    parent_id: int | None = None
    external_id: str | None = None
    text: str
    engine: str | None = None
    model_id: str | None = None
    params: dict[str, Any] | None = None
    seed: int | None = None
    finish_reason: str | None = None
    stats: TokenStats | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Response(BaseModel):
    id: int
    prompt_id: int
    run_id: int | None = None
    sample_index: int | None = None
    origin: Origin
    parent_id: int | None = None
    text: str
    engine: str | None = None
    model_id: str | None = None
    seed: int | None = None
    token_count: int | None = None
    finish_reason: str | None = None
    mean_logprob: float | None = None
    neg_perplexity: float | None = None
    mean_topk_entropy: float | None = None
    self_certainty: float | None = None
    self_certainty_mode: str | None = None
    logprob_mode: str | None = None
    # What an importer kept that has no column (e.g. a multi-turn answer's earlier turns); the column is JSON
    # text, read here as a dict.
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _json_text(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else (v if v is not None else {})


class JudgmentIn(BaseModel):
    """A verdict to store. `target_key` is derived by storage.judgments.target_key()."""

    model_config = ConfigDict(extra="forbid")
    study_id: int
    prompt_id: int
    judge_kind: JudgeKind
    judge: str
    method: str
    method_version: str | None = None
    response_id: int | None = None
    response_b_id: int | None = None
    checklist_item_id: int | None = None
    variant: str | None = None  # e.g. "s1" for the 2nd of k samples, "order:4-9" for one pairwise order
    shown_order: list[int] | None = None
    value: float | None = None
    label: str | None = None
    prob: float | None = None
    dist: dict[str, float] | None = None
    rationale: str | None = None
    stage: Stage = "blind"
    source: str = "ui"
    template_version: str | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    duration_ms: int | None = None
    idempotency_key: str = Field(min_length=8, max_length=128)

    @field_validator("judge")
    @classmethod
    def _judge_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("judge must not be empty")
        return v


class Judgment(JudgmentIn):
    id: int
    target_key: str
    created_at: datetime
    superseded_at: datetime | None = None


class Annotator(BaseModel):
    id: int
    name: str
    role: Role
    disabled: bool = False


class CallTally(BaseModel):
    """Engine calls of one kind during a job and the wall time while at least one was in flight."""

    calls: int = 0
    seconds: float = 0.0

    def per_call(self) -> float | None:
        return self.seconds / self.calls if self.calls else None


class JobFigures(BaseModel):
    reads: CallTally = Field(default_factory=CallTally)  # prefill-only passes
    generations: CallTally = Field(default_factory=CallTally)  # sampled completions


class Job(BaseModel):
    id: int
    kind: str
    study_id: int | None = None
    run_id: int | None = None
    status: JobStatus
    done: int = 0
    total: int = 0
    message: str = ""
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    engine_model: str | None = None  # "engine:model id" that ran it, once known
    figures: JobFigures | None = None

    @field_validator("figures", mode="before")
    @classmethod
    def _parse_figures(cls, v: Any) -> Any:
        return JobFigures.model_validate_json(v) if isinstance(v, str) else v
