"""Pair policies: which responses become chosen / rejected (dpo, rm), the best-of-N completion (sft), the
labelled completion (kto) or the chosen / rejected critique (judge), from one chunk of prompts.

Every policy yields `Item`s, or a skip reason (a string) for each unit it could not use, so the exporter
counts kept and skipped rows by reason. The units: a prompt (best-pick consensus, best vs worst ratings,
model scores), a response pair (pairwise votes, all-pairs ratings, pairwise model verdicts), a
(prompt, annotator) with `per_annotator`, a response (kto, judge).

Human consensus = plurality with a unique mode over the current blind labels (`storage.analysis`'s rule);
ratings use the mean. docs/formats.md ("Preference data exports") states every rule.

Here: `items`, which picks the policy for a chunk. `base` holds what the policies share (Item, Ctx, the
best-pick rule), `human` the policies over human labels, `model` those over model verdicts (judge,
self-rewarding, consensus).
"""

from __future__ import annotations

from collections.abc import Callable

from storage.export.data import Chunk, Human, PromptRow
from storage.export.policies.base import Ctx, Item, Out, pick_rejected
from storage.export.policies.human import (
    best_pairs,
    best_sft,
    kto_items,
    pairwise_pairs,
    pairwise_sft,
    ratings_pairs,
    ratings_sft,
)
from storage.export.policies.model import judge_items, model_agrees, model_pairs, model_sft, model_view, ModelView

__all__ = ["Ctx", "Item", "ModelView", "Out", "items", "model_agrees", "model_view", "pick_rejected"]

HumanPolicy = Callable[[PromptRow, Human, Chunk, Ctx], Out]
HUMAN_POLICIES: dict[tuple[str, str], HumanPolicy] = {
    ("pair", "best"): best_pairs, ("pair", "pairwise"): pairwise_pairs, ("pair", "ratings"): ratings_pairs,
    ("sft", "best"): best_sft, ("sft", "pairwise"): pairwise_sft, ("sft", "ratings"): ratings_sft,
}


def items(chunk: Chunk, c: Ctx, source_kind: str) -> Out:
    """Every item and skip reason of one chunk, in prompt order. With a consensus source these are the
    human items; the exporter checks them against the model (`model_agrees`) after the human filters."""
    shape = "sft" if c.kind == "sft" else "pair"
    for p in chunk.prompts:
        h = chunk.human.get(p.id)
        if c.kind == "judge":
            yield from judge_items(p, h, chunk, c)
        elif c.kind == "kto":
            if h is not None:
                yield from kto_items(p, h, chunk, c)
        elif source_kind in ("model", "pre"):  # PRE's vote is read as one model's verdicts
            yield from (model_sft if shape == "sft" else model_pairs)(p, chunk, c)
        elif h is not None:
            yield from HUMAN_POLICIES[(shape, c.signal)](p, h, chunk, c)
