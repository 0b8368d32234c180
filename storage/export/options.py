"""What an export is asked for: kind, style, pair policy (source, signal) and filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.analysis.judges import DEFAULT_THRESHOLD
from storage.export.schema import Kind, Style

Signal = Literal["auto", "best", "pairwise", "ratings", "correct", "checklist"]
IncludedOrigin = Literal["sampled", "revision", "aggregate", "reference"]
INCLUDABLE: tuple[str, ...] = ("sampled", "revision", "aggregate", "reference")
# Which human signals each kind can use, in the order `auto` tries them.
SIGNALS: dict[str, tuple[str, ...]] = {
    "dpo": ("best", "pairwise", "ratings"),
    "rm": ("best", "pairwise", "ratings"),
    "sft": ("best", "pairwise", "ratings"),
    "kto": ("correct", "checklist", "ratings"),
    "judge": ("correct",),
}
# `sampled` stands for the study's own responses: a run's samples, or the responses of an imported file.
ORIGIN_GROUPS: dict[str, tuple[str, ...]] = {"sampled": ("sampled", "imported"), "revision": ("revision",),
                                             "aggregate": ("aggregate",), "reference": ("reference",)}
ON_POLICY = ("sampled", "imported")


@dataclass(frozen=True)
class Source:
    """A parsed `--source`: human labels, one model method (self-rewarding), both agreeing, or PRE's weighted
    vote of every judge of one method (storage.export.pre)."""

    kind: Literal["human", "model", "consensus", "pre"]
    method: str | None = None
    judge: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        """
        >>> Source.parse("human"), Source.parse("model:rubric"), Source.parse("consensus:pairwise@m1")
        (Source(kind='human', method=None, judge=None), Source(kind='model', method='rubric', judge=None), \
Source(kind='consensus', method='pairwise', judge='m1'))
        >>> Source.parse("pre:pairwise")
        Source(kind='pre', method='pairwise', judge=None)
        """
        text = text.strip()
        if text == "human":
            return cls("human")
        head, sep, rest = text.partition(":")
        if head not in ("model", "consensus", "pre") or not sep or not rest.strip():
            raise ValueError(f"unknown source {text!r}: use human, model:METHOD, consensus:METHOD or pre:METHOD "
                             "(METHOD a method id, optionally METHOD@JUDGE to name the model judge)")
        method, _, judge = rest.partition("@")
        if head == "pre" and judge.strip():
            raise ValueError(f"source {text!r}: pre:METHOD is the weighted vote of every judge of METHOD, so it "
                             "names no judge")
        # Whether METHOD exists is the methods' business (backend): the export plan checks it against the
        # method facts it is given (storage.export.methods), the app's payload already on validation.
        return cls(head, method.strip(), judge.strip() or None)  # type: ignore[arg-type]

    def label(self, judge: str | None = None) -> str:
        if self.kind == "human":
            return "human"
        if self.kind == "pre":
            return f"pre:{self.method}"
        j = judge or self.judge
        return f"{self.kind}:{self.method}" + (f"@{j}" if j else "")


class ExportOptions(BaseModel):
    """Everything but the study and the output path. Defaults = `critlab export dpo` without flags."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind = "dpo"
    style: Style = "conversational"
    source: str = "human"
    signal: Signal = "auto"
    min_margin: float = Field(0.0, ge=0.0)
    min_annotators: int = Field(1, ge=1, le=1000)
    min_agreement: float = Field(0.0, ge=0.0, le=1.0)
    per_annotator: bool = False
    all_pairs: bool = False
    include_origin: list[IncludedOrigin] = Field(default_factory=lambda: ["sampled"])
    kto_threshold: float | None = None
    annotator_names: bool = False
    chat_template: str | None = None  # GGUF file or HF tokenizer directory (standard style)
    # CREAM's consistency filter: a second model judge (e.g. the previous iteration) of the source's method;
    # only pairs it ranks the same way are kept (storage.export.run.consistency_reason).
    consistent_with: str | None = None
    # How a unit's human consensus is reached: the plurality (a unique mode), or the argmax of an annotator
    # model fitted over every vote of the signal (storage.export.consensus), which weighs down people who
    # disagree with the others throughout. Categorical signals only (best, pairwise, correct).
    consensus: Literal["plurality", "dawid_skene", "mace"] = "plurality"
    # --source pre:METHOD: the seed that draws PRE's exam (default: the study id, as the report's) and the exam
    # score a judge needs to vote (storage.analysis.judges).
    pre_seed: int | None = None
    pre_threshold: float = Field(DEFAULT_THRESHOLD, gt=0.0, le=1.0)

    @field_validator("include_origin", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("include_origin")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("include at least one origin (sampled, revision, aggregate, reference)")
        return [o for o in INCLUDABLE if o in v]

    @model_validator(mode="after")
    def _consistent(self) -> ExportOptions:
        src = Source.parse(self.source)
        if self.style == "messages" and self.kind != "sft":
            raise ValueError("style 'messages' is for sft exports only; use conversational or standard")
        if self.signal != "auto" and self.signal not in SIGNALS[self.kind]:
            raise ValueError(f"signal {self.signal!r} does not fit a {self.kind} export; use "
                             f"{' / '.join(('auto', *SIGNALS[self.kind]))}")
        if src.kind == "pre" and self.kind not in ("dpo", "rm", "sft"):
            raise ValueError("--source pre:METHOD makes preference pairs or best completions: use it with dpo, rm "
                             "or sft")
        if self.kind == "kto" and src.kind != "human":
            raise ValueError("kto exports come from human labels (correct/incorrect, checklists or ratings): "
                             "use --source human")
        if self.kind == "judge" and not (src.kind == "human" or (src.kind == "model" and src.method == "critique")):
            raise ValueError("judge exports pair the model's own critiques against human labels: use --source "
                             "human (the study's critique judge) or model:critique@JUDGE to name the judge")
        if self.consensus != "plurality":
            if self.per_annotator:
                raise ValueError(f"--consensus {self.consensus} decides between annotators: --per-annotator rows "
                                 "use each person's own labels, no consensus")
            if src.kind == "model" and self.kind != "judge":
                raise ValueError(f"--consensus {self.consensus} weighs human labels: use it with --source human "
                                 "or consensus:METHOD")
            if self.signal in ("ratings", "checklist"):
                raise ValueError(f"--consensus {self.consensus} fits categorical votes (best, pairwise, correct); "
                                 f"{self.signal} use the mean / the plurality")
        if src.kind != "pre" and (self.pre_seed is not None or self.pre_threshold != DEFAULT_THRESHOLD):
            raise ValueError("--pre-seed and --pre-threshold set PRE's exam: use them with --source pre:METHOD")
        if self.all_pairs and self.kind not in ("dpo", "rm"):
            raise ValueError("--all-pairs applies to dpo and rm exports from ratings")
        if self.consistent_with is not None:
            self.consistent_with = self.consistent_with.strip()
            if not self.consistent_with:
                raise ValueError("--consistent-with needs a model judge id")
            if self.kind not in ("dpo", "rm"):
                raise ValueError("--consistent-with filters preference pairs: use it with dpo or rm exports")
            if src.kind == "pre":
                raise ValueError("--consistent-with compares two model judges; PRE's vote is already several: "
                                 "use --source model:METHOD@JUDGE with it")
            if src.kind == "human":
                raise ValueError("--consistent-with compares two model judges' scores of one method: use --source "
                                 "model:METHOD@CURRENT_JUDGE (or consensus:METHOD); to keep human pairs a model "
                                 "agrees with, use --source consensus:METHOD@JUDGE")
        return self

    @property
    def parsed_source(self) -> Source:
        return Source.parse(self.source)

    def origins(self) -> set[str]:
        return {o for g in self.include_origin for o in ORIGIN_GROUPS[g]}
