"""Bradley–Terry scores with intervals from pairwise verdicts (responses of a prompt, runs, models).

Model: P(i beats j) = 1 / (1 + exp(θ_j − θ_i)); θ are natural-log strengths, centred to mean 0 (only
differences are identified). The maximum-likelihood θ̂ is computed by ``choix.ilsr_pairwise_dense`` (iterative
Luce spectral ranking; it converges to the MLE) on the matrix W, W[i, j] = wins of i over j.

- **Ties** count as half a win for each side (``ties="half"``: W gains 0.5 both ways, the likelihood of a
  tie is √(p_ij · p_ji)), or are left out (``ties="drop"``); the counts of each are returned either way.
- **Existence**: the MLE exists only when every item beats, directly or through others, every other item
  (the graph of wins is strongly connected); otherwise a ValueError says so. ``prior`` > 0 adds that many
  virtual wins each way to every compared pair (a shrinkage towards equal strengths that makes the MLE
  exist whenever the comparison graph is connected).
- **Intervals** (`bradley_terry`): Wald intervals θ̂_i ± z · se_i from the observed Fisher information
  H = Σ_pairs n_ij p_ij (1 − p_ij)(e_i − e_j)(e_i − e_j)ᵀ; its pseudo-inverse is the covariance of the
  centred θ̂. They treat verdicts as independent; `bradley_terry_bootstrap` gives percentile intervals that
  resample clusters (prompts), for verdicts that share a prompt.
"""

from __future__ import annotations

from typing import Any

import choix
import numpy as np
import polars as pl
from scipy.sparse.csgraph import connected_components

from storage.analysis._frames import frame
from storage.analysis.ppi import z_value
from storage.analysis.scores import kendall_tau_b, spearman

RESULTS = ("a", "b", "tie")
COLS = ("a", "b", "result")


def win_matrix(comparisons: Any, *, ties: str = "half") -> tuple[list[Any], np.ndarray, dict[str, np.ndarray]]:
    """(items in sorted order, W, counts) from a frame ``a, b, result`` (result ``"a"``: a won, ``"b"``,
    ``"tie"``). counts holds per-item ``wins``, ``losses``, ``ties`` (whole verdicts, before halving).

    >>> items, w, c = win_matrix(pl.DataFrame({"a": ["x", "y", "x"], "b": ["y", "z", "z"],
    ...                                        "result": ["a", "tie", "b"]}))
    >>> items, w.tolist(), c["ties"].tolist()
    (['x', 'y', 'z'], [[0.0, 1.0, 0.0], [0.0, 0.0, 0.5], [1.0, 0.5, 0.0]], [0, 1, 1])
    """
    if ties not in ("half", "drop"):
        raise ValueError(f"ties must be 'half' or 'drop', got {ties!r}")
    c = frame(comparisons, COLS, "pairwise comparisons")
    bad = c.filter(~pl.col("result").is_in(list(RESULTS)))
    if bad.height:
        raise ValueError(f"pairwise comparisons: {bad.height} result(s) outside {list(RESULTS)}, "
                         f"e.g. {bad['result'][0]!r}")
    same = c.filter(pl.col("a") == pl.col("b"))
    if same.height:
        raise ValueError(f"pairwise comparisons: {same.height} row(s) compare an item with itself, e.g. "
                         f"{same.row(0, named=True)}")
    items = sorted(set(c["a"].to_list()) | set(c["b"].to_list()))
    index = {item: k for k, item in enumerate(items)}
    ia = np.array([index[v] for v in c["a"].to_list()], dtype=np.int64)
    ib = np.array([index[v] for v in c["b"].to_list()], dtype=np.int64)
    res = c["result"].to_numpy()
    w = np.zeros((len(items), len(items)))
    a_won, b_won, tie = res == "a", res == "b", res == "tie"
    np.add.at(w, (ia[a_won], ib[a_won]), 1.0)
    np.add.at(w, (ib[b_won], ia[b_won]), 1.0)
    if ties == "half":
        np.add.at(w, (ia[tie], ib[tie]), 0.5)
        np.add.at(w, (ib[tie], ia[tie]), 0.5)
    k = len(items)
    counts = {"wins": np.bincount(ia[a_won], minlength=k) + np.bincount(ib[b_won], minlength=k),
              "losses": np.bincount(ib[a_won], minlength=k) + np.bincount(ia[b_won], minlength=k),
              "ties": np.bincount(ia[tie], minlength=k) + np.bincount(ib[tie], minlength=k)}
    return items, w, counts


