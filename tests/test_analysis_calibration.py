"""storage.analysis.calibration beyond the headline figures: every column of the reliability diagram, the
report's other figures (accuracy above one half, one-class data, too few predictions) and the weighted
AUROC / ECE of the bootstrap, each against a reference written here from the definition or scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from storage.analysis import calibration as C


def bins_reference(p: list[float], y: list[int], n_bins: int) -> list[tuple]:
    """Reliability bins from the definition, with plain lists: the sorted positions are cut into n_bins chunks
    whose sizes differ by at most one (larger chunks first); all predictions of one probability value go to the
    chunk holding the first (lowest) position of that value. Returns (bin, count, confidence, accuracy, p_min,
    p_max) for each non-empty chunk."""
    n = len(p)
    sizes = [n // n_bins + (1 if j < n % n_bins else 0) for j in range(n_bins)]
    starts = [sum(sizes[:j]) for j in range(n_bins)]
    members: dict[int, list[tuple[float, int]]] = {}
    below = 0  # predictions with a smaller probability = the first position of the current value
    for value in sorted(set(p)):
        chunk = max(j for j in range(n_bins) if starts[j] <= below)
        same = [(pv, yv) for pv, yv in zip(p, y) if pv == value]
        members.setdefault(chunk, []).extend(same)
        below += len(same)
    out = []
    for j in sorted(members):
        ps = [pv for pv, _ in members[j]]
        ys = [yv for _, yv in members[j]]
        out.append((j, len(ps), sum(ps) / len(ps), sum(ys) / len(ys), min(ps), max(ps)))
    return out


def ece_reference(p: list[float], y: list[int], n_bins: int) -> float:
    rows = bins_reference(p, y, n_bins)
    return sum(abs(acc - conf) for _, _, conf, acc, _, _ in rows) / len(rows)


def approx_rows(rows: list[tuple]) -> list[tuple]:
    return [tuple(pytest.approx(x) if isinstance(x, float) else x for x in r) for r in rows]


def test_reliability_bins_hand_example_with_a_tie_across_a_boundary():
    # 7 predictions, 3 bins: chunk sizes 3, 2, 2 → positions 0-2 | 3-4 | 5-6. Sorted: 0.1 0.3 0.4 0.4 0.6 0.8 0.8.
    # The run 0.4, 0.4 starts at position 2 (chunk 0), so it joins bin 0: bin 0 = {0.1, 0.3, 0.4, 0.4};
    # 0.6 at position 4 → bin 1 = {0.6}; 0.8 at 5 → bin 2 = {0.8, 0.8}.
    # bin 0: conf 1.2/4 = 0.3, labels of 0.1, 0.3, 0.4, 0.4 = 0, 1, 0, 1 → acc 0.5, p_min 0.1, p_max 0.4
    # bin 1: conf 0.6, acc 0 (label 0), p 0.6..0.6; bin 2: conf 0.8, acc 1, p 0.8..0.8
    p = [0.8, 0.4, 0.1, 0.6, 0.4, 0.3, 0.8]
    y = [1, 0, 0, 0, 1, 1, 1]
    got = C.reliability_bins(p, y, n_bins=3)
    assert got.columns == ["bin", "count", "confidence", "accuracy", "p_min", "p_max"]
    assert got.rows() == approx_rows([(0, 4, 0.3, 0.5, 0.1, 0.4), (1, 1, 0.6, 0.0, 0.6, 0.6),
                                      (2, 2, 0.8, 1.0, 0.8, 0.8)])
    assert got.rows() == approx_rows(bins_reference(p, y, 3))
    # ECE over the 3 bins used: (|0.5 − 0.3| + |0 − 0.6| + |1 − 0.8|) / 3 = 1.0 / 3
    assert C.ece(p, y, n_bins=3) == pytest.approx(1.0 / 3)
    # RMS: sqrt((0.2² + 0.6² + 0.2²) / 3) = sqrt(0.44 / 3)
    assert C.rms_calibration_error(p, y, n_bins=3) == pytest.approx(math.sqrt(0.44 / 3))


@pytest.mark.parametrize("seed,n,n_bins", [(0, 10, 10), (1, 23, 4), (2, 200, 10), (3, 997, 7), (4, 64, 1)])
def test_reliability_bins_match_the_definition(seed, n, n_bins):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 1).tolist()  # few distinct values: ties cross most boundaries
    y = (rng.random(n) < np.asarray(p)).astype(int).tolist()
    got = C.reliability_bins(p, y, n_bins=n_bins)
    assert got.rows() == approx_rows(bins_reference(p, y, n_bins))
    assert C.ece(p, y, n_bins=n_bins) == pytest.approx(ece_reference(p, y, n_bins))


def test_reliability_bins_need_enough_predictions_and_at_least_one_bin():
    assert C.reliability_bins([0.2, 0.7], [0, 1], n_bins=2).height == 2  # exactly n_bins predictions is enough
    with pytest.raises(ValueError, match="3 equal-count bins need at least 3 predictions, got 2"):
        C.reliability_bins([0.2, 0.7], [0, 1], n_bins=3)
    with pytest.raises(ValueError, match="n_bins must be at least 1, got 0"):
        C.reliability_bins([0.2, 0.7], [0, 1], n_bins=0)
    with pytest.raises(ValueError, match="prob must lie in \\[0, 1\\], got values from -0.1 to 0.5"):
        C.brier([-0.1, 0.5], [0, 1])
    with pytest.raises(ValueError, match="prob has 2 values but label has 1"):
        C.brier([0.1, 0.5], [0])
    with pytest.raises(ValueError, match="no predictions"):
        C.brier([], [])
    # the bounds themselves are probabilities
    assert C.brier([0.0, 1.0], [0, 1]) == 0.0


def test_calibration_report_figures_by_hand():
    # 5 predictions, 2 bins (sizes 3, 2): sorted 0.2 0.4 0.6 | 0.6 0.9 → the run 0.6, 0.6 starts at position 2
    # (bin 0): bin 0 = {0.2, 0.4, 0.6, 0.6} (labels 0, 1, 1, 0), bin 1 = {0.9} (label 1).
    # accuracy_above_half: prob > 0.5 are 0.6, 0.6, 0.9 with labels 1, 0, 1 → 2/3 (n_above_half 3);
    # base rate 3/5; Brier ((0.2)² + (0.6)² + (0.4)² + (0.6)² + (0.1)²)/5 = (0.04+0.36+0.16+0.36+0.01)/5 = 0.186
    # AUROC: positives 0.4, 0.6, 0.9 vs negatives 0.2, 0.6 → (1 + 0) + (1 + ½) + (1 + 1) = 4.5 of 6
    df = pl.DataFrame({"p": [0.6, 0.2, 0.9, 0.4, 0.6], "ok": [1, 0, 1, 1, 0]})
    r = C.calibration_report(df, prob_col="p", label_col="ok", n_bins=2)
    assert (r["n"], r["n_above_half"], r["n_bins_used"]) == (5, 3, 2)
    assert r["base_rate"] == pytest.approx(0.6) and r["accuracy_above_half"] == pytest.approx(2 / 3)
    assert r["brier"] == pytest.approx(0.186) and r["auroc"] == pytest.approx(0.75)
    # bins: conf (0.2+0.4+0.6+0.6)/4 = 0.45, acc 2/4 → 0.05; conf 0.9, acc 1 → 0.1; ECE 0.075
    assert r["ece"] == pytest.approx(0.075) and r["rms_ce"] == pytest.approx(math.sqrt((0.05**2 + 0.1**2) / 2))
    assert r["bins"].rows() == approx_rows([(0, 4, 0.45, 0.5, 0.2, 0.6), (1, 1, 0.9, 1.0, 0.9, 0.9)])
    # 0.5 itself is not above one half
    r = C.calibration_report({"prob": [0.5, 0.5, 0.51], "label": [1, 1, 0]}, n_bins=1)
    assert (r["n_above_half"], r["accuracy_above_half"]) == (1, 0.0)


def test_calibration_report_with_one_class_or_few_predictions():
    # all labels 1: AUROC undefined (nan), the rest defined; Brier = mean (1 − p)² = (0.81 + 0.25 + 0.04)/3
    r = C.calibration_report({"prob": [0.1, 0.5, 0.8], "label": [True, True, True]}, n_bins=3)
    assert math.isnan(r["auroc"]) and r["base_rate"] == 1.0
    assert r["brier"] == pytest.approx(1.1 / 3) and r["accuracy_above_half"] == 1.0
    # three bins of one: gaps 0.9, 0.5, 0.2 → ECE 1.6/3
    assert r["ece"] == pytest.approx(1.6 / 3) and r["n_bins_used"] == 3
    # all labels 0 and nothing above one half
    r = C.calibration_report({"prob": [0.1, 0.3], "label": [0, 0]}, n_bins=2)
    assert math.isnan(r["auroc"]) and r["base_rate"] == 0.0
    assert math.isnan(r["accuracy_above_half"]) and r["n_above_half"] == 0
    # fewer predictions than bins: the bin figures are nan, the others computed
    r = C.calibration_report({"prob": [0.2, 0.9], "label": [0, 1]}, n_bins=3)
    assert math.isnan(r["ece"]) and math.isnan(r["rms_ce"]) and r["bins"] is None and r["n_bins_used"] == 0
    assert r["auroc"] == 1.0 and r["brier"] == pytest.approx((0.04 + 0.01) / 2)
    with pytest.raises(ValueError, match="calibration data: missing column"):
        C.calibration_report({"p": [0.2]})


@pytest.mark.parametrize("seed,n", [(0, 12), (1, 80), (2, 400)])
def test_auroc_weighted_equals_sklearn_with_sample_weights(seed, n):
    rng = np.random.default_rng(seed)
    prob = np.round(rng.random(n), 1)
    label = (rng.random(n) < prob).astype(int)
    label[:2] = [0, 1]
    weights = rng.integers(0, 3, size=(30, n))
    weights[0] = 1
    weights[1] = 0
    weights[1, label == 1] = 2  # positives only: undefined
    got = C.auroc_weighted(prob, label, weights)
    for r, w in enumerate(weights):
        y = label[w > 0]
        if y.min() == y.max():
            assert math.isnan(got[r])
        else:
            assert got[r] == pytest.approx(skm.roc_auc_score(label, prob, sample_weight=w))
    assert got[0] == pytest.approx(skm.roc_auc_score(label, prob))


def test_weighted_metrics_by_groups_and_in_several_steps():
    # groups: predictions 0-2 belong to column 0, 3-5 to column 1; a row of weights counts a column that often
    prob = np.array([0.9, 0.2, 0.6, 0.4, 0.8, 0.1])
    label = np.array([1, 0, 1, 0, 1, 0])
    groups = [0, 0, 0, 1, 1, 1]
    w = np.array([[1, 1], [2, 0], [0, 3], [1, 2]])
    got = C.auroc_weighted(prob, label, w, groups)
    for r in range(4):
        sw = np.repeat(w[r], 3)
        assert got[r] == pytest.approx(skm.roc_auc_score(label, prob, sample_weight=sw))
    ece = C.ece_weighted(prob, label, w, groups, n_bins=2)
    for r in range(4):
        sw = np.repeat(w[r], 3)
        ref = ece_reference(np.repeat(prob, sw).tolist(), np.repeat(label, sw).tolist(), 2)
        assert ece[r] == pytest.approx(ref)
    # many predictions: the weights are taken a few rows at a time (2**19 cells a step)
    rng = np.random.default_rng(3)
    n = 150_000
    prob = np.round(rng.random(n), 2)
    label = (rng.random(n) < prob).astype(int)
    w = rng.integers(0, 2, size=(7, n))
    got = C.auroc_weighted(prob, label, w)
    assert got == pytest.approx([skm.roc_auc_score(label, prob, sample_weight=row) for row in w])


def test_weighted_metrics_reject_bad_weights():
    with pytest.raises(ValueError, match="weights must be non-negative"):
        C.auroc_weighted([0.1, 0.9], [0, 1], [[1, -1]])
    with pytest.raises(ValueError, match="a \\(resamples x groups\\) matrix .* got shape \\(2,\\)"):
        C.auroc_weighted([0.1, 0.9], [0, 1], [1, 1])
    with pytest.raises(ValueError, match="got shape \\(1, 1\\)"):
        C.ece_weighted([0.1, 0.9], [0, 1], [[1]], n_bins=1)
    with pytest.raises(ValueError, match="groups has 1 values for 2 predictions"):
        C.auroc_weighted([0.1, 0.9], [0, 1], [[1, 1]], groups=[0])
    with pytest.raises(ValueError, match="n_bins must be at least 1, got 0"):
        C.ece_weighted([0.1, 0.9], [0, 1], [[1, 1]], n_bins=0)
    with pytest.raises(ValueError, match="prob has 2 values but label has 1"):
        C.auroc_weighted([0.1, 0.9], [0], [[1, 1]])
    empty = C.auroc_weighted([], [], np.zeros((2, 0), dtype=int))
    assert empty.shape == (2,) and np.isnan(empty).all()


def test_undefined_figures_are_nan_without_numpy_warnings():
    # one class in a resample, empty resamples, fewer predictions than bins: nan, and no division warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc = C.auroc_weighted([0.2, 0.8], [0, 1], [[1, 0], [0, 0], [1, 1]])
        ece = C.ece_weighted([0.2, 0.8], [0, 1], [[1, 0], [0, 0], [1, 1]], n_bins=2)
    assert np.isnan(auc[:2]).all() and auc[2] == 1.0
    assert np.isnan(ece[:2]).all() and ece[2] == pytest.approx((0.2 + 0.2) / 2)


def test_weights_too_large_for_32_bits():
    # a weight of 2**31 + 5 does not fit an int32: the weighted AUROC must still count it exactly
    prob, label = [0.9, 0.2, 0.6], [1, 0, 0]
    w = np.array([[1, 2**31 + 5, 1]], dtype=np.int64)
    assert C.auroc_weighted(prob, label, w)[0] == pytest.approx(skm.roc_auc_score(label, prob, sample_weight=w[0]))
