"""Probabilities against binary human labels: AUROC, Brier, ECE over equal-count bins, reliability diagram.

Kadavath et al. 2022 (arXiv 2207.05221), Appendix A: sort the predictions, split them into 10 equal-count
bins, ECE = (1/B) Σ_b |acc_b − conf_b| — the UNWEIGHTED mean over bins (with equal-count bins the bin weights
are equal up to one prediction), RMS-CE = sqrt((1/B) Σ_b (acc_b − conf_b)²).

Ties: predictions are sorted by probability only, and a run of tied probabilities goes wholly into the bin of
its first element, so no bin boundary splits equal probabilities (splitting them would sort the run's
negatives and positives into different bins by nothing but their label). Bins left empty by that are dropped;
B is the number of bins actually used (``n_bins_used`` in the report).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import as_float_array, average_ranks, binary_labels, frame


def _inputs(prob: Any, label: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_float_array(prob, "prob")
    y = binary_labels(label, "label")
    if p.size != y.size:
        raise ValueError(f"prob has {p.size} values but label has {y.size}")
    if p.size == 0:
        raise ValueError("no predictions")
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"prob must lie in [0, 1], got values from {p.min()} to {p.max()}")
    return p, y


def auroc(prob: Any, label: Any) -> float:
    """Area under the ROC curve of `prob` separating label 1 from 0; tied scores count one half (the
    Mann–Whitney statistic on average ranks, equal to ``sklearn.metrics.roc_auc_score``). Raises when only
    one class is present (AUROC is undefined), as sklearn does. Any real score works, not only probabilities.

    >>> # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 → ½) (0.4>0.1) → 3.5/4
    >>> auroc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0])
    0.875
    """
    p = as_float_array(prob, "prob")
    y = binary_labels(label, "label")
    if p.size != y.size:
        raise ValueError(f"prob has {p.size} values but label has {y.size}")
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {int(n_pos)} positive and {int(n_neg)} negative label(s)")
    ranks = average_ranks(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(prob: Any, label: Any) -> float:
    """Brier score: mean squared difference between the probability and the 0/1 label.

    >>> round(brier([0.9, 0.2], [1, 1]), 6)   # (0.01 + 0.64) / 2
    0.325
    """
    p, y = _inputs(prob, label)
    return float(np.mean((p - y) ** 2))


def reliability_bins(prob: Any, label: Any, n_bins: int = 10) -> pl.DataFrame:
    """Equal-count bins for a reliability diagram: predictions sorted by probability, split into `n_bins`
    consecutive bins whose sizes differ by at most one (the first ``n mod n_bins`` bins hold one more, as
    ``numpy.array_split``), except that a run of tied probabilities goes wholly into the bin of its first
    element; bins left empty are dropped (see the module docstring).

    Returns per bin used: ``bin`` (its equal-count index), ``count, confidence`` (mean probability),
    ``accuracy`` (share of label 1), ``p_min, p_max``.

    >>> reliability_bins([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1], n_bins=2).rows()
    [(0, 2, 0.15000000000000002, 0.5, 0.1, 0.2), (1, 2, 0.8, 1.0, 0.7, 0.9)]
    >>> reliability_bins([0.5] * 4, [0, 1, 0, 1], n_bins=2).rows()   # one tied run: one bin, not 0/0 | 1/1
    [(0, 4, 0.5, 0.5, 0.5, 0.5)]
    """
    p, y = _inputs(prob, label)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if p.size < n_bins:
        raise ValueError(f"{n_bins} equal-count bins need at least {n_bins} predictions, got {p.size}")
    order = np.argsort(p, kind="stable")
    p, y = p[order], y[order]
    b = _tie_bins(p, n_bins)
    count = np.bincount(b, minlength=n_bins)
    used = np.flatnonzero(count)
    first = np.searchsorted(b, used, side="left")  # b never decreases along the sorted predictions
    last = np.searchsorted(b, used, side="right") - 1
    return pl.DataFrame({
        "bin": used.astype(np.int64), "count": count[used].astype(np.int64),
        "confidence": np.bincount(b, weights=p, minlength=n_bins)[used] / count[used],
        "accuracy": np.bincount(b, weights=y, minlength=n_bins)[used] / count[used],
        "p_min": p[first], "p_max": p[last]})


def _tie_bins(sorted_p: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each sorted prediction: its equal-count bin, but a run of tied probabilities in the bin of
    the run's first element.

    >>> _tie_bins(np.array([0.2, 0.5, 0.5, 0.5, 0.5, 0.9]), 3).tolist()  # positions in bins 0 0 1 1 2 2
    [0, 0, 0, 0, 0, 2]
    """
    b, _ = _bin_of_position(sorted_p.size, n_bins)
    new_run = np.empty(sorted_p.size, dtype=bool)
    new_run[:1] = True
    new_run[1:] = sorted_p[1:] != sorted_p[:-1]
    return b[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]


