"""Self-correction decomposition: hand-worked figures, intervals on the prompt bootstrap, bad input."""

from __future__ import annotations

import polars as pl
import pytest

from storage.analysis.bootstrap import bootstrap_ci
from storage.analysis.self_correction import FIGURES, self_correction_stats

# prompt 1: wrong -> right and right -> right; prompt 2: right -> wrong and wrong -> wrong;
# prompt 3: wrong -> right and right -> right
ATTEMPTS = pl.DataFrame({"prompt_id": [1, 1, 2, 2, 3, 3], "correct_before": [0, 1, 1, 0, 0, 1],
                         "correct_after": [1, 1, 0, 0, 1, 1]})


def test_figures_worked_by_hand() -> None:
    s = self_correction_stats(ATTEMPTS, n=200, seed=3)
    assert (s["n"], s["n_prompts"], s["i_to_c"], s["c_to_i"]) == (6, 3, 2, 1)
    est = {f: s[f]["estimate"] for f in FIGURES}
    # confidence level: of the 3 right before, 2 stay right; critique score: of the 3 wrong before, 2 get fixed
    assert est == {"accuracy_before": 3 / 6, "accuracy_after": 4 / 6, "delta": 1 / 6, "delta_i_to_c": 2 / 6,
                   "delta_c_to_i": 1 / 6, "confidence_level": 2 / 3, "critique_score": 2 / 3}
    # Yang et al.'s identity: acc_after = acc_before · CL + (1 − acc_before) · CS
    assert est["accuracy_after"] == pytest.approx(
        est["accuracy_before"] * est["confidence_level"] + (1 - est["accuracy_before"]) * est["critique_score"])
    assert est["delta"] == pytest.approx(est["delta_i_to_c"] - est["delta_c_to_i"], abs=1e-15)
    for f in FIGURES:
        assert s[f]["low"] <= s[f]["estimate"] <= s[f]["high"] and s[f]["n_valid"] == 200 and s[f]["level"] == 0.95


def test_intervals_are_the_prompt_bootstrap_of_the_rows() -> None:
    # The same draws as bootstrap_ci over the attempt rows (prompts as clusters, same n and seed).
    s = self_correction_stats(ATTEMPTS, n=300, seed=7)
    rows = ATTEMPTS.with_columns(
        fixed=(1 - pl.col("correct_before")) * pl.col("correct_after"),
        broken=pl.col("correct_before") * (1 - pl.col("correct_after")))
    by_rows = {
        "accuracy_after": lambda f: f["correct_after"].mean(),
        "delta": lambda f: f["correct_after"].mean() - f["correct_before"].mean(),
        "delta_i_to_c": lambda f: f["fixed"].mean(),
        "delta_c_to_i": lambda f: f["broken"].mean(),
    }
    for fig, fn in by_rows.items():
        ci = bootstrap_ci(rows, "prompt_id", fn, n=300, seed=7)
        assert (s[fig]["low"], s[fig]["high"]) == pytest.approx((ci["low"], ci["high"]), abs=1e-12), fig


def test_one_prompt_gives_a_zero_width_interval() -> None:
    # Every resample draws the one prompt: the interval is the estimate itself.
    s = self_correction_stats({"prompt_id": [5, 5, 5, 5], "correct_before": [True, True, False, False],
                               "correct_after": [True, False, True, True]}, n=50)
    assert s["delta_i_to_c"] == {**s["delta_i_to_c"], "estimate": 0.5, "low": 0.5, "high": 0.5}
    assert s["delta_c_to_i"]["estimate"] == s["delta_c_to_i"]["low"] == s["delta_c_to_i"]["high"] == 0.25
    assert s["delta"]["estimate"] == 0.25 and s["accuracy_after"]["estimate"] == 0.75


@pytest.mark.parametrize(("data", "message"), [
    ({"prompt_id": [1], "correct_before": [1]}, r"missing column\(s\) \['correct_after'\]"),
    ({"prompt_id": [1], "correct_before": [1], "correct_after": [2]}, r"correct_after: labels must be 0/1"),
    ({"prompt_id": [1], "correct_before": [None], "correct_after": [1]}, r"'correct_before' has 1 null"),
    ({"prompt_id": [], "correct_before": [], "correct_after": []}, r"no rows"),
])
def test_bad_input_names_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        self_correction_stats(data)


def test_confidence_and_critique_are_undefined_without_their_condition() -> None:
    # Every answer right before: no critique score (nothing to fix); resamples follow the same rule.
    s = self_correction_stats({"prompt_id": [1, 2], "correct_before": [1, 1], "correct_after": [1, 0]}, n=50)
    assert s["critique_score"]["estimate"] != s["critique_score"]["estimate"]  # nan
    assert s["critique_score"]["n_valid"] == 0
    assert s["confidence_level"]["estimate"] == 0.5 and s["confidence_level"]["n_valid"] == 50
