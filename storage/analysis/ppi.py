"""Judge-corrected means: prediction-powered inference (PPI, PPI++) and active-inference weighting.

Setting: ``n`` items have a human value ``y`` (a 0/1 correctness label, a rating, a pairwise preference coded
1 / 0.5 / 0) and the judge's prediction ``f`` of it; ``N`` further items have only the prediction. The
estimand is the mean human value over the pool. With the power-tuning parameter λ (Angelopoulos, Duchi and
Zrnic 2023, "PPI++: Efficient Prediction-Powered Inference", arXiv 2311.01453):

    θ̂_λ = mean_N(λ f̃) + mean_n(y − λ f)
    se² = sd_n(y − λ f)² / n + sd_N(λ f̃)² / N        (sd with divisor n resp. N)
    CI  = θ̂_λ ± z_{(1+level)/2} · se

λ = 0 is the human-only (classical) interval, λ = 1 plain PPI, and the tuned λ̂ (`tuned_lambda`) minimises the
variance: λ̂ = cov_n(y, f) / ((1 + n/N) · var_{n+N}(f)), clipped to [0, 1], where cov_n divides by n and var
pools the predictions of both sets (divisor n + N − 1). These conventions are those of the ``ppi-python``
package (``ppi_mean_ci``), which the tests reproduce.

The interval is valid only when the labelled items are a uniform random sample of the pool; when labels were
served with known, unequal probabilities use `active_mean` (inverse-probability weighting).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import frame


def z_value(level: float) -> float:
    """The two-sided normal quantile z_{(1+level)/2}.

    >>> round(z_value(0.95), 6)
    1.959964
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    return NormalDist().inv_cdf((1 + level) / 2)


def _vector(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} has {int((~np.isfinite(a)).sum())} missing or infinite value(s)")
    return a


def _inputs(y: Any, f: Any, f_unlabelled: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, f, fu = _vector(y, "y (human values)"), _vector(f, "f (predictions on labelled items)"), \
        _vector(f_unlabelled, "f_unlabelled (predictions on unlabelled items)")
    if y.size != f.size:
        raise ValueError(f"y and f must pair up: {y.size} human values, {f.size} predictions")
    if y.size < 2:
        raise ValueError(f"PPI needs at least 2 labelled items, got {y.size}")
    if fu.size < 1:
        raise ValueError("PPI needs at least 1 unlabelled item")
    return y, f, fu


def tuned_lambda(y: Any, f: Any, f_unlabelled: Any) -> float:
    """The variance-minimising λ̂ of PPI++ for a mean, clipped to [0, 1] (see the module docstring).

    >>> tuned_lambda([1, 0, 1, 1], [0.9, 0.2, 0.8, 0.6], [0.7, 0.1, 0.9, 0.4, 0.5, 0.8])
    0.787037...
    >>> tuned_lambda([1, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], [0.4, 0.6])   # uninformative judge
    0.0
    """
    y, f, fu = _inputs(y, f, f_unlabelled)
    n, big_n = y.size, fu.size
    cov = float(np.mean((y - y.mean()) * (f - f.mean())))
    var = float(np.var(np.concatenate([f, fu]), ddof=1))
    if var == 0:
        return 0.0  # a constant judge carries no information: the human-only estimate
    return float(np.clip(cov / ((1 + n / big_n) * var), 0.0, 1.0))


def ppi_mean(y: Any, f: Any, f_unlabelled: Any, *, lam: float | None = None, level: float = 0.95) -> dict[str, Any]:
    """PPI++ estimate and normal interval of the mean human value.

    `lam` None tunes λ (`tuned_lambda`); 0 gives the human-only interval, 1 plain PPI. Returns ``estimate,
    low, high, level, se, lam, n_labelled, n_unlabelled, sd_rectifier`` (sd of y − λf over the labelled items)
    and ``sd_imputed`` (sd of λf̃ over the unlabelled items); `labels_for_width` plans from the last two.

    >>> r = ppi_mean([1, 0, 1, 1], [0.9, 0.2, 0.8, 0.6], [0.7, 0.1, 0.9, 0.4, 0.5, 0.8], lam=1)
    >>> round(r["estimate"], 4), round(r["low"], 4), round(r["high"], 4), r["lam"]
    (0.6917, 0.3896, 0.9938, 1.0)
    >>> round(ppi_mean([1, 0, 1, 1], [1, 0, 1, 1], [1, 1, 0], lam=0)["estimate"], 4)   # human-only: mean(y)
    0.75
    """
    y, f, fu = _inputs(y, f, f_unlabelled)
    if lam is None:
        lam = tuned_lambda(y, f, fu)
    lam = float(lam)
    if not math.isfinite(lam):
        raise ValueError(f"lam must be a finite number, got {lam}")
    rectifier = y - lam * f
    estimate = float(np.mean(lam * fu) + np.mean(rectifier))
    sd_r = float(np.std(rectifier))
    sd_i = float(np.std(lam * fu))
    se = math.sqrt(sd_r ** 2 / y.size + sd_i ** 2 / fu.size)
    half = z_value(level) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "level": level, "se": se,
            "lam": lam, "n_labelled": int(y.size), "n_unlabelled": int(fu.size), "sd_rectifier": sd_r,
            "sd_imputed": sd_i}


