"""The report's bootstrap intervals: `_Boot` registers every interval while the sections are built and
computes them together (`BootstrapBatch`), `_CI` holds one until then, `_with_interval` turns it into the
figure's keys and `interval_text` prints them; plus the per-prompt confusion-cell statistics many
intervals are computed from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from storage.analysis.agreement import _from_confusion
from storage.analysis.bootstrap import BootstrapBatch, Pending
from storage.analysis.report.figures import LEVEL, _f, _num


# An interval from fewer than this share of the resamples is marked (`ci_partial`); below CI_MIN_SHARE it is
# withheld (null, with `ci_reason`): a metric undefined in most resamples (κ with one class, say) has no
# interval worth printing.
CI_FULL_SHARE = 0.95
CI_MIN_SHARE = 0.5


def _with_interval(fig: dict[str, Any]) -> dict[str, Any]:
    """A figure whose `ci` is still a pending _CI, with its interval: `ci`, `n_valid` (the resamples in which
    the metric was defined) and `n_resamples`, and `ci_partial` / `ci_reason` as CI_FULL_SHARE says."""
    r = fig["ci"].pending.result()
    n, valid = int(r["n_resamples"]), int(r["n_valid"])
    lo, hi = _num(r["low"]), _num(r["high"])
    out = {**fig, "ci": None if lo is None or hi is None else [lo, hi], "n_valid": valid, "n_resamples": n}
    if valid < CI_MIN_SHARE * n:
        out["ci"] = None
        out["ci_reason"] = (f"the metric is defined in only {valid} of {n} resamples (fewer than "
                            f"{CI_MIN_SHARE:.0%}): no interval")
    elif valid < CI_FULL_SHARE * n:
        out["ci_partial"] = True
    return out


def interval_text(fig: dict[str, Any] | None) -> str:
    """A figure's interval as printed: '[0.201, 0.600]', marked '† 682/1000 resamples' when built on fewer than
    95% of them, or why there is none.

    >>> interval_text({"ci": [0.2, 0.6], "n_valid": 1000, "n_resamples": 1000})
    '[0.200, 0.600]'
    >>> interval_text({"ci": [0.2, 0.6], "n_valid": 682, "n_resamples": 1000, "ci_partial": True})
    '[0.200, 0.600]† (682/1000 resamples)'
    >>> interval_text({"ci": None, "n_valid": 120, "n_resamples": 1000, "ci_reason": "..."})
    'no interval (120/1000 resamples)'
    """
    if not fig:
        return ""
    ci = fig.get("ci")
    if ci:
        text = f"[{_f(ci[0])}, {_f(ci[1])}]"
        return text + f"† ({fig['n_valid']}/{fig['n_resamples']} resamples)" if fig.get("ci_partial") else text
    if fig.get("ci_reason"):
        return f"no interval ({fig['n_valid']}/{fig['n_resamples']} resamples)"
    return ""


class _CI:
    """A figure's interval while the report is being built: every interval is computed at once by
    `_Boot.run` (one set of draws per number of prompts, see `BootstrapBatch`) and becomes [low, high] or
    null in `_jsonable`."""

    __slots__ = ("pending",)

    def __init__(self, pending: Pending) -> None:
        self.pending = pending

    def pair(self) -> list[float] | None:
        r = self.pending.result()
        lo, hi = _num(r["low"]), _num(r["high"])
        return None if lo is None or hi is None or r["n_valid"] < CI_MIN_SHARE * r["n_resamples"] else [lo, hi]


class _Boot:
    """Bootstrap settings: prompts resampled `n` times (0 = no intervals) with numpy's default_rng(seed).
    Intervals are registered while the sections are built and computed together by `run`; `section` names
    the section being built, so that an interval that fails to compute makes its section unavailable."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.section = ""
        self._batch = BootstrapBatch(n, seed, LEVEL) if n > 0 else None
        self._pending: list[tuple[str, Pending]] = []

    def _add(self, pending: Pending) -> _CI:
        self._pending.append((self.section, pending))
        return _CI(pending)

    def sums(self, per_prompt: pl.DataFrame, fn: Callable[[dict[str, np.ndarray]], np.ndarray]) -> _CI | None:
        """CI of a metric of per-prompt sums (`bootstrap_ci_from_sums`); `per_prompt` has prompt_id + numbers."""
        if self._batch is None or per_prompt.height == 0:
            return None
        return self._add(self._batch.sums(per_prompt, "prompt_id", fn))

    def sums_many(self, per_prompt: pl.DataFrame,
                  fns: Sequence[Callable[[dict[str, np.ndarray]], np.ndarray]]) -> list[_CI | None]:
        """`sums` for several metrics of the same per-prompt statistics."""
        if self._batch is None or per_prompt.height == 0:
            return [None] * len(fns)
        return [self._add(p) for p in self._batch.sums_many(per_prompt, "prompt_id", fns)]

    def weighted(self, prompt_ids: pl.Series, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _CI | None:
        """CI of a metric of rows given as weights per resample (`BootstrapBatch.weighted`), for metrics that
        are not functions of per-prompt sums (AUROC, ECE)."""
        if self._batch is None or prompt_ids.len() == 0:
            return None
        return self._add(self._batch.weighted(prompt_ids, fn))

    def run(self) -> dict[str, str]:
        """Compute every registered interval; returns {section: error} for sections whose intervals failed."""
        if self._batch is not None:
            self._batch.run()
        failed: dict[str, str] = {}
        for section, pending in self._pending:
            if pending.error is not None and section not in failed:
                failed[section] = f"{type(pending.error).__name__}: {pending.error}"
        return failed


def _ratio(num: str, den: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda t: t[num] / t[den]


def _cm_columns(k: int) -> list[str]:
    return [f"c{i}_{j}" for i in range(k) for j in range(k)]


def _cm_per_prompt(rows: pl.DataFrame, true_col: str, pred_col: str, classes: Sequence[str],
                   by: Sequence[str]) -> pl.DataFrame:
    """Per (`by`..., prompt): the confusion-matrix cells c<i>_<j> (truth class i, prediction class j)."""
    aggs = [((pl.col(true_col) == a) & (pl.col(pred_col) == b)).sum().cast(pl.Int64).alias(f"c{i}_{j}")
            for i, a in enumerate(classes) for j, b in enumerate(classes)]
    return rows.group_by(*by, "prompt_id").agg(aggs)


def _cm_metric(k: int, metric: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A metric of `_from_confusion` (accuracy, kappa, f1_macro ...) from summed confusion cells."""
    def fn(t: dict[str, np.ndarray]) -> np.ndarray:
        cm = np.stack([t[c] for c in _cm_columns(k)], axis=-1).reshape(-1, k, k)
        return _from_confusion(cm)[metric]
    return fn


def _cm_cis(boot: _Boot, pp: pl.DataFrame, k: int, metrics: Sequence[str]) -> dict[str, _CI | None]:
    return dict(zip(metrics, boot.sums_many(pp, [_cm_metric(k, m) for m in metrics])))
