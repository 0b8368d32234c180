"""storage.analysis.bradley_terry (choix at run time) against a maximum-likelihood fit written here from the
definition: the log-likelihood summed verdict by verdict (a tie = half a win each way), minimised by scipy with
the last item's strength fixed at 0, and its Hessian summed verdict by verdict, inverted in that
parametrisation and carried to centred scores."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize
from scipy.stats import kendalltau, spearmanr

from storage.analysis.bradley_terry import (
    bradley_terry,
    bradley_terry_bootstrap,
    fit_scores,
    ranking_agreement,
    votes_to_comparisons,
    win_matrix,
)
from storage.analysis.pairwise import pairwise_votes


def simulate(seed: int, k: int = 6, n: int = 300, tie_rate: float = 0.15) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    strength = rng.normal(scale=0.8, size=k)
    a = rng.integers(0, k, size=n)
    b = (a + rng.integers(1, k, size=n)) % k
    p = 1 / (1 + np.exp(strength[b] - strength[a]))
    u = rng.uniform(size=n)
    result = np.where(u < tie_rate, "tie", np.where(rng.uniform(size=n) < p, "a", "b"))
    return pl.DataFrame({"prompt_id": rng.integers(0, 40, size=n), "a": [f"m{i}" for i in a],
                         "b": [f"m{i}" for i in b], "result": result})


def reference_fit(c: pl.DataFrame, prior: float = 0.0):
    """(items, centred θ̂, centred covariance) from the definition."""
    items = sorted(set(c["a"]) | set(c["b"]))
    k = len(items)
    rows = [(items.index(a), items.index(b), {"a": 1.0, "b": 0.0, "tie": 0.5}[r])
            for a, b, r in c.select("a", "b", "result").iter_rows()]
    pairs = {tuple(sorted((i, j))) for i, j, _ in rows}
    assert prior in (0.0, 0.5)
    rows += [(i, j, 0.5) for i, j in pairs] if prior else []  # prior 0.5 = half a win each way = one virtual tie

    def full(free):
        return np.append(free, 0.0)

    def nll(free):
        t = full(free)
        return -sum(s * -np.logaddexp(0, t[j] - t[i]) + (1 - s) * -np.logaddexp(0, t[i] - t[j]) for i, j, s in rows)

    def gradient_and_hessian(t):
        g, h = np.zeros(k), np.zeros((k, k))
        for i, j, s in rows:
            p = 1 / (1 + np.exp(t[j] - t[i]))
            d = np.zeros(k); d[i], d[j] = 1, -1
            g += (p - s) * d
            h += p * (1 - p) * np.outer(d, d)
        return g, h

    t = full(minimize(nll, np.zeros(k - 1), method="BFGS").x)
    for _ in range(5):  # Newton steps on the free coordinates polish BFGS's answer to machine precision
        g, h = gradient_and_hessian(t)
        t = full(t[:-1] - np.linalg.solve(h[:-1, :-1], g[:-1]))
    g, h = gradient_and_hessian(t)
    assert np.abs(g).max() < 1e-9
    cov_free = np.linalg.inv(h[:-1, :-1])
    embed = np.vstack([np.eye(k - 1), np.zeros(k - 1)])
    centre = np.eye(k) - 1 / k
    cov = centre @ embed @ cov_free @ embed.T @ centre.T
    return items, t - t.mean(), cov


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scores_and_fisher_intervals_match_the_definition(seed):
    c = simulate(seed)
    items, theta, cov = reference_fit(c)
    got = bradley_terry(c).sort("item")
    assert got["item"].to_list() == items
    assert np.max(np.abs(got["score"].to_numpy() - theta)) < 1e-9
    assert np.max(np.abs(got["se"].to_numpy() - np.sqrt(np.diag(cov)))) < 1e-9
    assert np.allclose(got["high"] - got["score"], 1.959963984540054 * got["se"], atol=1e-12)


def test_prior_adds_virtual_ties_and_makes_a_sweep_estimable():
    c = pl.DataFrame({"a": ["x", "x", "y"], "b": ["y", "z", "z"], "result": ["a", "a", "a"]})  # x > y > z, no upsets
    with pytest.raises(ValueError, match="no maximum-likelihood scores exist"):
        bradley_terry(c)
    items, theta, cov = reference_fit(c, prior=0.5)
    got = bradley_terry(c, prior=0.5).sort("item")
    assert np.max(np.abs(got["score"].to_numpy() - theta)) < 1e-9
    assert np.max(np.abs(got["se"].to_numpy() - np.sqrt(np.diag(cov)))) < 1e-9
    assert got["wins"].to_list() == [2, 1, 0]  # counts are the real verdicts, not the virtual ones


def test_items_never_compared_across_groups_are_refused():
    c = pl.DataFrame({"a": ["x", "y", "p", "q"], "b": ["y", "x", "q", "p"], "result": ["a", "a", "a", "a"]})
    with pytest.raises(ValueError, match="2 groups never compared"):
        bradley_terry(c)


def test_ties_dropped_equal_a_fit_without_them():
    c = simulate(4)
    a = bradley_terry(c, ties="drop").sort("item")
    b = bradley_terry(c.filter(pl.col("result") != "tie")).sort("item")
    assert np.allclose(a["score"], b["score"], atol=1e-9) and np.allclose(a["se"], b["se"], atol=1e-9)
    assert (a["ties"] > 0).any()  # the dropped ties are still counted in the output


def test_bootstrap_equals_refitting_resampled_prompts_by_hand():
    c = simulate(5, k=4, n=120)
    n, seed = 25, 3
    got = bradley_terry_bootstrap(c, "prompt_id", n=n, seed=seed, prior=0.5, level=0.9).sort("item")
    prompts = sorted(set(c["prompt_id"]))
    draws = np.random.default_rng(seed).integers(0, len(prompts), size=(n, len(prompts)))
    values = []
    for d in draws:
        sample = pl.concat([c.filter(pl.col("prompt_id") == prompts[i]) for i in d])
        items, theta, _ = reference_fit(sample, prior=0.5)
        assert items == got["item"].to_list()
        values.append(theta)
    lo, hi = np.quantile(np.array(values), [0.05, 0.95], axis=0)
    assert np.max(np.abs(got["low"].to_numpy() - lo)) < 1e-9 and np.max(np.abs(got["high"].to_numpy() - hi)) < 1e-9
    assert got["n_valid"].to_list() == [n] * 4


def test_from_pairwise_judgments():
    j = pl.DataFrame({"prompt_id": [1] * 4, "judge": ["h1", "h2", "h3", "h4"], "response_id": [9, 4, 9, 4],
                      "response_b_id": [4, 9, 4, 9], "label": ["9", "4", "tie", "9"]})
    c = votes_to_comparisons(pairwise_votes(j))
    assert c.select("a", "b", "result").rows() == [(4, 9, "b"), (4, 9, "a"), (4, 9, "tie"), (4, 9, "b")]
    r = bradley_terry(c).sort("item")
    # 9 beat 4 by 2.5 wins to 1.5: θ9 − θ4 = log(2.5 / 1.5)
    assert r["score"][1] - r["score"][0] == pytest.approx(np.log(2.5 / 1.5), abs=1e-9)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="outside"):
        win_matrix(pl.DataFrame({"a": ["x"], "b": ["y"], "result": ["won"]}))
    with pytest.raises(ValueError, match="with itself"):
        win_matrix(pl.DataFrame({"a": ["x"], "b": ["x"], "result": ["a"]}))
    with pytest.raises(ValueError, match="ties must be"):
        win_matrix(pl.DataFrame({"a": ["x"], "b": ["y"], "result": ["a"]}), ties="split")
    with pytest.raises(ValueError, match="at least 2 items"):
        fit_scores(np.zeros((1, 1)))


def test_ranking_agreement_of_human_and_judge_scores_is_scipys_on_shared_items():
    c = simulate(6, k=7)
    human = bradley_terry(c)
    judge = bradley_terry(simulate(7, k=7).filter(pl.col("a") != "m6").filter(pl.col("b") != "m6"))
    got = ranking_agreement(human, judge)
    both = human.join(judge, on="item", suffix="_j")
    assert got["n_items"] == 6 == both.height
    assert got["spearman"] == pytest.approx(spearmanr(both["score"], both["score_j"]).statistic, abs=1e-12)
    assert got["kendall_tau_b"] == pytest.approx(kendalltau(both["score"], both["score_j"]).statistic, abs=1e-12)
