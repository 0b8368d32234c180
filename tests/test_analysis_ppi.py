"""storage.analysis.ppi and .planning against references written apart from the code under test:

- the answers of the `ppi-python` package (ppi_mean_ci, ppi_mean_pointestimate, classical_mean_ci) on fixed
  inputs, recorded as constants by tests/ppi_python_reference.py (the package pulls ~270 MB: not a test dep);
- PPI++ written from its variance: λ̂ found by a numerical minimisation of the estimated variance (scipy);
- a worked example by hand, the active-inference estimator's closed form under uniform serving, and its
  unbiasedness and coverage by simulation where naive averaging of the labelled items is biased.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from storage.analysis.planning import labels_for_width, ppi_labels_for_width
from storage.analysis.ppi import (
    active_mean,
    ppi_mean,
    ppi_mean_difference,
    ppi_mean_frame,
    ppi_summary,
    tuned_lambda,
)
from tests.ppi_python_reference import cases

# (case, lam) -> (estimate, low, high) from ppi-python 0.2.3 at alpha = 0.05 (tests/ppi_python_reference.py)
PPI_PYTHON = {
    ('binary', None): (0.49325262485958277, 0.447337202193834, 0.5391680475253315),
    ('binary', 0.0): (0.5, 0.4434207132961914, 0.5565792867038086),
    ('binary', 1.0): (0.4927218382568336, 0.44675753421465286, 0.5386861422990143),
    ('binary', 0.5): (0.4963609191284168, 0.44791684851554375, 0.5448049897412899),
    ('binary', 'classical'): (0.5, 0.4434207132961914, 0.5565792867038086),
    ('ratings', None): (2.8442118201065476, 2.6167767051073585, 3.0716469351057367),
    ('ratings', 0.0): (2.875, 2.6151430329344354, 3.1348569670655646),
    ('ratings', 1.0): (2.8442118201065476, 2.6167767051073585, 3.0716469351057367),
    ('ratings', 0.5): (2.859605910053274, 2.6199656780992564, 3.099246142007291),
    ('ratings', 'classical'): (2.875, 2.6151430329344354, 3.1348569670655646),
    ('tiny', None): (0.5545454545454545, 0.21677909846698012, 0.8923118106239287),
    ('tiny', 0.0): (0.6, 0.17059340550788227, 1.0294065944921176),
    ('tiny', 1.0): (0.5428571428571428, 0.207010012931597, 0.8787042727826886),
    ('tiny', 0.5): (0.5714285714285714, 0.21355114407689574, 0.929305998780247),
    ('tiny', 'classical'): (0.6, 0.17059340550788227, 1.0294065944921176),
}
CASES = {name: (y, f, fu) for name, y, f, fu in cases()}


@pytest.mark.parametrize("key", sorted(PPI_PYTHON, key=str))
def test_matches_ppi_python(key):
    name, lam = key
    y, f, fu = CASES[name]
    got = ppi_mean(y, f, fu, lam=0.0 if lam == "classical" else lam, level=0.95)
    want = PPI_PYTHON[key]
    assert max(abs(got["estimate"] - want[0]), abs(got["low"] - want[1]), abs(got["high"] - want[2])) < 1e-9


def variance_of(y, f, fu):
    """The estimated variance of θ̂_λ as a function of λ, written from its parts: labelled-set moments with
    divisor n, the predictions' variance pooled over both sets (the convention of ppi-python's λ̂)."""
    n, big_n = len(y), len(fu)
    v = np.var(np.concatenate([f, fu]), ddof=1)
    c = np.cov(y, f, ddof=0)[0, 1]
    return lambda lam: (np.var(y) - 2 * lam * c + lam ** 2 * v) / n + lam ** 2 * v / big_n


@pytest.mark.parametrize("name", sorted(CASES))
def test_tuned_lambda_minimises_the_estimated_variance(name):
    y, f, fu = CASES[name]
    best = minimize_scalar(variance_of(y, f, fu), bounds=(0, 1), method="bounded", options={"xatol": 1e-12})
    assert tuned_lambda(y, f, fu) == pytest.approx(best.x, abs=1e-7)


def test_tuned_lambda_is_clipped_to_the_unit_interval():
    # a judge on a scale 10 times too small: the unclipped optimum is far above 1
    y = np.array([1.0, 2, 3, 4, 5]); f = y / 10
    assert tuned_lambda(y, f, f[::-1].copy()) == 1.0
    assert tuned_lambda(y, -f, f) == 0.0  # negatively related judge: no correction


def test_worked_example_by_hand():
    y, f, fu = [1, 0, 1, 1], [0.9, 0.2, 0.8, 0.6], [0.7, 0.1, 0.9, 0.4, 0.5, 0.8]
    r = ppi_mean(y, f, fu, lam=1)
    # rectifier y - f = (0.1, -0.2, 0.2, 0.4): mean 0.125; mean of fu = 3.4 / 6
    assert r["estimate"] == pytest.approx(3.4 / 6 + 0.125, abs=1e-12)
    sd_r2 = np.mean(np.square(np.array([0.1, -0.2, 0.2, 0.4]) - 0.125))
    sd_i2 = np.mean(np.square(np.array(fu) - 3.4 / 6))
    se = math.sqrt(sd_r2 / 4 + sd_i2 / 6)
    assert r["se"] == pytest.approx(se, abs=1e-12)
    assert r["high"] - r["estimate"] == pytest.approx(norm.ppf(0.975) * se, abs=1e-12)


def test_summary_effective_n_gives_the_classical_width():
    y, f, fu = CASES["binary"]
    s = ppi_summary(y, f, fu)
    # a human-only interval with effective_n labels and the same sd of y is exactly as wide as PPI++
    width_classical_at_neff = 2 * norm.ppf(0.975) * np.std(y) / math.sqrt(s["effective_n"])
    assert width_classical_at_neff == pytest.approx(s["ppi_plus"]["high"] - s["ppi_plus"]["low"], rel=1e-12)
    assert s["labels_gained"] == pytest.approx(s["effective_n"] - len(y))
    assert s["effective_n"] > len(y)  # a good judge is worth labels
    assert s["classical"]["lam"] == 0.0 and s["ppi"]["lam"] == 1.0


def test_difference_of_independent_arms():
    a, b = CASES["binary"], CASES["tiny"]
    d = ppi_mean_difference(a, b)
    ra, rb = ppi_mean(*a), ppi_mean(*b)
    assert d["estimate"] == pytest.approx(ra["estimate"] - rb["estimate"], abs=1e-12)
    assert d["se"] == pytest.approx(math.hypot(ra["se"], rb["se"]), abs=1e-12)
    assert d["high"] - d["low"] == pytest.approx(2 * norm.ppf(0.975) * d["se"], abs=1e-12)


def test_frame_form_splits_on_null_human_values():
    y, f, fu = CASES["tiny"]
    t = pl.DataFrame({"human": list(y) + [None] * len(fu), "judge": list(f) + list(fu)})
    assert ppi_mean_frame(t, "human", "judge") == ppi_mean(y, f, fu)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="must pair up"):
        ppi_mean([1, 0], [0.5], [0.3])
    with pytest.raises(ValueError, match="at least 2 labelled"):
        ppi_mean([1], [0.5], [0.3])
    with pytest.raises(ValueError, match="missing or infinite"):
        ppi_mean([1, float("nan")], [0.5, 0.4], [0.3])
    with pytest.raises(ValueError, match="missing value.*on labelled items"):
        active_mean([0.1, 0.2, 0.3], [1, None, None], [True, True, False], [0.5, 0.5, 0.5])
    assert active_mean([0.1, 0.2, 0.3], [1, 0, None], [True, True, False], [0.5] * 3, lam=1)["n_labelled"] == 2
    with pytest.raises(ValueError, match="serving probabilities"):
        active_mean([0.1, 0.2], [1, 0], [True, True], [0.5, 0.0])


def test_active_mean_closed_form_under_uniform_serving():
    rng = np.random.default_rng(3)
    f = rng.uniform(size=50); y = (rng.uniform(size=50) < f).astype(float); xi = rng.uniform(size=50) < 0.3
    got = active_mean(f, y, xi, np.full(50, 0.3), lam=1)
    by_hand = f.mean() + np.sum((y - f)[xi]) / (50 * 0.3)
    assert got["estimate"] == pytest.approx(by_hand, abs=1e-12)
    z = f + xi / 0.3 * (y - f)
    assert got["se"] == pytest.approx(np.std(z) / math.sqrt(50), abs=1e-12)


def test_active_mean_tuned_lambda_minimises_its_variance():
    rng = np.random.default_rng(5)
    f = rng.uniform(size=400); y = (rng.uniform(size=400) < f).astype(float)
    pi = np.clip(1 - f, 0.1, 0.9); xi = rng.uniform(size=400) < pi
    tuned = active_mean(f, y, xi, pi)
    best = minimize_scalar(lambda lam: active_mean(f, y, xi, pi, lam=lam)["se"], bounds=(0, 1),
                           method="bounded", options={"xatol": 1e-12})
    assert tuned["lam"] == pytest.approx(best.x, abs=1e-6)


def test_active_weighting_removes_the_bias_of_non_uniform_serving():
    """Items the judge scores low are served more often; their human value is lower, so the plain mean of the
    labelled items is biased low, while the weighted estimate is unbiased and its 95% interval covers."""
    rng = np.random.default_rng(2024)
    n_pool, reps, truth_p = 600, 400, None
    covered, naive, weighted = 0, [], []
    for _ in range(reps):
        x = rng.normal(size=n_pool)
        p_true = 1 / (1 + np.exp(-x))
        y = (rng.uniform(size=n_pool) < p_true).astype(float)
        f = 1 / (1 + np.exp(-(x + rng.normal(scale=0.7, size=n_pool))))
        pi = np.clip(0.6 - 0.5 * f, 0.05, 1)
        xi = rng.uniform(size=n_pool) < pi
        truth_p = p_true.mean()
        r = active_mean(f, y, xi, pi)
        covered += r["low"] <= truth_p <= r["high"]
        naive.append(y[xi].mean() - truth_p)
        weighted.append(r["estimate"] - truth_p)
    assert abs(np.mean(weighted)) < 0.005 < abs(np.mean(naive))
    assert 0.92 <= covered / reps <= 0.98


def test_labels_for_width_meets_the_target():
    y, f, fu = CASES["binary"]
    c = ppi_mean(y, f, fu, lam=0.0)
    plan = labels_for_width(c["se"], len(y), 0.05)
    sd = np.std(y)
    z = norm.ppf(0.975)
    assert 2 * z * sd / math.sqrt(plan["n_needed"]) <= 0.05 < 2 * z * sd / math.sqrt(plan["n_needed"] - 1)
    assert labels_for_width(c["se"], len(y), 1.0)["more"] == 0


def test_ppi_labels_for_width_meets_the_target_and_knows_its_floor():
    y, f, fu = CASES["binary"]
    r = ppi_mean(y, f, fu)
    plan = ppi_labels_for_width(r, 0.05)
    z = norm.ppf(0.975)
    width = lambda n: 2 * z * math.sqrt(r["sd_rectifier"] ** 2 / n + r["sd_imputed"] ** 2 / len(fu))  # noqa: E731
    assert width(plan["n_needed"]) <= 0.05 < width(plan["n_needed"] - 1)
    assert ppi_labels_for_width(r, plan["floor"] * 0.99)["n_needed"] == math.inf
