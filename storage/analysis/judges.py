"""Several model judges side by side: each generator's family from the model lineage, and the peer review of
judges (PRE, Chu et al. 2024): a seeded exam share of the human-labelled prompts, and the weighted vote of
the judges that passed it. Pure functions over frames and dicts; the report's `judges` section
(storage.analysis.report.judges_section) feeds them from the study and the export's `--source pre:METHOD`
reads the same vote."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import polars as pl

EXAM_SHARE = 0.3
DEFAULT_THRESHOLD = 0.5
PRE_JUDGE = "pre"


def family(parents: Mapping[str, str | None], model_id: str) -> str:
    """The root of a model's lineage (parent of parent ... in the `model` table); a model without a recorded
    parent is its own family. A cycle (only in a database edited by hand) stops at the first repeat.

    >>> family({"b": "a", "c": "b", "a": None}, "c"), family({}, "x")
    ('a', 'x')
    """
    seen = {model_id}
    cur = model_id
    while (p := parents.get(cur)) is not None and p not in seen:
        seen.add(p)
        cur = p
    return cur


def exam_key(seed: int, prompt_id: int) -> str:
    """The draw order of a prompt for the exam: md5 of "pre:<seed>:<prompt id>" (the queue's random order
    hashes the same way), so the exam is the same for every build of the report and every export."""
    return hashlib.md5(f"pre:{seed}:{prompt_id}".encode()).hexdigest()


def exam_size(n: int, share: float = EXAM_SHARE) -> int:
    """How many of `n` labelled prompts the exam takes: share · n rounded half up, at least one and at most
    n − 1 (both parts must be non-empty), 0 below two prompts.

    >>> [exam_size(n) for n in (0, 1, 2, 3, 4, 5, 10, 11)]
    [0, 0, 1, 1, 1, 2, 3, 3]
    """
    if n < 2:
        return 0
    return min(n - 1, max(1, int(share * n + 0.5)))


def exam_prompts(prompt_ids: Iterable[int], seed: int, share: float = EXAM_SHARE) -> set[int]:
    """The exam part of the labelled prompts: the first `exam_size` of them in `exam_key` order."""
    ids = sorted(set(prompt_ids), key=lambda p: (exam_key(seed, p), p))
    return set(ids[:exam_size(len(ids), share)])


def qualified(scores: Mapping[str, float | None], threshold: float) -> dict[str, float]:
    """The judges whose exam score is at least `threshold`, with their weight (the exam score itself).
    The threshold must be positive, so that every weight is.

    >>> qualified({"a": 0.8, "b": 0.4, "c": None, "d": 0.5}, 0.5)
    {'a': 0.8, 'd': 0.5}
    """
    if not threshold > 0:
        raise ValueError(f"the PRE threshold must be positive (weights are exam scores), got {threshold}")
    return {j: float(s) for j, s in sorted(scores.items()) if s is not None and s >= threshold}


def weighted_verdicts(votes: pl.DataFrame, weights: Mapping[str, float]) -> pl.DataFrame:
    """PRE's pairwise verdict per unit: the class (first / second / tie) with the largest summed weight of
    the qualified judges voting on it; a largest sum shared by two or three classes is a tie.
    Input: ``prompt_id, unit, judge, label`` (one combined vote per judge and unit); judges not in
    `weights` are left out. Output: ``prompt_id, unit, label, weight_first, weight_second, weight_tie,
    n_judges``.

    >>> v = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "unit": ["4-9"] * 3 + ["5-6"] * 2,
    ...                   "judge": ["a", "b", "c", "a", "b"], "label": ["first", "second", "second", "first", "tie"]})
    >>> weighted_verdicts(v, {"a": 0.9, "b": 0.6, "c": 0.5}).select("unit", "label").rows()
    [('4-9', 'second'), ('5-6', 'first')]
    """
    w = votes.filter(pl.col("judge").is_in(list(weights))).with_columns(
        w=pl.col("judge").replace_strict(dict(weights), return_dtype=pl.Float64))
    sums = w.group_by("prompt_id", "unit", maintain_order=True).agg(
        **{f"weight_{c}": pl.col("w").filter(pl.col("label") == c).sum() for c in ("first", "second", "tie")},
        n_judges=pl.len().cast(pl.Int64))
    top = pl.max_horizontal("weight_first", "weight_second", "weight_tie")
    n_top = sum((pl.col(f"weight_{c}") == top).cast(pl.Int64) for c in ("first", "second", "tie"))
    label = (pl.when(n_top > 1).then(pl.lit("tie"))
             .when(pl.col("weight_first") == top).then(pl.lit("first"))
             .when(pl.col("weight_second") == top).then(pl.lit("second")).otherwise(pl.lit("tie")))
    return sums.with_columns(label=label).select("prompt_id", "unit", "label", "weight_first", "weight_second",
                                                 "weight_tie", "n_judges").sort("prompt_id", "unit")


def weighted_scores(scores: pl.DataFrame, weights: Mapping[str, float]) -> pl.DataFrame:
    """PRE's score per response: Σ weight · score / Σ weight over the qualified judges that scored it.
    Input: ``prompt_id, response_id, judge, score``. Output: ``prompt_id, response_id, score, n_judges``.

    >>> s = pl.DataFrame({"prompt_id": 1, "response_id": [7, 7, 7], "judge": ["a", "b", "c"], "score": [1.0, 4.0, 9.0]})
    >>> weighted_scores(s, {"a": 0.5, "b": 1.0})["score"].to_list()
    [3.0]
    """
    w = scores.filter(pl.col("judge").is_in(list(weights))).with_columns(
        w=pl.col("judge").replace_strict(dict(weights), return_dtype=pl.Float64))
    return (w.group_by("prompt_id", "response_id", maintain_order=True)
            .agg(score=(pl.col("w") * pl.col("score")).sum() / pl.col("w").sum(), n_judges=pl.len().cast(pl.Int64))
            .sort("prompt_id", "response_id"))
