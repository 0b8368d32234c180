"""Self-correction, decomposed (Kumar et al. 2024, SCoRe, arXiv 2409.12917, §6 metrics; Yang et al. 2024,
"Confidence v.s. Critique"): did revising help, and by how much did it break answers that were right?

Input: one row per attempt (an original response that was given the chance to revise) with ``prompt_id``,
``correct_before`` (the original) and ``correct_after`` (its revision; where the critique left the answer
unchanged, the caller passes the original's correctness again), each 0/1 or bool, from human labels or a
reference match. Over the n attempts:

- ``accuracy_before`` = Σ before / n, ``accuracy_after`` = Σ after / n
- ``delta`` = accuracy_after − accuracy_before
- ``delta_i_to_c`` = share of attempts incorrect before and correct after (fixed)
- ``delta_c_to_i`` = share of attempts correct before and incorrect after (broken)

so delta = delta_i_to_c − delta_c_to_i; and Yang et al.'s pair

- ``confidence_level`` = P(correct after | correct before) = (Σ before − c→i) / Σ before (keeping right answers)
- ``critique_score`` = P(correct after | incorrect before) = i→c / (n − Σ before) (fixing wrong ones)

so accuracy_after = accuracy_before · confidence_level + (1 − accuracy_before) · critique_score (each is
undefined, None, without an attempt of its condition; a resample without one is dropped, ``n_valid``). Every figure gets a percentile cluster-bootstrap interval with prompts as
clusters (`BootstrapBatch`: the draws `bootstrap_ci_from_sums` makes for the same prompts, `n`, `seed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import binary_labels, frame
from storage.analysis.bootstrap import BootstrapBatch

def _share(part: Any, whole: Any) -> Any:
    """part / whole, nan where whole is 0 (a resample without an attempt of the condition)."""
    part, whole = np.asarray(part, dtype=float), np.asarray(whole, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1.0), np.nan)


FIGURES: tuple[str, ...] = ("accuracy_before", "accuracy_after", "delta", "delta_i_to_c", "delta_c_to_i",
                            "confidence_level", "critique_score")
_OF = {
    "accuracy_before": lambda t: t["before"] / t["n"],
    "accuracy_after": lambda t: t["after"] / t["n"],
    "delta": lambda t: (t["after"] - t["before"]) / t["n"],
    "delta_i_to_c": lambda t: t["i_to_c"] / t["n"],
    "delta_c_to_i": lambda t: t["c_to_i"] / t["n"],
    "confidence_level": lambda t: _share(t["before"] - t["c_to_i"], t["before"]),
    "critique_score": lambda t: _share(t["i_to_c"], t["n"] - t["before"]),
}


def self_correction_stats(attempts: Any, *, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """The five figures with intervals and the counts behind them.

    Returns ``{"n": attempts, "n_prompts", "i_to_c": count, "c_to_i": count, <figure>: {"estimate", "low",
    "high", "level", "n_resamples", "n_valid", "seed"}, ...}``.

    >>> s = self_correction_stats({"prompt_id": [1, 1, 2], "correct_before": [0, 1, 1],
    ...                            "correct_after": [1, 1, 0]}, n=50)
    >>> s["delta"]["estimate"], s["i_to_c"], s["c_to_i"]
    (0.0, 1, 1)
    """
    what = "self-correction attempts"
    df = frame(attempts, ("prompt_id", "correct_before", "correct_after"), what)
    if df.height == 0:
        raise ValueError(f"{what}: no rows")
    before = binary_labels(df["correct_before"], f"{what}: correct_before")
    after = binary_labels(df["correct_after"], f"{what}: correct_after")
    rows = pl.DataFrame({"prompt_id": df["prompt_id"], "n": np.ones(df.height), "before": before, "after": after,
                         "i_to_c": (1 - before) * after, "c_to_i": before * (1 - after)})
    per_prompt = rows.group_by("prompt_id").agg(pl.col("n", "before", "after", "i_to_c", "c_to_i").sum())
    batch = BootstrapBatch(n, seed, level)
    pending = batch.sums_many(per_prompt, "prompt_id", [_OF[f] for f in FIGURES])
    batch.run()
    out: dict[str, Any] = {"n": df.height, "n_prompts": per_prompt.height,
                           "i_to_c": int(rows["i_to_c"].sum()), "c_to_i": int(rows["c_to_i"].sum())}
    out.update({f: p.result() for f, p in zip(FIGURES, pending)})
    return out