def _check_estimable(items: list[Any], w: np.ndarray) -> None:
    n_undirected, labels = connected_components(w + w.T > 0, directed=False)
    if n_undirected > 1:
        groups = [[items[i] for i in np.flatnonzero(labels == g)][:3] for g in range(n_undirected)]
        raise ValueError(f"Bradley-Terry: the items fall into {n_undirected} groups never compared with each "
                         f"other (e.g. {groups[:2]}); their scores are not on one scale")
    n_strong, labels = connected_components(w > 0, directed=True, connection="strong")
    if n_strong > 1:
        raise ValueError("Bradley-Terry: no maximum-likelihood scores exist — some items won (or lost) every "
                         f"comparison against the rest ({n_strong} strongly connected groups); set prior > 0")


def fit_scores(w: np.ndarray, *, prior: float = 0.0, items: list[Any] | None = None) -> np.ndarray:
    """The centred MLE θ̂ for the win matrix `w` (plus `prior` virtual wins each way on every compared pair).

    >>> th = fit_scores(np.array([[0.0, 2.0], [1.0, 0.0]]))   # 2 wins to 1: θ0 − θ1 = log 2
    >>> round(float(th[0] - th[1]), 10), round(float(th.sum()), 12)
    (0.6931471806, 0.0)
    """
    if prior < 0:
        raise ValueError(f"prior must be non-negative, got {prior}")
    w = np.asarray(w, dtype=np.float64)
    if w.shape[0] < 2:
        raise ValueError(f"Bradley-Terry needs at least 2 items, got {w.shape[0]}")
    w = w + prior * ((w + w.T) > 0)
    _check_estimable(items if items is not None else list(range(w.shape[0])), w)
    theta = choix.ilsr_pairwise_dense(w, tol=1e-12, max_iter=10_000)
    return theta - theta.mean()


def fisher_covariance(theta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Covariance of the centred θ̂: the pseudo-inverse of the observed Fisher information (module docstring).

    >>> cov = fisher_covariance(np.array([0.0, 0.0]), np.array([[0.0, 2.0], [2.0, 0.0]]))
    >>> cov.round(6).tolist()     # 4 verdicts at p = 1/2: var(θ0 − θ1) = 1 / (4 · 1/4) = 1
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    n = np.asarray(w, dtype=np.float64) + np.asarray(w, dtype=np.float64).T
    p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))
    info = n * p * (1 - p)
    np.fill_diagonal(info, 0.0)
    h = np.diag(info.sum(axis=1)) - info
    return np.linalg.pinv(h, hermitian=True)


def bradley_terry(comparisons: Any, *, ties: str = "half", prior: float = 0.0, level: float = 0.95) -> pl.DataFrame:
    """Scores with Fisher-information intervals: one row per item, sorted by score (best first), with columns
    ``item, score, se, low, high, wins, losses, ties, n`` (n = verdicts involving the item).

    >>> c = pl.DataFrame({"a": ["r1", "r1", "r2", "r2", "r3", "r1"], "b": ["r2", "r3", "r3", "r1", "r1", "r2"],
    ...                   "result": ["a", "a", "tie", "a", "a", "a"]})
    >>> bradley_terry(c).select("item", pl.col("score", "se").round(3), "wins", "ties").rows()
    [('r1', 0.248, 0.616, 3, 0), ('r3', 0.063, 0.786, 1, 1), ('r2', -0.31, 0.716, 1, 1)]
    """
    items, w, counts = win_matrix(comparisons, ties=ties)
    theta = fit_scores(w, prior=prior, items=items)
    se = np.sqrt(np.clip(np.diag(fisher_covariance(theta, w + prior * ((w + w.T) > 0))), 0.0, None))
    z = z_value(level)
    out = pl.DataFrame({"item": items, "score": theta, "se": se, "low": theta - z * se, "high": theta + z * se,
                        "wins": counts["wins"], "losses": counts["losses"], "ties": counts["ties"]})
    return out.with_columns(n=pl.col("wins") + pl.col("losses") + pl.col("ties")).sort("score", descending=True)