def _bin_of_position(n: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The equal-count bin of each of n sorted positions (the first ``n mod n_bins`` bins one larger, as
    ``numpy.array_split``) and the bin sizes."""
    q, r = divmod(n, n_bins)
    sizes = np.full(n_bins, q)
    sizes[:r] += 1
    return np.repeat(np.arange(n_bins), sizes), sizes


def _mean_abs_gap(accuracy: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Mean over bins of |accuracy − confidence| per row of (rows × bins) arrays, added bin by bin in order:
    the summation of polars' mean, which computed these figures before, so the values keep their last bit."""
    gap = np.abs(np.atleast_2d(accuracy) - np.atleast_2d(confidence))
    total = np.zeros(gap.shape[0])
    for b in range(gap.shape[1]):
        total += gap[:, b]
    return total / gap.shape[1]


def ece(prob: Any, label: Any, n_bins: int = 10) -> float:
    """Expected calibration error over `n_bins` EQUAL-COUNT bins, the unweighted mean
    (1/B) Σ_b |acc_b − conf_b| over the B bins used (Kadavath et al. 2022, App. A); bins as in
    `reliability_bins`.

    >>> # bins {0.1, 0.2} → conf 0.15, acc 0.5; {0.7, 0.9} → conf 0.8, acc 1.0; ECE = (0.35 + 0.2) / 2
    >>> round(ece([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1], n_bins=2), 6)
    0.275
    >>> ece([0.5] * 100, [0, 1] * 50)   # calibrated: says 0.5, right half the time
    0.0
    """
    bins = reliability_bins(prob, label, n_bins)
    return float(_mean_abs_gap(bins["accuracy"].to_numpy(), bins["confidence"].to_numpy())[0])


def rms_calibration_error(prob: Any, label: Any, n_bins: int = 10) -> float:
    """RMS calibration error sqrt((1/B) Σ_b (acc_b − conf_b)²) over equal-count bins (as `ece`).

    >>> round(rms_calibration_error([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1], n_bins=2), 6)  # sqrt((0.35² + 0.2²)/2)
    0.285044
    """
    bins = reliability_bins(prob, label, n_bins)
    return float(np.sqrt(((bins["accuracy"] - bins["confidence"]) ** 2).mean()))


def _weights(weights: Any, groups: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights as an int matrix, the weight column of each prediction)."""
    w = np.asarray(weights)
    col = np.arange(n) if groups is None else np.asarray(groups, dtype=np.int64).ravel()
    if col.size != n:
        raise ValueError(f"groups has {col.size} values for {n} predictions")
    if w.ndim != 2 or (col.size and not 0 <= col.min() <= col.max() < w.shape[1]):
        raise ValueError(f"weights must be a (resamples x groups) matrix with a column for every group, got shape "
                         f"{w.shape}")
    if w.size and w.min() < 0:
        raise ValueError("weights must be non-negative (how often each prediction counts)")
    # int32 whenever a row's total fits: the cumulative sums over (resample, prediction) cells run twice as fast
    small = not w.size or float(w.max()) * max(n, 1) < 2**31
    return w.astype(np.int32 if small else np.int64, copy=False), col


# Rows of weights handled per vectorised step: a few hundred thousand (row, prediction) cells.
_STEP_CELLS = 1 << 19


def _step(n_cols: int) -> int:
    return max(1, _STEP_CELLS // max(n_cols, 1))


def auroc_weighted(prob: Any, label: Any, weights: Any, groups: Any = None) -> np.ndarray:
    """`auroc` for each row of `weights` (resamples × groups: how often each group of predictions counts, e.g. a
    prompt drawn twice in a bootstrap resample), equal to `auroc` on the predictions repeated that many times;
    nan where a row leaves one class only. `groups` gives each prediction's column of `weights` (default: one
    column per prediction). Per row, the Mann–Whitney count Σ_pos (negatives below + ½ tied) over groups of
    tied scores, which equals `auroc`'s rank sum minus n_pos(n_pos+1)/2 exactly (both are sums of halves).

    >>> auroc_weighted([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0], [[1, 1, 1, 1], [2, 0, 1, 1], [1, 1, 0, 0]]).tolist()
    [0.875, 1.0, nan]
    """
    p = as_float_array(prob, "prob")
    y = binary_labels(label, "label")
    if p.size != y.size:
        raise ValueError(f"prob has {p.size} values but label has {y.size}")
    w, col = _weights(weights, groups, p.size)
    out = np.full(w.shape[0], np.nan)
    if p.size == 0:
        return out
    _, tie = np.unique(p, return_inverse=True)  # groups of tied scores, in score order
    g = int(tie.max()) + 1
    slot = tie.ravel() + g * (y == 0)  # positives in the first g bins, negatives in the next g
    step = _step(p.size)
    for start in range(0, w.shape[0], step):
        wb = w[start:start + step, col]
        k = wb.shape[0]
        c = np.bincount((np.arange(k)[:, None] * 2 * g + slot).ravel(), weights=wb.ravel(),
                        minlength=k * 2 * g).reshape(k, 2 * g)
        pos, neg = c[:, :g], c[:, g:]
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        u = (pos * (np.cumsum(neg, axis=1) - 0.5 * neg)).sum(axis=1)  # halves and integers: exact in any order
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + k] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return out


def ece_weighted(prob: Any, label: Any, weights: Any, groups: Any = None, n_bins: int = 10) -> np.ndarray:
    """`ece` for each row of `weights` (resamples × groups: how often each group of predictions counts; `groups`
    as in `auroc_weighted`), equal to `ece` on the predictions repeated that many times; nan where a row holds
    fewer than `n_bins` predictions. The predictions are sorted once; the probabilities of each bin are added
    one repeated prediction at a time in sorted order, as `reliability_bins` adds them; tied runs and empty
    bins as there.

    >>> # row 2 keeps 0.2 and 0.7 (both label 1): bins {0.2}, {0.7} → (0.8 + 0.3) / 2
    >>> ece_weighted([0.1, 0.2, 0.7, 0.9], [0, 1, 1, 1], [[1, 1, 1, 1], [0, 1, 1, 0]], n_bins=2).round(6).tolist()
    [0.275, 0.55]
    """
    p, y = _inputs(prob, label)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    w, col = _weights(weights, groups, p.size)
    order = np.argsort(p, kind="stable")
    ps, ys, col = p[order], y[order].astype(np.int8), col[order]
    out = np.full(w.shape[0], np.nan)
    for r in range(w.shape[0]):  # one resample at a time: its sorted predictions are the sorted rows, repeated
        wr = w[r, col]
        values = np.repeat(ps, wr)
        if values.size < n_bins:
            continue
        b = _tie_bins(values, n_bins)
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])  # the bins used, in order
        ends = np.r_[starts[1:], values.size]
        sizes = ends - starts
        # cumsum adds in order from 0, as bincount does in reliability_bins
        conf = np.array([np.cumsum(values[a:e])[-1] for a, e in zip(starts, ends)]) / sizes
        # labels are 0/1: a bin's sum is a count, exact in any order
        acc = np.add.reduceat(np.repeat(ys, wr), starts, dtype=np.int64) / sizes
        out[r] = _mean_abs_gap(acc, conf)[0]
    return out


def calibration_report(data: Any, *, prob_col: str = "prob", label_col: str = "label",
                       n_bins: int = 10) -> dict[str, Any]:
    """All calibration figures of one scorer: ``n, base_rate, auroc`` (nan with one class), ``brier, ece,
    rms_ce, accuracy_above_half`` (share of label 1 among prob > 0.5, nan if none), ``n_above_half``,
    ``bins`` (the reliability diagram, a DataFrame) and ``n_bins_used``; the bin figures are nan when
    n < n_bins.

    >>> r = calibration_report(pl.DataFrame({"prob": [0.1, 0.2, 0.7, 0.9], "label": [0, 1, 1, 1]}), n_bins=2)
    >>> # Brier = (0.01 + 0.64 + 0.09 + 0.01) / 4
    >>> r["auroc"], round(r["brier"], 4), round(r["ece"], 3), r["accuracy_above_half"]
    (1.0, 0.1875, 0.275, 1.0)
    """
    df = frame(data, (prob_col, label_col), "calibration data")
    p, y = _inputs(df[prob_col], df[label_col].cast(pl.Float64))
    both = 0 < y.sum() < y.size
    enough = p.size >= n_bins
    above = p > 0.5
    bins = reliability_bins(p, y, n_bins) if enough else None
    return {"n": int(p.size), "base_rate": float(y.mean()), "auroc": auroc(p, y) if both else float("nan"),
            "brier": brier(p, y), "ece": ece(p, y, n_bins) if enough else float("nan"),
            "rms_ce": rms_calibration_error(p, y, n_bins) if enough else float("nan"),
            "accuracy_above_half": float(y[above].mean()) if above.any() else float("nan"),
            "n_above_half": int(above.sum()), "bins": bins, "n_bins_used": bins.height if bins is not None else 0}
