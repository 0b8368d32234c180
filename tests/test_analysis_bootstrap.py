"""storage.analysis.bootstrap against the percentile bootstrap written out here with numpy: the documented draws
(default_rng(seed).integers over the prompts in sorted order), the resampled rows, the quantiles, the
resamples left out when a metric is undefined, and the batch's block-wise path on many prompts."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from storage.analysis.bootstrap import BootstrapBatch, bootstrap_ci, bootstrap_ci_from_sums


def manual_ci(values: list[float], estimate: float, level: float) -> tuple[float, float, float, int]:
    ok = np.array([v for v in values if v is not None and np.isfinite(v)])
    lo, hi = np.quantile(ok, [(1 - level) / 2, 1 - (1 - level) / 2]) if ok.size else (math.nan, math.nan)
    return estimate, float(lo), float(hi), int(ok.size)


def test_bootstrap_ci_equals_resampling_by_hand():
    # prompts "c", "a", "b" (sorted: a b c) with 1, 3 and 2 rows
    df = pl.DataFrame({"p": ["c", "a", "a", "b", "a", "b"], "hit": [1, 0, 1, 1, 1, 0]})
    n, seed, level = 300, 7, 0.9
    draws = np.random.default_rng(seed).integers(0, 3, size=(n, 3))
    rows_of = {i: df.filter(pl.col("p") == name)["hit"].to_list() for i, name in enumerate(["a", "b", "c"])}
    values = []
    for d in draws:
        hits = [h for i in d for h in rows_of[int(i)]]
        values.append(sum(hits) / len(hits))
    got = bootstrap_ci(df, "p", lambda f: f["hit"].mean(), n=n, seed=seed, level=level)
    est, lo, hi, n_valid = manual_ci(values, 4 / 6, level)
    assert got == {"estimate": pytest.approx(est), "low": pytest.approx(lo), "high": pytest.approx(hi),
                   "level": 0.9, "n_resamples": 300, "n_valid": n_valid, "seed": 7}


def test_a_prompt_drawn_twice_is_two_prompts_in_the_resample():
    df = pl.DataFrame({"p": [10, 10, 20, 30], "x": [1.0, 2.0, 3.0, 4.0]})
    seen = []

    def metric(f: pl.DataFrame) -> float:
        seen.append((f["p"].n_unique(), f.height, sorted(f["p"].unique().to_list())))
        return float(f["x"].sum())

    bootstrap_ci(df, "p", metric, n=50, seed=1)
    full, *resamples = seen
    assert full == (3, 4, [10, 20, 30])  # the estimate sees the data as given
    draws = np.random.default_rng(1).integers(0, 3, size=(50, 3))
    sizes = np.array([2, 1, 1])
    for (n_prompts, height, ids), d in zip(resamples, draws):
        assert n_prompts == 3 and ids == [0, 1, 2] and height == int(sizes[d].sum())


def test_undefined_resamples_are_left_out():
    # the metric is undefined (nan, or None as a polars mean over no rows) whenever prompt 0 is not drawn
    df = pl.DataFrame({"p": [0, 1, 2, 3], "x": [1.0, 5.0, 2.0, 7.0]})

    def metric(f: pl.DataFrame) -> float | None:
        first = f.filter(pl.col("x") == 1.0)
        if first.height == 0:
            return None if int(f["x"].sum()) % 2 else math.nan
        return float(f["x"].mean())

    got = bootstrap_ci(df, "p", metric, n=400, seed=3, level=0.8)
    draws = np.random.default_rng(3).integers(0, 4, size=(400, 4))
    xs = df["x"].to_numpy()
    values = [float(xs[d].mean()) if (d == 0).any() else math.nan for d in draws]
    est, lo, hi, n_valid = manual_ci(values, 3.75, 0.8)
    assert 0 < n_valid < 400
    assert (got["estimate"], got["low"], got["high"], got["n_valid"]) == (est, pytest.approx(lo), pytest.approx(hi),
                                                                         n_valid)
    # nothing defined at all: no interval
    none = bootstrap_ci(df, "p", lambda f: None, n=20)
    assert math.isnan(none["estimate"]) and math.isnan(none["low"]) and math.isnan(none["high"])
    assert none["n_valid"] == 0


def test_bootstrap_arguments_are_checked():
    df = pl.DataFrame({"p": [1, 2], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="the number of resamples must be at least 1, got 0"):
        bootstrap_ci(df, "p", lambda f: 1.0, n=0)
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"level must lie strictly between 0 and 1, got {level}"):
            bootstrap_ci(df, "p", lambda f: 1.0, n=5, level=level)
        with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
            BootstrapBatch(n=5, level=level)
    with pytest.raises(ValueError, match="bootstrap needs at least one prompt"):
        bootstrap_ci(df.head(0), "p", lambda f: 1.0, n=5)
    with pytest.raises(ValueError, match="the number of resamples must be at least 1, got -1"):
        BootstrapBatch(n=-1)
    assert bootstrap_ci(df, "p", lambda f: 1.0, n=1)["n_valid"] == 1


@pytest.mark.parametrize("n,n_prompts", [(1000, 5_000), (30, 200_000)])
def test_batch_on_many_prompts_equals_numpy(n, n_prompts):
    # several blocks of resamples (4M prompt cells a block): whole-number and fractional statistics, and a
    # weighted metric, each against the draws and sums done here with numpy
    rng = np.random.default_rng(5)
    ids = rng.permutation(n_prompts * 2)[:n_prompts]
    hit = rng.integers(0, 3, n_prompts)
    tot = hit + rng.integers(0, 3, n_prompts) + 1
    err = rng.random(n_prompts)
    pp = pl.DataFrame({"prompt_id": ids, "hit": hit, "n": tot, "err": err})
    batch = BootstrapBatch(n=n, seed=11, level=0.9)
    acc, mean_err = batch.sums_many(pp, "prompt_id", [lambda t: t["hit"] / t["n"], lambda t: t["err"] / t["n"]])
    w = batch.weighted(pl.Series(ids), lambda counts, g: (counts[:, g] * hit).sum(axis=1) / counts[:, g].sum(axis=1))
    batch.run()
    order = np.argsort(ids)
    draws = np.random.default_rng(11).integers(0, n_prompts, size=(n, n_prompts))
    h, t, e = hit[order][draws].sum(1), tot[order][draws].sum(1), err[order][draws].sum(1)
    for pending, values, estimate in ((acc, h / t, hit.sum() / tot.sum()), (mean_err, e / t, err.sum() / tot.sum()),
                                      (w, h / draws.shape[1], hit.mean())):
        r = pending.result()
        lo, hi = np.quantile(values, [0.05, 0.95])
        assert (r["estimate"], r["low"], r["high"]) == pytest.approx((estimate, lo, hi))
        assert (r["n_valid"], r["n_resamples"], r["level"], r["seed"]) == (n, n, 0.9, 11)


def test_batch_errors_stay_with_their_interval():
    pp = pl.DataFrame({"prompt_id": [1, 2, 3], "hit": [1, 0, 1], "ok": [True, False, True]})
    batch = BootstrapBatch(n=40, seed=2)
    pending = batch.sums(pp, "prompt_id", lambda t: t["hit"] / 1.0)
    with pytest.raises(RuntimeError, match="the bootstrap batch has not run yet"):
        pending.result()
    shape = batch.weighted([1, 2, 3], lambda counts, g: np.zeros(3))
    boom = batch.weighted([1, 2, 3], lambda counts, g: 1 / 0)
    good = batch.weighted([3, 1, 2, 2], lambda counts, g: counts[:, g].sum(axis=1))
    booleans = batch.sums(pp, "prompt_id", lambda t: t["ok"] / 3)
    batch.run()
    assert pending.error is None and pending.result()["n_valid"] == 40
    with pytest.raises(ValueError, match="metric_fn must return one value per resample \\(shape \\(40,\\)\\), got shape "
                                         "\\(3,\\)"):
        shape.result()
    assert isinstance(boom.error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        boom.result()
    # 4 rows over 3 prompts: every resample draws 3 prompts, the row count depends on how often prompt 2 is drawn
    draws = np.random.default_rng(2).integers(0, 3, size=(40, 3))
    rows = np.array([1, 2, 1])[draws].sum(1)
    r = good.result()
    assert r["estimate"] == 4.0 and (r["low"], r["high"]) == pytest.approx(tuple(np.quantile(rows, [0.025, 0.975])))
    # booleans count as 0/1: the share of prompts with ok
    oks = np.array([1, 0, 1])[draws].sum(1) / 3
    assert booleans.result()["low"] == pytest.approx(np.quantile(oks, 0.025))
    # running again does nothing more; a new request after a run is computed by the next run
    batch.run()
    later = batch.sums(pp, "prompt_id", lambda t: t["hit"] / 1.0)
    batch.run()
    assert later.result() == pending.result()
    with pytest.raises(ValueError, match="per-prompt statistics: column\\(s\\) \\['name'\\] are not numeric"):
        batch.sums(pp.with_columns(name=pl.lit("x")), "prompt_id", lambda t: t["hit"])
    with pytest.raises(ValueError, match="bootstrap needs at least one prompt"):
        batch.sums(pp.head(0), "prompt_id", lambda t: t["hit"])
    with pytest.raises(ValueError, match="bootstrap needs at least one prompt"):
        batch.weighted(np.array([], dtype=int), lambda counts, g: counts[:, 0])
    with pytest.raises(ValueError, match="per-prompt statistics: missing column"):
        batch.sums(pp, "pid", lambda t: t["hit"])


def test_sums_interval_by_hand_on_two_prompts():
    # two prompts with (agree, n) = (1, 1) and (0, 1); n = 5, seed 0: a resample draws two prompts, its rate is
    # the share of draws of the first prompt; the estimate is 1/2
    pp = pl.DataFrame({"prompt_id": [2, 1], "agree": [0, 1], "n": [1, 1]})
    r = bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["agree"] / t["n"], n=5, seed=0, level=0.5)
    draws = np.random.default_rng(0).integers(0, 2, size=(5, 2))
    rates = (draws == 0).mean(axis=1)  # prompt 1 (agree 1) is position 0 in sorted order
    assert r["estimate"] == 0.5
    assert (r["low"], r["high"]) == pytest.approx(tuple(np.quantile(rates, [0.25, 0.75])))


def test_metrics_that_divide_by_zero_give_undefined_resamples_without_warnings():
    # a metric may divide by a resample's zero total: inf / nan values are left out, and numpy stays quiet
    pp = pl.DataFrame({"prompt_id": [1, 2, 3], "hit": [1, 0, 0], "n": [1, 0, 0]})
    batch = BootstrapBatch(n=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sums = batch.sums(pp, "prompt_id", lambda t: t["hit"] / t["n"])
        weighted = batch.weighted([1, 2, 3], lambda counts, g: counts[:, 0] / (counts[:, 0] * 0.0))
        batch.run()
    assert sums.error is None and weighted.error is None
    draws = np.random.default_rng(4).integers(0, 3, size=(200, 3))
    assert sums.result()["n_valid"] == int((draws == 0).any(axis=1).sum())  # defined when prompt 1 is drawn
    assert sums.result()["low"] == 1.0 and weighted.result()["n_valid"] == 0


def test_1000_resamples_by_default():
    pp = pl.DataFrame({"prompt_id": [1, 2], "hit": [1, 0]})
    assert bootstrap_ci(pp, "prompt_id", lambda f: f["hit"].mean())["n_resamples"] == 1000
    assert bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["hit"] / 2)["n_resamples"] == 1000
    assert BootstrapBatch().n == 1000 and BootstrapBatch().level == 0.95 and BootstrapBatch().seed == 0
