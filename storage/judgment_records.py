"""The critlab judgments file's records as pydantic models (one `ItemIn` per line), and how a validation
error becomes the `field`, `detail` pair of a `file:line: field '...': detail` message.

storage/import_judgments.py reads files with these; docs/formats.md ("Judgments files") lists every field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StrictBool,
    Tag,
    ValidationError,
)

from storage.fileio import kind
from storage.models import ChatMessage, HumanMethod, Stage

# The file's human `type`s are the judgment methods they are stored under.
HUMAN_TYPES = (HumanMethod.PAIRWISE, HumanMethod.RATING, HumanMethod.BEST, HumanMethod.CORRECT)

_METHOD_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _id_text(v: Any) -> Any:
    """Ids are text; a whole number is taken as its text (`3` → `"3"`)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


def _number_text(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return v


FileId = Annotated[str, BeforeValidator(_id_text), Strict(), Field(min_length=1)]
Text = Annotated[str, Strict()]
LooseText = Annotated[str, BeforeValidator(_number_text), Strict()]
Num = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Prob = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
def _nonempty(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


JudgeName = Annotated[str, Strict(), AfterValidator(_nonempty)]
MethodId = Annotated[str, Strict(), Field(min_length=1, max_length=64, pattern=_METHOD_ID.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseItem(_Strict):
    id: FileId
    text: Text
    model: LooseText | None = None
    metadata: dict[str, Any] | None = None  # e.g. a multi-turn answer's earlier turns


class _Judgment(_Strict):
    judge: JudgeName
    stage: Stage = "blind"
    rationale: Text | None = None


class HumanPairwise(_Judgment):
    judge_kind: Literal["human"]
    type: Literal["pairwise"]
    shown: list[FileId] = Field(min_length=2, max_length=2)
    winner: FileId


class HumanLikert(_Judgment):
    judge_kind: Literal["human"]
    type: Literal["likert"]
    response: FileId
    score: Num
    scale: tuple[Num, Num]


class HumanBestOfN(_Judgment):
    judge_kind: Literal["human"]
    type: Literal["best_of_n"]
    shown: list[FileId] = Field(min_length=1)
    winner: FileId


class HumanCorrect(_Judgment):
    judge_kind: Literal["human"]
    type: Literal["correct"]
    response: FileId
    value: StrictBool


class ModelPairwise(_Judgment):
    judge_kind: Literal["model"]
    type: Literal["pairwise"]
    shown: list[FileId] = Field(min_length=2, max_length=2)
    winner: FileId
    prob: dict[str, Prob] | None = None  # over the shown ids and "tie"


class ModelScore(_Judgment):
    """A model judgment of any other method on one response: a score, a probability, or both."""

    judge_kind: Literal["model"]
    type: MethodId
    response: FileId
    score: Num | None = None
    prob: Prob | None = None
    label: Text | None = None
    variant: Annotated[str, Strict(), Field(min_length=1, max_length=64)] | None = None  # e.g. "s1" of k samples
    scale: tuple[Num, Num] | None = None  # the score's [lowest, highest] when the judge rated on a scale


HumanJudgment = Annotated[HumanPairwise | HumanLikert | HumanBestOfN | HumanCorrect, Field(discriminator="type")]


def _model_tag(v: Any) -> str | None:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return "pairwise" if t == "pairwise" else "other"


def _kind_tag(v: Any) -> str | None:
    k = v.get("judge_kind") if isinstance(v, dict) else getattr(v, "judge_kind", None)
    return k if k in ("human", "model") else None


ModelJudgment = Annotated[Annotated[ModelPairwise, Tag("pairwise")] | Annotated[ModelScore, Tag("other")],
                          Discriminator(_model_tag)]
JudgmentItem = Annotated[
    Annotated[HumanJudgment, Tag("human")] | Annotated[ModelJudgment, Tag("model")],
    Discriminator(_kind_tag, custom_error_type="judge_kind",
                  custom_error_message="judge_kind must be 'human' or 'model'")]
_TAGS = {"human", "model", "other", *HUMAN_TYPES}


class ItemIn(_Strict):
    """One line of a judgments file: a prompt, its responses, and the verdicts on them."""

    item_id: FileId
    prompt: Text | None = None
    messages: list[ChatMessage] | None = None
    category: LooseText | None = None
    reference: LooseText | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    responses: list[ResponseItem] = Field(min_length=1)
    judgments: list[JudgmentItem] = Field(default_factory=list)

    def chat(self) -> list[ChatMessage]:
        """The prompt as messages (`prompt` is one user message)."""
        if self.messages is not None:
            return list(self.messages)
        return [ChatMessage(role="user", content=self.prompt or "")]


def _field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic location as `judgments[2].winner` (union tags left out).

    >>> _field_path(("judgments", 2, "human", "pairwise", "winner"))
    'judgments[2].winner'
    >>> _field_path(("messages", 0, "role"))
    'messages[0].role'
    """
    parts: list[str] = []
    skip_tags = 0
    for part in loc:
        if skip_tags and isinstance(part, str) and part in _TAGS:
            skip_tags -= 1
            continue
        skip_tags = 0
        if isinstance(part, int):
            parts.append(f"[{part}]")
            if len(parts) == 2 and parts[0] == "judgments":
                skip_tags = 2  # the judge_kind tag, then the type tag
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)


def _pydantic_problem(e: ValidationError) -> tuple[str | None, str]:
    first = e.errors(include_url=False)[0]
    field = _field_path(tuple(first["loc"])) or None
    etype, got = first["type"], first.get("input")
    if etype == "missing":
        return field, "missing"
    if etype == "extra_forbidden":
        name = str(first["loc"][-1])
        hint = " (the order the judge saw is 'shown')" if name == "order" else ""
        return field, f"unknown field{hint}"
    if etype == "judge_kind":
        where = f"{field}.judge_kind" if field else "judge_kind"
        value = got.get("judge_kind") if isinstance(got, dict) else got
        return where, "missing (must be 'human' or 'model')" if value is None else (
            f"must be 'human' or 'model', got {value!r}" if isinstance(value, str) else
            f"must be 'human' or 'model', got {kind(value)}")
    if etype == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        return f"{field}.type", (f"human judgments have type pairwise, likert, best_of_n or correct, not {tag!r} "
                                 "(model judgments may use any method id)")
    if etype == "union_tag_not_found":
        return f"{field}.type", "missing"
    detail = first["msg"]
    if etype == "value_error":
        detail = detail.removeprefix("Value error, ")
    if etype.endswith("_type") or etype in ("string_type", "bool_type", "float_type", "list_type", "dict_type"):
        detail = f"{detail}, got {kind(got)}"
    return field, detail


