"""The batched bootstrap behind the agreement report (storage.analysis.bootstrap.BootstrapBatch) and the weighted
AUROC / ECE it uses: every interval must equal the one-at-a-time computation exactly (same draws, same sums),
since the report's intervals may not move when they are computed together."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from storage.analysis import calibration as C
from storage.analysis.bootstrap import (
    BootstrapBatch,
    _draws,
    bootstrap_ci,
    bootstrap_ci_from_sums,
)


def per_prompt(rng: np.random.Generator, n_prompts: int, fractional: bool) -> pl.DataFrame:
    ids = rng.permutation(n_prompts * 3)[:n_prompts]
    hits = rng.integers(0, 4, n_prompts)
    return pl.DataFrame({"prompt_id": ids, "hit": hits, "n": hits + rng.integers(0, 3, n_prompts),
                         "err": rng.random(n_prompts) * 3 if fractional else rng.integers(0, 9, n_prompts)})


def test_draws_as_int32_equal_numpy_int64_draws():
    for n_prompts in (1, 7, 4_529, 100_000):
        assert np.array_equal(_draws(n_prompts, 30, 5),
                              np.random.default_rng(5).integers(0, n_prompts, size=(30, n_prompts)))


def test_batch_equals_one_interval_at_a_time():
    rng = np.random.default_rng(0)
    batch = BootstrapBatch(n=400, seed=3)
    cases = []
    # frames sharing a number of prompts share draws; whole-number and fractional statistics; repeated columns
    for n_prompts in (1, 2, 37, 37, 300, 5_000, 5_000):
        for fractional in (False, True):
            pp = per_prompt(rng, n_prompts, fractional)
            for fn in (lambda t: t["hit"] / t["n"], lambda t: t["err"] / (t["n"] + 1)):
                cases.append((pp, fn, batch.sums(pp, "prompt_id", fn)))
    batch.run()
    for pp, fn, pending in cases:
        assert pending.result() == bootstrap_ci_from_sums(pp, "prompt_id", fn, n=400, seed=3)
    # and the draws are the documented ones: default_rng(seed).integers over the sorted prompts
    pp, fn, pending = cases[-4]
    s = pp.sort("prompt_id")
    draws = np.random.default_rng(3).integers(0, s.height, (400, s.height))
    vals = s["hit"].to_numpy()[draws].sum(1) / s["n"].to_numpy()[draws].sum(1)
    r = pending.result()
    assert (r["low"], r["high"]) == pytest.approx(tuple(np.quantile(vals[np.isfinite(vals)], [0.025, 0.975])))


def test_batch_keeps_a_failing_metric_on_its_interval():
    pp = pl.DataFrame({"prompt_id": [1, 2, 3], "hit": [1, 0, 1]})
    batch = BootstrapBatch(n=50)
    bad = batch.sums(pp, "prompt_id", lambda t: 0.5)
    good = batch.sums(pp, "prompt_id", lambda t: t["hit"] / 1.0)
    batch.run()
    with pytest.raises(ValueError, match="one value per resample"):
        bad.result()
    assert good.result()["n_valid"] == 50
    with pytest.raises(ValueError, match="identify the rows"):
        batch.sums(pl.DataFrame({"prompt_id": [1, 1], "hit": [1, 0]}), "prompt_id", lambda t: t["hit"])


@pytest.mark.parametrize("seed,n_rows,n_prompts", [(0, 40, 9), (1, 600, 150), (2, 3_000, 700)])
def test_weighted_auroc_and_ece_equal_the_resampled_frames(seed, n_rows, n_prompts):
    rng = np.random.default_rng(seed)
    prob = np.round(rng.random(n_rows), 2)  # many ties
    label = (rng.random(n_rows) < prob).astype(np.int64)
    df = pl.DataFrame({"prompt_id": rng.integers(0, n_prompts, n_rows), "prob": prob, "label": label})

    def auc(x: pl.DataFrame) -> float:
        return C.auroc(x["prob"], x["label"]) if 0 < int(x["label"].sum()) < x.height else float("nan")

    def ece(x: pl.DataFrame) -> float:
        return C.ece(x["prob"], x["label"]) if x.height >= 10 else float("nan")
    batch = BootstrapBatch(n=200, seed=seed)
    a = batch.weighted(df["prompt_id"], lambda w, g: C.auroc_weighted(prob, label, w, g))
    e = batch.weighted(df["prompt_id"], lambda w, g: C.ece_weighted(prob, label, w, g))
    batch.run()
    assert a.result() == bootstrap_ci(df, "prompt_id", auc, n=200, seed=seed)
    assert e.result() == bootstrap_ci(df, "prompt_id", ece, n=200, seed=seed)


def test_weighted_metrics_equal_the_repeated_predictions():
    rng = np.random.default_rng(7)
    prob = np.round(rng.random(60), 1)
    label = rng.integers(0, 2, 60)
    weights = rng.integers(0, 4, size=(25, 60))
    weights[0] = 0  # nothing drawn
    weights[1] = 0
    weights[1, :3] = 1  # fewer predictions than bins
    auc, ece = C.auroc_weighted(prob, label, weights), C.ece_weighted(prob, label, weights)
    for r, w in enumerate(weights):
        p, y = np.repeat(prob, w), np.repeat(label, w)
        expect_auc = C.auroc(p, y) if 0 < y.sum() < y.size else float("nan")
        expect_ece = C.ece(p, y) if y.size >= 10 else float("nan")
        assert auc[r] == expect_auc or (np.isnan(auc[r]) and np.isnan(expect_auc))
        assert ece[r] == expect_ece or (np.isnan(ece[r]) and np.isnan(expect_ece))
