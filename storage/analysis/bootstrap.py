"""Percentile bootstrap confidence intervals with prompts as clusters (resampled with replacement)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import frame


def _draws(n_prompts: int, n: int, seed: int) -> np.ndarray:
    """n × n_prompts indices of the prompts drawn in each resample (numpy's default_rng(seed))."""
    if n < 1:
        raise ValueError(f"the number of resamples must be at least 1, got {n}")
    if n_prompts < 1:
        raise ValueError("bootstrap needs at least one prompt")
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n, n_prompts))


def _number(x: Any) -> float:
    """A metric value as float; None (e.g. a polars mean over no rows) counts as nan."""
    return float("nan") if x is None else float(x)


def _interval(estimate: float, values: np.ndarray, level: float, n: int, seed: int) -> dict[str, Any]:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    ok = values[np.isfinite(values)]
    lo, hi = (np.quantile(ok, [(1 - level) / 2, (1 + level) / 2]) if ok.size else (np.nan, np.nan))
    return {"estimate": float(estimate), "low": float(lo), "high": float(hi), "level": level, "n_resamples": n,
            "n_valid": int(ok.size), "seed": seed}


def bootstrap_ci(df: Any, prompt_col: str, metric_fn: Callable[[pl.DataFrame], float], n: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap CI of ``metric_fn(df)`` resampling prompts (clusters) with replacement.

    Each resample draws as many prompts as there are (with replacement, numpy ``default_rng(seed)``, prompts
    in sorted order) and gathers all their rows; in the resampled frame `prompt_col` holds the DRAW index
    (0..P−1), so a prompt drawn twice counts as two distinct prompts — key units by (prompt, unit), as every
    frame in this package does. Resamples where the metric is nan or None are dropped
    (``n_valid``).

    Returns ``{"estimate" (on the full data), "low", "high", "level", "n_resamples", "n_valid", "seed"}``.

    >>> d = pl.DataFrame({"prompt_id": [1, 1, 2, 3, 3, 3], "hit": [1, 0, 1, 1, 1, 0]})
    >>> ci = bootstrap_ci(d, "prompt_id", lambda f: f["hit"].mean(), n=200, seed=0)
    >>> ci["estimate"], ci["low"] <= ci["estimate"] <= ci["high"], ci["n_valid"]
    (0.6666666666666666, True, 200)
    """
    data = frame(df, (prompt_col,), "bootstrap data")
    prompts = data[prompt_col].unique().sort()
    data = data.join(pl.DataFrame({prompt_col: prompts}).with_row_index("_p"), on=prompt_col,
                     how="left").sort("_p", maintain_order=True)
    p_idx = data["_p"].to_numpy().astype(np.int64)
    data = data.drop("_p")
    sizes = np.bincount(p_idx, minlength=prompts.len())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    draws = _draws(prompts.len(), n, seed)
    estimate = _number(metric_fn(data))
    values = np.empty(n)
    for r in range(n):  # one metric call per resample; the rows of a resample are gathered vectorised
        d = draws[r]
        counts = sizes[d]
        rows = np.repeat(starts[d] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        sample = data[rows].with_columns(pl.Series(prompt_col, np.repeat(np.arange(d.size), counts)))
        values[r] = _number(metric_fn(sample))
    return _interval(estimate, values, level, n, seed)


def bootstrap_ci_from_sums(per_prompt: Any, prompt_col: str,
                           metric_fn: Callable[[dict[str, np.ndarray]], np.ndarray], n: int = 1000,
                           seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Fully vectorised cluster bootstrap for metrics that are functions of per-prompt sums (accuracy = hits
    / n, MT-Bench agreement = agree / comparisons, ...).

    `per_prompt` has one row per prompt: `prompt_col` and numeric sufficient statistics. Each resample's
    column totals come from one matrix product (resample × prompt draw counts) @ (prompt × statistic);
    `metric_fn` maps ``{column: totals}`` (arrays, one value per resample; for the estimate, length 1) to
    metric values. Draws equal those of `bootstrap_ci` for the same prompts, `n` and `seed`.

    >>> pp = pl.DataFrame({"prompt_id": [1, 2, 3], "agree": [1, 1, 2], "total": [2, 1, 3]})
    >>> ci = bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["agree"] / t["total"], n=500)
    >>> round(ci["estimate"], 4), ci["low"] <= ci["estimate"] <= ci["high"]
    (0.6667, True)
    """
    pp = frame(per_prompt, (prompt_col,), "per-prompt statistics")
    if pp[prompt_col].n_unique() != pp.height:
        raise ValueError(f"per-prompt statistics: {prompt_col!r} must identify the rows (one row per prompt)")
    pp = pp.sort(prompt_col)
    stats = pp.drop(prompt_col)
    non_numeric = [c for c, t in stats.schema.items() if not t.is_numeric() and t != pl.Boolean]
    if non_numeric:
        raise ValueError(f"per-prompt statistics: column(s) {non_numeric} are not numeric")
    mat = stats.cast(pl.Float64).to_numpy()
    draws = _draws(pp.height, n, seed)
    weights = np.bincount((np.arange(n)[:, None] * pp.height + draws).ravel(),
                          minlength=n * pp.height).reshape(n, pp.height).astype(np.float64)
    totals = weights @ mat
    cols = stats.columns
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.asarray(metric_fn({c: mat[:, i].sum(keepdims=True) for i, c in enumerate(cols)}), dtype=float)
        values = np.asarray(metric_fn({c: totals[:, i] for i, c in enumerate(cols)}), dtype=float)
    if values.shape != (n,):
        raise ValueError(f"metric_fn must return one value per resample (shape ({n},)), got shape {values.shape}")
    return _interval(float(est.ravel()[0]), values, level, n, seed)