def bradley_terry_bootstrap(comparisons: Any, cluster_col: str, *, n: int = 200, seed: int = 0,
                            ties: str = "half", prior: float = 0.5, level: float = 0.95) -> pl.DataFrame:
    """Percentile intervals of the scores resampling clusters (e.g. ``prompt_id``) with replacement (numpy
    ``default_rng(seed)``, clusters in sorted order). Resamples missing an item or without an MLE are left out of
    that item's interval (``n_valid``); `prior` defaults to 0.5 so that few are. Columns ``item, score, low,
    high, n_valid``.

    >>> c = pl.DataFrame({"prompt_id": [1, 1, 2, 2, 3, 3], "a": ["x", "y", "x", "y", "x", "z"],
    ...                   "b": ["y", "z", "z", "z", "y", "x"], "result": ["a", "a", "tie", "b", "a", "b"]})
    >>> b = bradley_terry_bootstrap(c, "prompt_id", n=100)
    >>> b["item"].to_list(), bool((b["low"] <= b["score"]).all() and (b["score"] <= b["high"]).all())
    (['x', 'y', 'z'], True)
    """
    if n < 1:
        raise ValueError(f"the number of resamples must be at least 1, got {n}")
    c = frame(comparisons, (*COLS, cluster_col), "pairwise comparisons")
    items, w, _ = win_matrix(c, ties=ties)
    theta = fit_scores(w, prior=prior, items=items)
    by_cluster = c.partition_by(cluster_col, as_dict=True)
    parts = [by_cluster[(k,)] for k in c[cluster_col].unique().sort().to_list()]
    draws = np.random.default_rng(seed).integers(0, len(parts), size=(n, len(parts)))
    values = np.full((n, len(items)), np.nan)
    index = {item: k for k, item in enumerate(items)}
    for r, d in enumerate(draws):
        sample = pl.concat([parts[k] for k in d])
        its, ws, _ = win_matrix(sample, ties=ties)
        try:
            th = fit_scores(ws, prior=prior, items=its)
        except (ValueError, RuntimeError):
            continue  # no MLE in this resample (or choix did not converge): left out
        values[r, [index[i] for i in its]] = th - th.mean()
    lo, hi = (1 - level) / 2, (1 + level) / 2
    rows = []
    for k, item in enumerate(items):
        ok = values[:, k][np.isfinite(values[:, k])]
        q = np.quantile(ok, [lo, hi]) if ok.size else (np.nan, np.nan)
        rows.append((item, float(theta[k]), float(q[0]), float(q[1]), int(ok.size)))
    return pl.DataFrame(rows, schema=["item", "score", "low", "high", "n_valid"], orient="row")


def ranking_agreement(human: pl.DataFrame, model: pl.DataFrame) -> dict[str, Any]:
    """Rank correlation of two score tables (`bradley_terry` outputs: ``item, score``) over the items both
    rank: Spearman ρ and Kendall τ-b (nan with fewer than two shared items or a constant side).

    >>> h = pl.DataFrame({"item": ["a", "b", "c", "d"], "score": [1.0, 0.5, -0.2, -1.3]})
    >>> m = pl.DataFrame({"item": ["d", "c", "b", "a", "e"], "score": [-0.9, 0.4, 0.1, 0.8, 2.0]})
    >>> ranking_agreement(h, m)
    {'spearman': 0.8, 'kendall_tau_b': 0.666..., 'n_items': 4}
    """
    both = frame(human, ("item", "score"), "human scores").select("item", h="score").join(
        frame(model, ("item", "score"), "model scores").select("item", m="score"), on="item", how="inner")
    return {"spearman": spearman(both["h"], both["m"]), "kendall_tau_b": kendall_tau_b(both["h"], both["m"]),
            "n_items": both.height}


def votes_to_comparisons(votes: Any) -> pl.DataFrame:
    """Pairwise votes in unit order (`storage.analysis.pairwise.pairwise_votes`: ``response_lo, response_hi``,
    ``label`` first / second / tie) → comparisons ``a, b, result`` of responses, other columns kept.

    >>> v = pl.DataFrame({"prompt_id": [1], "response_lo": [4], "response_hi": [9], "label": ["second"]})
    >>> votes_to_comparisons(v).rows()
    [(1, 4, 9, 'b')]
    """
    v = frame(votes, ("response_lo", "response_hi", "label"), "pairwise votes")
    result = pl.col("label").replace_strict({"first": "a", "second": "b", "tie": "tie"}, default=None)
    out = v.with_columns(a=pl.col("response_lo"), b=pl.col("response_hi"), result=result)
    if out["result"].null_count():
        raise ValueError("pairwise votes: labels must be first / second / tie")
    return out.drop("response_lo", "response_hi", "label")
