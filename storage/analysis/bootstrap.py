"""Percentile bootstrap confidence intervals with prompts as clusters (resampled with replacement)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from storage.analysis._frames import frame


def _draws(n_prompts: int, n: int, seed: int) -> np.ndarray:
    """n × n_prompts indices of the prompts drawn in each resample (numpy's default_rng(seed))."""
    if n < 1:
        raise ValueError(f"the number of resamples must be at least 1, got {n}")
    if n_prompts < 1:
        raise ValueError("bootstrap needs at least one prompt")
    return _integers(np.random.default_rng(seed), n_prompts, (n, n_prompts))


def _integers(rng: np.random.Generator, n_prompts: int, size: tuple[int, int]) -> np.ndarray:
    """``rng.integers(0, n_prompts, size)``: the same numbers as the default int64 draws (below 2**32 numpy draws
    both from 32-bit words), six times faster as int32."""
    dtype = np.int32 if n_prompts <= np.iinfo(np.int32).max else np.int64
    return rng.integers(0, n_prompts, size=size, dtype=dtype)


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
    metric values. Draws equal those of `bootstrap_ci` for the same prompts, `n` and `seed`. Many intervals
    at once: `BootstrapBatch`, which shares the draws between frames with the same number of prompts.

    >>> pp = pl.DataFrame({"prompt_id": [1, 2, 3], "agree": [1, 1, 2], "total": [2, 1, 3]})
    >>> ci = bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["agree"] / t["total"], n=500)
    >>> round(ci["estimate"], 4), ci["low"] <= ci["estimate"] <= ci["high"]
    (0.6667, True)
    """
    batch = BootstrapBatch(n, seed, level)
    pending = batch.sums(per_prompt, prompt_col, metric_fn)
    batch.run()
    return pending.result()


def _whole(mat: np.ndarray, n_prompts: int) -> bool:
    """Whole numbers small enough that every resample's column sums are exact (below 2**53) in any order."""
    return bool(np.isfinite(mat).all() and (mat == np.round(mat)).all()
                and (np.abs(mat).sum(axis=0).max(initial=0.0) * n_prompts < 2.0 ** 53))


class Pending:
    """An interval registered with a `BootstrapBatch`; `result()` after `BootstrapBatch.run()` gives the dict of
    `bootstrap_ci` (or raises what computing it raised)."""

    def __init__(self, n_prompts: int, metric_fn: Callable[..., np.ndarray], kind: str, data: np.ndarray,
                 columns: list[str] | None = None) -> None:
        self.n_prompts = n_prompts
        self.metric_fn = metric_fn
        self.kind = kind
        self.data = data  # sums: prompts × statistics; weighted: the prompt position of each row
        self.columns = columns
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None

    def result(self) -> dict[str, Any]:
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError("the bootstrap batch has not run yet")
        return self._result

    @property
    def error(self) -> BaseException | None:
        return self._error


# Work per block of resamples, in prompt cells: the draws and the float counts stay a few tens of MB whatever
# the number of prompts.
_BLOCK_CELLS = 4_000_000


