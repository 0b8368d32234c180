"""storage.analysis.bias against independent references: scikit-learn's unpenalised logistic regression (a tie
as two half-weight rows, the same likelihood), a finite-difference Hessian of the log-likelihood for the
standard errors, a simulated judge with a known length slope, and self-preference counted prompt by prompt
with plain Python loops."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from storage.analysis.bias import (
    length_bias,
    length_bias_curve,
    length_feature,
    self_preference_pairs,
    self_preference_scores,
)


def simulate_pairs(seed: int, n: int = 800, slope: float = 1.5, intercept: float = 0.2,
                   tie_rate: float = 0.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    len_a = rng.integers(20, 600, size=n)
    len_b = rng.integers(20, 600, size=n)
    x = (len_a - len_b) / (len_a + len_b)
    p = 1 / (1 + np.exp(-(intercept + slope * x)))
    result = np.where(rng.uniform(size=n) < tie_rate, "tie", np.where(rng.uniform(size=n) < p, "a", "b"))
    return pl.DataFrame({"len_a": len_a, "len_b": len_b, "result": result})


def sklearn_fit(d: pl.DataFrame, scale: str) -> np.ndarray:
    x = length_feature(d["len_a"].to_numpy(), d["len_b"].to_numpy(), scale)
    res = d["result"].to_numpy()
    rows_x, rows_y, weights = [], [], []
    for xi, r in zip(x, res):
        for label, w in {"a": [(1, 1.0)], "b": [(0, 1.0)], "tie": [(1, 0.5), (0, 0.5)]}[r]:
            rows_x.append(xi); rows_y.append(label); weights.append(w)
    m = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    m.fit(np.array(rows_x)[:, None], rows_y, sample_weight=weights)
    return np.array([m.intercept_[0], m.coef_[0, 0]])


def numeric_se(d: pl.DataFrame, beta: np.ndarray, scale: str) -> np.ndarray:
    x = length_feature(d["len_a"].to_numpy(), d["len_b"].to_numpy(), scale)
    y = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[r] for r in d["result"]])

    def nll(b):
        eta = b[0] + b[1] * x
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    h, eps = np.zeros((2, 2)), 1e-4
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * eps, np.eye(2)[j] * eps
            h[i, j] = (nll(beta + e_i + e_j) - nll(beta + e_i - e_j) - nll(beta - e_i + e_j)
                       + nll(beta - e_i - e_j)) / (4 * eps * eps)
    return np.sqrt(np.diag(np.linalg.inv(h)))


@pytest.mark.parametrize("seed,scale", [(1, "relative"), (2, "relative"), (3, "log")])
def test_length_bias_matches_sklearn_and_a_numeric_hessian(seed, scale):
    d = simulate_pairs(seed)
    r = length_bias(d, scale=scale)
    want = sklearn_fit(d, scale)
    assert abs(r["intercept"] - want[0]) < 1e-8 and abs(r["slope"] - want[1]) < 1e-8
    se = numeric_se(d, np.array([r["intercept"], r["slope"]]), scale)
    assert r["intercept_se"] == pytest.approx(se[0], rel=1e-5) and r["slope_se"] == pytest.approx(se[1], rel=1e-5)
    assert r["slope_high"] - r["slope"] == pytest.approx(1.959963984540054 * r["slope_se"], rel=1e-12)
    assert r["n"] == d.height and r["n_ties"] == int((d["result"] == "tie").sum())


def test_length_bias_recovers_a_known_slope_and_finds_none_without_one():
    biased = length_bias(simulate_pairs(7, n=6000, slope=1.5))
    assert biased["slope_low"] < 1.5 < biased["slope_high"] and biased["slope_low"] > 0
    fair = length_bias(simulate_pairs(8, n=6000, slope=0.0))
    assert fair["slope_low"] < 0 < fair["slope_high"]


def test_ties_dropped_equal_a_fit_without_them():
    d = simulate_pairs(4)
    a = length_bias(d, ties="drop")
    b = length_bias(d.filter(pl.col("result") != "tie"))
    assert a["slope"] == pytest.approx(b["slope"], abs=1e-12) and a["n"] == b["n"] < d.height
    assert a["n_ties"] > 0 == b["n_ties"]


def test_curve_is_the_fitted_logistic_with_delta_method_bands():
    r = length_bias(simulate_pairs(5))
    c = length_bias_curve(r, [-0.5, 0.0, 0.5])
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    assert c["p"].to_list() == pytest.approx([sig(r["intercept"] + r["slope"] * x) for x in (-0.5, 0.0, 0.5)])
    z = 1.959963984540054
    assert c["low"][1] == pytest.approx(sig(r["intercept"] - z * r["intercept_se"]), abs=1e-12)
    assert (c["low"] < c["p"]).all() and (c["p"] < c["high"]).all()


def test_length_bias_refuses_what_has_no_answer():
    with pytest.raises(ValueError, match="perfectly separated"):
        length_bias(pl.DataFrame({"len_a": [200, 100, 300, 50], "len_b": [100, 200, 100, 100],
                                  "result": ["a", "b", "a", "b"]}))
    with pytest.raises(ValueError, match="same in every pair"):
        length_bias(pl.DataFrame({"len_a": [200, 200, 200], "len_b": [100, 100, 100], "result": ["a", "b", "a"]}))
    with pytest.raises(ValueError, match="positive"):
        length_bias(pl.DataFrame({"len_a": [0, 2, 3], "len_b": [1, 1, 1], "result": ["a", "b", "a"]}))
    with pytest.raises(ValueError, match="outside"):
        length_bias(pl.DataFrame({"len_a": [1, 2, 3], "len_b": [1, 1, 1], "result": ["a", "b", "first"]}))


def simulate_scores(seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(60):
        for g in rng.choice(["m", "x", "y", "z"], size=rng.integers(1, 5), replace=False):
            quality = rng.normal()
            rows.append((p, str(g), quality + (0.8 if g == "m" else 0.0) + rng.normal(scale=0.5),
                         quality + rng.normal(scale=0.5)))
    return pl.DataFrame(rows, schema=["prompt_id", "generator", "judge_score", "human_score"], orient="row")


def test_self_preference_scores_by_loops():
    s = simulate_scores(11)
    by_prompt = defaultdict(lambda: {"jo": [], "jx": [], "ho": [], "hx": []})
    for p, g, j, h in s.iter_rows():
        k = by_prompt[p]
        (k["jo"] if g == "m" else k["jx"]).append(j)
        (k["ho"] if g == "m" else k["hx"]).append(h)
    d = [(np.mean(k["jo"]) - np.mean(k["jx"])) - (np.mean(k["ho"]) - np.mean(k["hx"]))
         for k in by_prompt.values() if k["jo"] and k["jx"]]
    r = self_preference_scores(s, "m")
    assert r["n_prompts"] == len(d)
    assert r["self_preference"] == pytest.approx(np.mean(d), abs=1e-12)
    assert r["se"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(len(d)), abs=1e-12)
    assert r["low"] < 0.8 < r["high"]  # the simulated judge adds 0.8 to its own model's responses


def test_self_preference_pairs_by_loops():
    rng = np.random.default_rng(12)
    rows = []
    for p in range(50):
        for _ in range(3):
            a, b = rng.choice(["m", "x", "y"], size=2, replace=False)
            rows.append((p, str(a), str(b), str(rng.choice(["a", "b", "tie"])), str(rng.choice(["a", "b", "tie"]))))
    t = pl.DataFrame(rows, schema=["prompt_id", "generator_a", "generator_b", "judge_result", "human_result"],
                     orient="row")
    share = {"a": 1.0, "b": 0.0, "tie": 0.5}
    per = defaultdict(lambda: ([], []))
    for p, a, b, jr, hr in t.iter_rows():
        if (a == "m") == (b == "m"):
            continue
        own = (lambda r: share[r]) if a == "m" else (lambda r: 1 - share[r])
        per[p][0].append(own(jr)); per[p][1].append(own(hr))
    d = [np.mean(j) - np.mean(h) for j, h in per.values()]
    r = self_preference_pairs(t, "m")
    assert r["n_prompts"] == len(d)
    assert r["self_preference"] == pytest.approx(np.mean(d), abs=1e-12)
    assert r["se"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(len(d)), abs=1e-12)


def test_self_preference_needs_prompts_with_both_sides():
    s = pl.DataFrame({"prompt_id": [1, 2], "generator": ["m", "x"], "judge_score": [1.0, 2.0],
                      "human_score": [1.0, 2.0]})
    with pytest.raises(ValueError, match="at least 2 prompts with both own and other"):
        self_preference_scores(s, "m")
