"""storage.analysis.scores: rank correlations per prompt (every row, not only the means) against scipy, Kendall's
τ-b on anti-correlated and tied data, and best-of-N accuracy on prompts without human picks or consensus."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from storage import analysis as A


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_correlations_per_prompt_match_scipy_row_by_row(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(40):
        n = int(rng.integers(1, 7))
        truth = rng.integers(1, 5, n).astype(float)
        sign = -1 if p % 3 == 0 else 1  # some prompts anti-correlated
        score = np.round(sign * truth + rng.normal(0, 1.5, n), 0) if p % 5 else np.full(n, 2.0)
        rows += [{"pid": p, "s": float(s), "h": float(h)} for s, h in zip(score, truth)]
    df = pl.DataFrame(rows)
    got = A.rank_correlations_per_prompt(df, x="s", y="h", prompt_col="pid")
    assert got.columns == ["pid", "n", "constant", "spearman", "kendall"]
    assert got["pid"].to_list() == list(dict.fromkeys(r["pid"] for r in rows))
    for r in got.iter_rows(named=True):
        g = df.filter(pl.col("pid") == r["pid"])
        x, y = g["s"].to_numpy(), g["h"].to_numpy()
        constant = len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0
        assert (r["n"], r["constant"]) == (len(x), constant)
        if constant:
            assert r["spearman"] is None and r["kendall"] is None
        else:
            assert r["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
            assert r["kendall"] == pytest.approx(stats.kendalltau(x, y, variant="b")[0])
    pooled = A.rank_correlations(df, x="s", y="h", prompt_col="pid")
    assert pooled["n_pooled"] == df.height
    assert pooled["spearman_pooled"] == pytest.approx(stats.spearmanr(df["s"], df["h"])[0])
    assert pooled["kendall_pooled"] == pytest.approx(stats.kendalltau(df["s"], df["h"], variant="b")[0])
    used = got.filter(~pl.col("constant"))
    assert (pooled["n_prompts"], pooled["n_prompts_skipped"]) == (used.height, got.height - used.height)
    # the per-prompt frame given by the caller is used as given
    fake = got.with_columns(spearman=pl.lit(0.25), kendall=pl.lit(-0.5))
    r = A.rank_correlations(df, x="s", y="h", prompt_col="pid", per_prompt=fake)
    assert (r["spearman_mean"], r["kendall_mean"]) == (0.25, -0.5)


def test_rank_correlations_without_a_usable_prompt():
    # every prompt has one response: nothing per prompt (nan means), pooled still defined
    df = pl.DataFrame({"prompt_id": [1, 2, 3], "score": [0.1, 0.5, 0.9], "human": [1, 3, 2]})
    r = A.rank_correlations(df)
    assert math.isnan(r["spearman_mean"]) and math.isnan(r["kendall_mean"])
    assert (r["n_prompts"], r["n_prompts_skipped"], r["n_pooled"]) == (0, 3, 3)
    assert r["spearman_pooled"] == pytest.approx(0.5)  # ranks (1, 2, 3) vs (1, 3, 2): 1 − 6·2/24
    with pytest.raises(ValueError, match="scores: 1 non-finite value\\(s\\) in 'score' or 'human'"):
        A.rank_correlations_per_prompt(df.with_columns(score=pl.Series([0.1, float("nan"), 0.3])))
    with pytest.raises(ValueError, match="scores: 1 non-finite"):
        A.rank_correlations_per_prompt(df.with_columns(human=pl.Series([1.0, float("inf"), 2.0])))


def test_kendall_and_spearman_by_hand():
    # x = 1 2 3 4, y = 4 3 2 1: all 6 pairs discordant → τ = −1, ρ = −1
    assert A.kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1], method="table") == pytest.approx(-1.0)
    assert A.kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1], method="blocks") == pytest.approx(-1.0)
    assert A.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # x = 1 1 2 3, y = 1 2 2 3: pairs (12) tie in x, (13) C, (14) C, (23) tie in y, (24) C, (34) C → S = 4;
    # n0 = 6, ties tx = 1, ty = 1 → τ-b = 4 / sqrt(5 · 5) = 0.8
    for method in ("table", "blocks", "auto"):
        assert A.kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3], method=method) == pytest.approx(0.8)
    # x = 1 2 3, y = 2 1 1: (12) D, (13) D, (23) tie in y → S = −2; tx 0, ty 1 → −2 / sqrt(3 · 2)
    assert A.kendall_tau_b([1, 2, 3], [2, 1, 1]) == pytest.approx(-2 / math.sqrt(6))
    assert math.isnan(A.kendall_tau_b([1], [2])) and math.isnan(A.spearman([1], [2]))
    assert math.isnan(A.kendall_tau_b([1, 2], [3, 3], method="blocks"))
    with pytest.raises(ValueError, match="method must be 'auto', 'table' or 'blocks', got 'fast'"):
        A.kendall_tau_b([1, 2], [1, 2], method="fast")
    with pytest.raises(ValueError, match="x has 2 values but y has 1"):
        A.kendall_tau_b([1, 2], [1])
    with pytest.raises(ValueError, match="x has 2 values but y has 3"):
        A.spearman([1, 2], [1, 2, 3])


@pytest.mark.parametrize("n", [3, 17, 250])
def test_kendall_tau_b_on_anticorrelated_ties_matches_scipy(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 5, n).astype(float)
    y = np.round(-x + rng.normal(0, 1.2, n))
    ref = stats.kendalltau(x, y, variant="b")[0]
    assert A.kendall_tau_b(x, y, method="table") == pytest.approx(ref)
    assert A.kendall_tau_b(x, y, method="blocks") == pytest.approx(ref)
    assert A.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_kendall_tau_b_blocks_on_many_rows():
    # 4,500 rows: the block method compares 444 rows at a time with all rows (several blocks)
    rng = np.random.default_rng(1)
    x = rng.normal(size=4_500)
    y = x + rng.normal(size=4_500)
    assert A.kendall_tau_b(x, y, method="blocks") == pytest.approx(stats.kendalltau(x, y)[0])


def test_best_of_n_prompts_without_human_picks_or_consensus():
    # prompt 1 (3 candidates): humans 10, 10 → consensus 10; prompt 2 (2 candidates): humans 20, 21 → none;
    # prompt 3 (4 candidates): no human pick.
    # s1 picks 10, 21, 30: consensus prompts it picked on: prompt 1 (hit) → 1/1, n_no_consensus 1 (prompt 2);
    #   per human: prompt 1 2/2, prompt 2 1/2 → 0.75 over 2 prompts (prompt 3 has no human)
    # s2 picks only on prompt 3: no consensus prompt, no human prompt → n 0, accuracies null
    # random: consensus prompt 1 → 1/3; human prompts 1, 2 → (1/3 + 1/2)/2
    h = pl.DataFrame({"prompt_id": [1, 1, 2, 2], "judge": ["a", "b", "a", "b"], "response_id": [10, 10, 20, 21]})
    s = pl.DataFrame({"prompt_id": [1, 2, 3, 3], "selector": ["s1", "s1", "s1", "s2"], "response_id": [10, 21, 30, 31]})
    c = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2, 3, 3, 3, 3], "response_id": [10, 11, 12, 20, 21, 30, 31, 32, 33]})
    got = {r["selector"]: r for r in A.best_of_n_accuracy(h, s, c, majority=None).iter_rows(named=True)}
    assert list(got) == ["s1", "s2", "random"]
    assert {k: got["s1"][k] for k in ("kind", "n_consensus", "n_no_consensus", "acc_consensus", "n_prompts")} == {
        "kind": "selector", "n_consensus": 1, "n_no_consensus": 1, "acc_consensus": 1.0, "n_prompts": 2}
    assert got["s1"]["acc_human_mean"] == pytest.approx(0.75)
    assert (got["s2"]["n_consensus"], got["s2"]["n_no_consensus"], got["s2"]["n_prompts"]) == (0, 0, 0)
    assert got["s2"]["acc_consensus"] is None and got["s2"]["acc_human_mean"] is None
    assert (got["random"]["n_consensus"], got["random"]["n_no_consensus"], got["random"]["n_prompts"]) == (1, 1, 2)
    assert got["random"]["acc_consensus"] == pytest.approx(1 / 3)
    assert got["random"]["acc_human_mean"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # candidates listed twice count once
    twice = A.best_of_n_accuracy(h, s, pl.concat([c, c]), majority="s2")
    assert twice.filter(pl.col("selector") == "random")["acc_consensus"].item() == pytest.approx(1 / 3)
    assert twice.filter(pl.col("selector") == "s2")["kind"].item() == "majority"
    with pytest.raises(ValueError, match="human_picks: 1 duplicated .* one pick per human and prompt"):
        A.best_of_n_accuracy(pl.concat([h, h.head(1)]), s, c)
    with pytest.raises(ValueError, match="selector_picks: 1 duplicated .* one pick per selector and prompt"):
        A.best_of_n_accuracy(h, pl.concat([s, s.head(1)]), c)
    with pytest.raises(ValueError, match="human_picks: 1 pick\\(s\\) of a response that is not among"):
        A.best_of_n_accuracy(h.with_columns(response_id=pl.Series([10, 10, 20, 99])), s, c)


def test_best_of_n_consensus_needs_a_unique_top_pick():
    # prompt 1: 10, 10, 11, 11, 12 → two tied tops: no consensus; prompt 2: 20, 20, 21 → 20
    h = pl.DataFrame({"prompt_id": [1] * 5 + [2] * 3, "judge": list("abcde") + list("abc"),
                      "response_id": [10, 10, 11, 11, 12, 20, 20, 21]})
    s = pl.DataFrame({"prompt_id": [1, 2], "selector": "s", "response_id": [10, 21]})
    c = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "response_id": [10, 11, 12, 20, 21]})
    r = A.best_of_n_accuracy(h, s, c).row(0, named=True)
    # consensus only on prompt 2, where s missed; per human: prompt 1 2/5, prompt 2 1/3
    assert (r["n_consensus"], r["n_no_consensus"], r["acc_consensus"]) == (1, 1, 0.0)
    assert r["acc_human_mean"] == pytest.approx((2 / 5 + 1 / 3) / 2)


def test_correlations_of_a_constant_side_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("table", "blocks"):
            assert math.isnan(A.kendall_tau_b([1, 1, 1], [1, 2, 3], method=method))
            assert math.isnan(A.kendall_tau_b([1, 2, 3], [5, 5, 5], method=method))
        assert math.isnan(A.spearman([2, 2, 2], [1, 2, 3]))