def ppi_summary(y: Any, f: Any, f_unlabelled: Any, *, level: float = 0.95) -> dict[str, Any]:
    """The human-only interval, plain PPI (λ = 1) and PPI++ (tuned λ) side by side, with the effective sample
    size of PPI++.

    ``effective_n`` = the number of human labels a human-only interval would need to be as narrow as the
    PPI++ interval, holding the human values' standard deviation at its estimate s_y (divisor n):
    effective_n = s_y² / se_PPI++² (= n · (se_human / se_PPI++)²). ``labels_gained`` = effective_n − n (negative
    when PPI++ is wider, which the tuned λ makes rare but not impossible in small samples). Both are nan when
    every human value is equal and the interval is zero-width.

    >>> s = ppi_summary([1, 0, 1, 1, 0, 1], [0.9, 0.2, 0.8, 0.7, 0.3, 0.6], [0.8, 0.1, 0.9, 0.4, 0.5, 0.8] * 20)
    >>> round(s["classical"]["se"], 4), round(s["ppi_plus"]["se"], 4), round(s["effective_n"], 1)
    (0.1925, 0.1069, 19.4)
    """
    y, f, fu = _inputs(y, f, f_unlabelled)
    classical = ppi_mean(y, f, fu, lam=0.0, level=level)
    plain = ppi_mean(y, f, fu, lam=1.0, level=level)
    tuned = ppi_mean(y, f, fu, lam=None, level=level)
    eff = classical["sd_rectifier"] ** 2 / tuned["se"] ** 2 if tuned["se"] > 0 else math.nan
    return {"classical": classical, "ppi": plain, "ppi_plus": tuned, "effective_n": eff,
            "labels_gained": eff - y.size if math.isfinite(eff) else math.nan}


def ppi_mean_difference(a: tuple[Any, Any, Any], b: tuple[Any, Any, Any], *, lam: float | None = None,
                        level: float = 0.95) -> dict[str, Any]:
    """PPI++ for θ_A − θ_B where A and B are independent samples (two runs' items labelled and judged apart),
    each given as ``(y, f, f_unlabelled)``. Each arm gets its own tuned λ (with independent arms the variance of
    the difference is the sum of the arms' variances, so tuning each arm minimises it); se = √(se_A² + se_B²).

    Not for paired designs (the same item judged under A and B), where the arms are correlated; a win rate of
    A over B from pairwise verdicts is a single mean: code the human verdict 1 / 0.5 / 0 and use `ppi_mean`.

    >>> d = ppi_mean_difference(([1, 1, 0, 1], [0.9, 0.8, 0.3, 0.7], [0.9, 0.6, 0.8]),
    ...                         ([0, 1, 0, 0], [0.2, 0.7, 0.4, 0.1], [0.3, 0.2, 0.5]), lam=1)
    >>> round(d["estimate"], 4), round(d["se"], 4)
    (0.6083, 0.199)
    """
    ra = ppi_mean(*a, lam=lam, level=level)
    rb = ppi_mean(*b, lam=lam, level=level)
    estimate = ra["estimate"] - rb["estimate"]
    se = math.sqrt(ra["se"] ** 2 + rb["se"] ** 2)
    half = z_value(level) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "level": level, "se": se,
            "a": ra, "b": rb}


