"""Arrow schemas of every export kind and style, the fixed `meta` struct, and the same schema as the
`dataset_info.features` YAML of a Hugging Face dataset card (so `datasets.load_dataset(DIR)` types every
column from the card instead of guessing from the first block of a JSONL file)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

Kind = Literal["dpo", "rm", "kto", "sft", "judge"]
Style = Literal["conversational", "standard", "messages"]
KINDS: tuple[str, ...] = ("dpo", "rm", "kto", "sft", "judge")
STYLES: tuple[str, ...] = ("conversational", "standard", "messages")

MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES = pa.list_(MESSAGE_TYPE)

VOTE_TYPE = pa.struct([
    pa.field("annotator", pa.string()),
    pa.field("response_id", pa.int64()),
    pa.field("label", pa.string()),
    pa.field("value", pa.float64()),
])
RATING_TYPE = pa.struct([
    pa.field("response_id", pa.int64()),
    pa.field("rating", pa.float64()),
    pa.field("n", pa.int64()),
])
SCORE_TYPE = pa.struct([
    pa.field("response_id", pa.int64()),
    pa.field("method", pa.string()),
    pa.field("judge", pa.string()),
    pa.field("variant", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("label", pa.string()),
])
ORIGIN_TYPE = pa.struct([pa.field("response_id", pa.int64()), pa.field("origin", pa.string())])

# One struct for every kind: fields that do not apply to a row are null (or empty lists), never missing.
META_TYPE = pa.struct([
    pa.field("study", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("source", pa.string()),            # human | model:METHOD@JUDGE | consensus:METHOD@JUDGE
    pa.field("signal", pa.string()),            # best | pairwise | ratings | correct | checklist | <method id>
    pa.field("prompt_id", pa.string()),         # the prompt's external id
    pa.field("prompt_db_id", pa.int64()),
    pa.field("response_ids", pa.list_(pa.int64())),  # the row's responses: chosen, rejected / completion / judged
    pa.field("chosen_response_id", pa.int64()),
    pa.field("rejected_response_id", pa.int64()),
    pa.field("origins", pa.list_(ORIGIN_TYPE)),
    pa.field("off_policy", pa.bool_()),         # a response is a revision, aggregate or reference
    pa.field("annotator", pa.string()),         # per-annotator rows: whose label; else null
    pa.field("annotators", pa.list_(pa.string())),  # everyone whose label counted for this row
    pa.field("n_annotators", pa.int64()),
    pa.field("agreement", pa.float64()),        # share of those annotators agreeing with the row's verdict
    pa.field("votes", pa.list_(VOTE_TYPE)),
    pa.field("chosen_rating", pa.float64()),
    pa.field("rejected_rating", pa.float64()),
    pa.field("ratings", pa.list_(RATING_TYPE)),  # mean human rating per response (n = raters)
    pa.field("scores", pa.list_(SCORE_TYPE)),    # model scores / verdicts behind the row
    pa.field("margin", pa.float64()),
    pa.field("margin_kind", pa.string()),        # rating_gap | vote_share_gap | score_gap | prob_gap
    pa.field("swap_consistent", pa.bool_()),     # pairwise model verdicts: both orders named the same winner
    pa.field("label", pa.bool_()),               # kto: desirable; judge: the human label (True = correct)
    pa.field("chosen_variant", pa.string()),     # judge: which sampled critique is chosen / rejected
    pa.field("rejected_variant", pa.string()),
    pa.field("shown_order", pa.list_(pa.int64())),
    pa.field("generation_run_id", pa.int64()),   # shared by the row's responses, else null
    pa.field("model_id", pa.string()),           # shared by the row's responses, else null
    pa.field("method_version", pa.string()),
    pa.field("judgment_ids", pa.list_(pa.int64())),
])
META_FIELDS: tuple[str, ...] = tuple(f.name for f in META_TYPE)


def row_schema(kind: str, style: str) -> pa.Schema:
    """The columns of one export, in order (TRL's names: `prompt`, `chosen`, `rejected`, `completion`,
    `label`, `messages`; rm adds `margin`; every kind ends with `meta`)."""
    text = pa.string() if style == "standard" else MESSAGES
    if kind in ("dpo", "judge"):
        cols = [("prompt", text), ("chosen", text), ("rejected", text)]
    elif kind == "rm":
        cols = [("prompt", text), ("chosen", text), ("rejected", text), ("margin", pa.float64())]
    elif kind == "kto":
        cols = [("prompt", text), ("completion", text), ("label", pa.bool_())]
    elif kind == "sft":
        cols = [("messages", MESSAGES)] if style == "messages" else [("prompt", text), ("completion", text)]
    else:
        raise ValueError(f"unknown export kind {kind!r}; choose from {', '.join(KINDS)}")
    return pa.schema([pa.field(n, t) for n, t in cols] + [pa.field("meta", META_TYPE)])


# -- the card's features block -----------------------------------------------------------------
_DTYPES = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}


def features_yaml(schema: pa.Schema, indent: int = 2) -> str:
    """`dataset_info.features` of a dataset card for `schema` (what `datasets.DatasetInfo._to_yaml_dict`
    writes for the same Arrow schema).

    >>> print(features_yaml(pa.schema([pa.field("prompt", MESSAGES), pa.field("label", pa.bool_())]), 0))
    - name: prompt
      list:
      - name: role
        dtype: string
      - name: content
        dtype: string
    - name: label
      dtype: bool
    """
    lines: list[str] = []
    _fields(list(schema), indent, lines)
    return "\n".join(lines)


def _fields(fields: list[pa.Field], pad: int, out: list[str]) -> None:
    for f in fields:
        out.append(" " * pad + f"- name: {f.name}")
        _type(f.type, pad + 2, out)


def _type(t: pa.DataType, pad: int, out: list[str]) -> None:
    sp = " " * pad
    if t in _DTYPES:
        out.append(f"{sp}dtype: {_DTYPES[t]}")
    elif pa.types.is_struct(t):
        out.append(f"{sp}struct:")
        _fields([t.field(i) for i in range(t.num_fields)], pad, out)
    elif pa.types.is_list(t):
        v = t.value_type
        if v in _DTYPES:
            out.append(f"{sp}list: {_DTYPES[v]}")
        elif pa.types.is_struct(v):
            out.append(f"{sp}list:")
            _fields([v.field(i) for i in range(v.num_fields)], pad, out)
        else:
            raise TypeError(f"no card dtype for {t}")
    else:
        raise TypeError(f"no card dtype for {t}")