class BootstrapBatch:
    """Many cluster-bootstrap intervals over one set of resamples (`n`, `seed`), computed together by `run()`.

    Each interval gets the same draws as `bootstrap_ci` / `bootstrap_ci_from_sums` would give it alone: the
    draws depend only on the number of prompts, `n` and `seed`. So the batch draws once per distinct number of
    prompts, counts the draws per resample and prompt block by block (never the full resamples × prompts
    matrix of indices), and gets the totals of every frame with that many prompts from one matrix product.

    - `sums(per_prompt, prompt_col, metric_fn)`: a metric of per-prompt sums (`bootstrap_ci_from_sums`).
    - `weighted(prompt_ids, metric_fn)`: a metric of rows that accepts weights: ``metric_fn(counts, prompt)``
      with ``counts`` (resamples × prompts) = how often each prompt was drawn and ``prompt`` = each row's
      column of ``counts`` returns one value per resample, equal to the metric on the resampled rows (each
      row repeated as often as its prompt was drawn; `bootstrap_ci`), e.g. `auroc_weighted`.

    >>> b = BootstrapBatch(n=200, seed=1)
    >>> pp = pl.DataFrame({"prompt_id": [1, 2, 3], "hit": [1, 0, 2], "n": [1, 2, 2]})
    >>> a = b.sums(pp, "prompt_id", lambda t: t["hit"] / t["n"])
    >>> b.run()
    >>> a.result() == bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["hit"] / t["n"], n=200, seed=1)
    True
    """

    def __init__(self, n: int = 1000, seed: int = 0, level: float = 0.95) -> None:
        if n < 1:
            raise ValueError(f"the number of resamples must be at least 1, got {n}")
        if not 0 < level < 1:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        self.n, self.seed, self.level = n, seed, level
        self._pending: list[Pending] = []

    def sums(self, per_prompt: Any, prompt_col: str,
             metric_fn: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Pending:
        return self.sums_many(per_prompt, prompt_col, [metric_fn])[0]

    def sums_many(self, per_prompt: Any, prompt_col: str,
                  metric_fns: Sequence[Callable[[dict[str, np.ndarray]], np.ndarray]]) -> list[Pending]:
        """`sums` for several metrics of the same per-prompt statistics (read and checked once)."""
        pp = frame(per_prompt, (prompt_col,), "per-prompt statistics")
        if pp[prompt_col].n_unique() != pp.height:
            raise ValueError(f"per-prompt statistics: {prompt_col!r} must identify the rows (one row per prompt)")
        if pp.height < 1:
            raise ValueError("bootstrap needs at least one prompt")
        pp = pp.sort(prompt_col)
        stats = pp.drop(prompt_col)
        non_numeric = [c for c, t in stats.schema.items() if not t.is_numeric() and t != pl.Boolean]
        if non_numeric:
            raise ValueError(f"per-prompt statistics: column(s) {non_numeric} are not numeric")
        mat = stats.cast(pl.Float64).to_numpy()
        out = [Pending(pp.height, fn, "sums", mat, stats.columns) for fn in metric_fns]
        self._pending.extend(out)
        return out

    def weighted(self, prompt_ids: Any, metric_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Pending:
        ids = prompt_ids.to_numpy() if isinstance(prompt_ids, pl.Series) else np.asarray(prompt_ids)
        if ids.size < 1:
            raise ValueError("bootstrap needs at least one prompt")
        prompts, pos = np.unique(ids, return_inverse=True)  # positions in sorted prompt order, as bootstrap_ci
        p = Pending(prompts.size, metric_fn, "weighted", pos.ravel().astype(np.int64))
        self._pending.append(p)
        return p

    def run(self) -> None:
        """Compute every pending interval (an error in one metric is kept on its `Pending`, not raised)."""
        todo = [p for p in self._pending if p._result is None and p._error is None]
        self._pending = []
        by_size: dict[int, list[Pending]] = {}
        for p in todo:
            by_size.setdefault(p.n_prompts, []).append(p)
        # The products here are skinny (a few hundred columns at most) and bound by memory traffic: a second BLAS
        # thread gains little, and on a machine with other work it spins and slows everything else (measured:
        # the 100k-prompt report took 13-15 s with two BLAS threads, 10-11 s with one, on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="blas"):
            for n_prompts in sorted(by_size):
                self._run_group(n_prompts, by_size[n_prompts])

    def _run_group(self, n_prompts: int, group: list[Pending]) -> None:
        n = self.n
        sums = [p for p in group if p.kind == "sums"]
        weighted = [p for p in group if p.kind == "weighted"]
        # Statistics of whole numbers (counts, hits) have exact sums in any order, so they share one product over
        # their distinct columns (accuracy, F1 and κ of one confusion matrix rest on the same cells). Fractional
        # ones (a Brier sum, ρ per prompt) get the product of the single-interval path, (n × prompts) @ (prompts
        # × k), as BLAS may add in another order for another shape and move the last bit of an interval.
        is_whole = [_whole(p.data, n_prompts) for p in sums]
        whole = [p for p, w in zip(sums, is_whole) if w]
        fractional = [p for p, w in zip(sums, is_whole) if not w]
        seen: dict[bytes, list[int]] = {}  # column digest → indices into `columns` with that digest
        columns: list[np.ndarray] = []
        where: dict[int, list[int]] = {}  # per request: its columns' indices in the product
        for p in whole:
            same = next((q for q in whole if q.data is p.data and id(q) in where), None)
            if same is not None:  # another metric of the same statistics (`sums_many`)
                where[id(p)] = where[id(same)]
                continue
            idx = []
            for c in p.data.T:
                key = hashlib.blake2b(c.tobytes(), digest_size=16).digest()
                hit = next((i for i in seen.get(key, []) if np.array_equal(columns[i], c)), None)
                if hit is None:
                    hit = len(columns)
                    seen.setdefault(key, []).append(hit)
                    columns.append(c)
                idx.append(hit)
            where[id(p)] = idx
        mat = np.column_stack(columns) if columns else np.zeros((n_prompts, 0))
        totals = np.empty((n, mat.shape[1]))
        full = np.zeros((n, n_prompts)) if fractional else None
        values = {id(p): np.empty(n) for p in weighted}
        failed: dict[int, BaseException] = {}
        rng = np.random.default_rng(self.seed)
        block = max(1, min(n, _BLOCK_CELLS // n_prompts))
        for start in range(0, n, block):
            rows = min(block, n - start)
            draws = _integers(rng, n_prompts, (rows, n_prompts))  # blocks of one generator equal one `_draws` call
            counts = full[start:start + rows] if full is not None else np.zeros((rows, n_prompts))
            for i in range(rows):  # a row's counts stay in the CPU cache: several times faster than a whole block
                np.add.at(counts[i], draws[i], 1.0)
            if mat.shape[1]:
                totals[start:start + rows] = counts @ mat
            for p in weighted:
                if id(p) in failed:
                    continue
                try:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        v = np.asarray(p.metric_fn(counts, p.data), dtype=float)
                    if v.shape != (rows,):
                        raise ValueError(f"metric_fn must return one value per resample (shape ({rows},)), "
                                         f"got shape {v.shape}")
                    values[id(p)][start:start + rows] = v
                except Exception as e:  # noqa: BLE001 - kept on the Pending, raised by result()
                    failed[id(p)] = e
        products: dict[int, np.ndarray] = {}  # fractional statistics shared by several metrics: one product
        for p in sums:
            try:
                if id(p) in where:
                    t = totals[:, where[id(p)]]
                else:
                    assert full is not None  # a fractional request made the full count matrix
                    if id(p.data) not in products:
                        products[id(p.data)] = full @ p.data
                    t = products[id(p.data)]
                with np.errstate(divide="ignore", invalid="ignore"):
                    est = np.asarray(p.metric_fn({c: p.data[:, i].sum(keepdims=True)
                                                  for i, c in enumerate(p.columns or [])}), dtype=float)
                    v = np.asarray(p.metric_fn({c: t[:, i] for i, c in enumerate(p.columns or [])}), dtype=float)
                if v.shape != (n,):
                    raise ValueError(f"metric_fn must return one value per resample (shape ({n},)), got shape "
                                     f"{v.shape}")
                p._result = _interval(float(est.ravel()[0]), v, self.level, n, self.seed)
            except Exception as e:  # noqa: BLE001 - kept on the Pending, raised by result()
                p._error = e
        for p in weighted:
            if id(p) in failed:
                p._error = failed[id(p)]
                continue
            try:
                with np.errstate(divide="ignore", invalid="ignore"):
                    est = np.asarray(p.metric_fn(np.ones((1, p.n_prompts)), p.data), dtype=float)
                p._result = _interval(float(est.ravel()[0]), values[id(p)], self.level, n, self.seed)
            except Exception as e:  # noqa: BLE001 - kept on the Pending, raised by result()
                p._error = e