def active_mean(f: Any, y: Any, labelled: Any, pi: Any, *, lam: float | None = None,
                level: float = 0.95) -> dict[str, Any]:
    """Mean of the human value over a pool where item i was labelled with known probability π_i (active
    inference, Zrnic and Candès 2024, "Active Statistical Inference", arXiv 2403.03208).

    `f`, `y`, `labelled` (bool) and `pi` have one entry per pool item; `y` is read only where `labelled`.
    Each item contributes z_i = λ f_i + (ξ_i / π_i)(y_i − λ f_i) (ξ_i = labelled); θ̂ = mean(z),
    se = sd(z) / √N (divisor N). Unbiased for any fixed λ when labelling was an independent draw per item with
    probability π_i > 0. `lam` None takes the λ minimising the plug-in variance of z, clipped to [0, 1]:
    z = a + λb with a = ξy/π and b = f(1 − ξ/π), so λ̂ = −cov(a, b) / var(b).

    With π_i = n/N for every item and λ = 1 the estimate is mean(f) + Σ_labelled (y − f) / n:

    >>> r = active_mean([0.2, 0.8, 0.6, 0.4], [0, 1, 0, 0], [False, True, True, False], [0.5] * 4, lam=1)
    >>> round(r["estimate"], 4), round(0.5 + ((1 - 0.8) + (0 - 0.6)) / 2, 4)
    (0.3, 0.3)
    """
    f = _vector(f, "f (predictions)")
    pi = _vector(pi, "pi (serving probabilities)")
    xi = np.asarray(labelled, dtype=bool)
    y = np.asarray(y, dtype=np.float64)  # None / nan allowed where not labelled
    if y.shape == xi.shape and not np.isfinite(y[xi]).all():
        raise ValueError(f"y has {int((~np.isfinite(y[xi])).sum())} missing value(s) on labelled items")
    y = np.where(xi, y, 0.0)
    if not (f.size == pi.size == xi.size == y.size):
        raise ValueError(f"f, y, labelled and pi must have one entry per item: sizes {f.size}, {y.size}, "
                         f"{xi.size}, {pi.size}")
    if ((pi <= 0) | (pi > 1)).any():
        raise ValueError(f"serving probabilities must lie in (0, 1]; {int(((pi <= 0) | (pi > 1)).sum())} do not")
    if xi.sum() < 2:
        raise ValueError(f"active inference needs at least 2 labelled items, got {int(xi.sum())}")
    w = xi / pi
    a, b = w * y, f * (1 - w)
    if lam is None:
        vb = float(np.var(b))
        lam = 0.0 if vb == 0 else float(np.clip(-np.mean((a - a.mean()) * (b - b.mean())) / vb, 0.0, 1.0))
    z = a + float(lam) * b
    estimate = float(z.mean())
    se = float(np.std(z)) / math.sqrt(z.size)
    half = z_value(level) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "level": level, "se": se,
            "lam": float(lam), "n_labelled": int(xi.sum()), "n_pool": int(z.size)}


def ppi_mean_frame(items: Any, human_col: str, pred_col: str, *, lam: float | None = None,
                   level: float = 0.95) -> dict[str, Any]:
    """`ppi_mean` on a frame with one row per item: rows whose `human_col` is null are the unlabelled items.

    >>> t = pl.DataFrame({"h": [1, 0, 1, None, None], "m": [0.9, 0.1, 0.7, 0.8, 0.3]})
    >>> r = ppi_mean_frame(t, "h", "m", lam=1)
    >>> r["n_labelled"], r["n_unlabelled"], round(r["estimate"], 4)
    (3, 2, 0.65)
    """
    t = frame(items, (human_col, pred_col), "PPI items", not_null=(pred_col,))
    lab = t.filter(pl.col(human_col).is_not_null())
    unl = t.filter(pl.col(human_col).is_null())
    return ppi_mean(lab[human_col].cast(pl.Float64).to_numpy(), lab[pred_col].cast(pl.Float64).to_numpy(),
                    unl[pred_col].cast(pl.Float64).to_numpy(), lam=lam, level=level)
