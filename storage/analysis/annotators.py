"""Annotator competence and model-based consensus: Dawid–Skene and MACE, fitted by EM on categorical votes.

Votes frame: ``prompt_id, unit, judge, label`` (as in `storage.analysis.consensus`); a unit is one task
(``prompt_id, unit``), a judge one annotator. Both models return a `LatentClassFit`: per unit the posterior over
the classes and its argmax as consensus (null when the maximum is shared), per judge a competence.

- **Dawid–Skene** (Dawid and Skene 1979): each judge has a confusion matrix e[k, c] = P(says k | truth c);
  competence = Σ_c prior_c · e[c, c], the judge's expected accuracy.
- **MACE** (Hovy et al. 2013, "Learning Whom to Trust with MACE"): a judge knows the answer with probability
  competence, else answers from its own label distribution ("spamming").

Both follow the algorithm of ``crowd-kit`` 1.4.2 (`DawidSkene`, `MACE`) step for step — initialisation, update
order, smoothing and stopping rule — so that the two agree on the same input; the tests compare them. Own code,
not crowd-kit at run time: crowd-kit brings pandas, transformers and nltk, and works on pandas frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import digamma

from storage.analysis._frames import UNIT_KEYS, check_labels, check_unique, codes, frame, index_of

VOTE_COLS = ("prompt_id", "unit", "judge", "label")
_EPS = 1e-10  # crowd-kit's floor for probabilities before taking logs


@dataclass(frozen=True)
class LatentClassFit:
    """A fitted model: ``units`` (``prompt_id, unit, consensus, confidence``: the posterior of the consensus),
    ``posterior`` (units × classes, rows in the order of ``units``), ``judges`` (``judge, competence, n_votes``),
    the model's own parameters in ``params`` and the per-iteration objective in ``history``."""

    classes: tuple[Any, ...]
    units: pl.DataFrame
    posterior: np.ndarray
    judges: pl.DataFrame
    params: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Votes:
    units: pl.DataFrame
    judges: pl.DataFrame
    task: np.ndarray
    judge: np.ndarray
    label: np.ndarray
    classes: tuple[Any, ...]


def _votes(votes: Any, classes: Sequence[Any] | None) -> _Votes:
    v = frame(votes, VOTE_COLS, "votes")
    if v.height == 0:
        raise ValueError("votes: no votes to fit")
    if classes is None:
        classes = tuple(sorted(v["label"].unique().to_list()))
    check_labels(v, "label", classes, "votes")
    check_unique(v, (*UNIT_KEYS, "judge"), "votes", "a judge may vote once per unit")
    units, task = index_of(v, UNIT_KEYS, "_u")
    judges, judge = index_of(v, ("judge",), "_j")
    return _Votes(units.drop("_u"), judges.drop("_j"), task, judge, codes(v["label"], classes), tuple(classes))


def _finish(d: _Votes, posterior: np.ndarray, competence: np.ndarray, params: dict[str, np.ndarray],
            history: list[float]) -> LatentClassFit:
    top = posterior.max(axis=1)
    shared = (posterior == top[:, None]).sum(axis=1) > 1
    pick = np.where(shared, -1, posterior.argmax(axis=1))
    lookup = pl.DataFrame({"_c": np.arange(len(d.classes), dtype=np.int64),
                           "consensus": pl.Series(list(d.classes))})
    units = (d.units.with_columns(_c=pl.Series(pick), confidence=pl.Series(top))
             .join(lookup, on="_c", how="left", maintain_order="left")
             .select(*UNIT_KEYS, "consensus", "confidence"))
    n_votes = np.bincount(d.judge, minlength=d.judges.height)
    judges = d.judges.with_columns(competence=pl.Series(competence), n_votes=pl.Series(n_votes))
    return LatentClassFit(d.classes, units, posterior, judges, params, history)


def _majority_posterior(d: _Votes) -> np.ndarray:
    counts = np.zeros((d.units.height, len(d.classes)))
    np.add.at(counts, (d.task, d.label), 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def _ds_confusions(d: _Votes, posterior: np.ndarray) -> np.ndarray:
    """M-step: e[j, k, c] ∝ Σ over j's votes k of P(truth c); entries a judge never used stay 0 (crowd-kit keeps
    only the (judge, label) rows that occur), the others are floored at 1e-10, then each column sums to 1."""
    k = len(d.classes)
    counts = np.zeros((d.judges.height, k, k))
    np.add.at(counts, (d.judge, d.label), posterior[d.task])
    used = np.zeros((d.judges.height, k), dtype=bool)
    used[d.judge, d.label] = True
    counts = np.where(used[:, :, None], np.maximum(counts, _EPS), 0.0)
    return counts / counts.sum(axis=1, keepdims=True)


def _ds_posterior(d: _Votes, priors: np.ndarray, errors: np.ndarray) -> np.ndarray:
    logs = np.zeros((d.units.height, len(d.classes)))
    np.add.at(logs, d.task, np.log2(errors[d.judge, d.label]))
    logs += np.log2(np.maximum(priors, _EPS))
    scaled = np.exp2(logs - logs.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def _ds_elbo(d: _Votes, posterior: np.ndarray, priors: np.ndarray, errors: np.ndarray) -> float:
    # crowd-kit's objective, per vote: the prior enters once per vote, not once per unit
    with np.errstate(divide="ignore"):
        log_terms = np.log(errors[d.judge, d.label]) + np.log(np.maximum(priors, _EPS))
    joint = float(np.sum(posterior[d.task] * log_terms))
    p = np.maximum(posterior, _EPS)
    return (joint - float(np.sum(p * np.log(p)))) / d.task.size


def dawid_skene(votes: Any, classes: Sequence[Any] | None = None, *, n_iter: int = 100,
                tol: float = 1e-5) -> LatentClassFit:
    """Dawid–Skene by EM, started from the majority-vote posterior (vote shares per unit). Each iteration:
    E-step, priors = mean posterior, M-step; stops after `n_iter` iterations or when the objective (expected
    log-likelihood plus entropy, per vote) rises by less than `tol`. `classes` defaults to the labels seen,
    sorted. ``params``: ``priors`` (classes) and ``confusion`` (judges × said × truth).

    >>> v = pl.DataFrame({"prompt_id": [1] * 9, "unit": list("aaabbbccc"), "judge": ["h1", "h2", "h3"] * 3,
    ...                   "label": ["yes", "yes", "no", "no", "no", "no", "yes", "yes", "no"]})
    >>> fit = dawid_skene(v)
    >>> fit.units["consensus"].to_list(), fit.judges["competence"].round(3).to_list()
    (['yes', 'no', 'yes'], [1.0, 1.0, 0.333])
    """
    if n_iter < 0:
        raise ValueError(f"n_iter must be non-negative, got {n_iter}")
    d = _votes(votes, classes)
    posterior = _majority_posterior(d)
    priors = posterior.mean(axis=0)
    errors = _ds_confusions(d, posterior)
    history: list[float] = []
    previous = -np.inf
    for _ in range(n_iter):
        posterior = _ds_posterior(d, priors, errors)
        priors = posterior.mean(axis=0)
        errors = _ds_confusions(d, posterior)
        objective = _ds_elbo(d, posterior, priors, errors)
        history.append(objective)
        if objective - previous < tol:
            break
        previous = objective
    competence = np.einsum("c,jcc->j", priors, errors)
    return _finish(d, posterior, competence, {"priors": priors, "confusion": errors}, history)


def _mace_init(n_judges: int, n_classes: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """crowd-kit's start: both arrays drawn from uniform(1, 1 + noise) by numpy's legacy RandomState(seed), each
    from a fresh generator with the same seed, then normalised by row."""
    spam = 1 + (1 + noise) * np.random.RandomState(seed).uniform(0.0, 1.0, (n_judges, 2))
    thetas = 1 + (1 + noise) * np.random.RandomState(seed).uniform(0.0, 1.0, (n_judges, n_classes))
    return spam / spam.sum(axis=1, keepdims=True), thetas / thetas.sum(axis=1, keepdims=True)


def _mace_e_step(d: _Votes, spam: np.ndarray, thetas: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(log marginal likelihood, posterior over the truth, expected spam counts judges × labels, expected
    knowing/spamming counts judges × 2). Products over a unit's votes are summed as logs (crowd-kit multiplies
    them, which underflows on units with many votes; the results are otherwise equal)."""
    k = len(d.classes)
    guess = spam[d.judge, 0] * thetas[d.judge, d.label]  # P(vote | spamming) · P(spamming)
    knows = spam[d.judge, 1]
    per_vote = guess[:, None] + knows[:, None] * (d.label[:, None] == np.arange(k)[None, :])
    logs = np.zeros((d.units.height, k))
    np.add.at(logs, d.task, np.log(per_vote))
    logs -= np.log(k)
    top = logs.max(axis=1, keepdims=True)
    marginal_log = top[:, 0] + np.log(np.exp(logs - top).sum(axis=1))
    log_likelihood = float(np.sum(np.log(np.exp(marginal_log) + 1e-8)))
    posterior = np.exp(logs - marginal_log[:, None])
    spam_share = np.sum(posterior[d.task] * (guess[:, None] / per_vote), axis=1)
    knowing_share = posterior[d.task, d.label] * knows / (guess + knows)
    strategy = np.zeros_like(thetas)
    np.add.at(strategy, (d.judge, d.label), spam_share)
    counts = np.zeros_like(spam)
    np.add.at(counts[:, 0], d.judge, spam_share)
    np.add.at(counts[:, 1], d.judge, knowing_share)
    return log_likelihood, posterior, strategy, counts


def _variational(counts: np.ndarray, prior: float | np.ndarray) -> np.ndarray:
    a = counts + prior
    return np.exp(digamma(a)) / np.exp(digamma(a.sum(axis=1, keepdims=True)))


def _smoothed(counts: np.ndarray, smoothing: float) -> np.ndarray:
    a = counts + smoothing
    total = a.sum(axis=1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=~np.isclose(total, 0))


def mace(votes: Any, classes: Sequence[Any] | None = None, *, n_iter: int = 50, method: str = "vb",
         alpha: float = 0.5, beta: float = 0.5, strategy_prior: float = 10.0, seed: int = 0,
         n_restarts: int = 1, noise: float = 0.5) -> LatentClassFit:
    """MACE by EM (``method="em"``, counts smoothed by 0.01 / #classes) or variational Bayes (``"vb"``, the
    default: Beta(`alpha`, `beta`) prior on spamming vs knowing, symmetric Dirichlet(`strategy_prior`) on each
    judge's spamming labels). A run: start (`_mace_init` with `seed`), E-step, then `n_iter` × (M-step, E-step).
    Restart r uses seed + r and the run with the highest marginal likelihood is kept (crowd-kit's restarts
    reuse one seed, so its result equals a single run here). ``competence`` = P(knowing); ``params``: ``spam``
    (judges × [spamming, knowing]) and ``strategy`` (judges × classes).

    >>> v = pl.DataFrame({"prompt_id": [1] * 9, "unit": list("aaabbbccc"), "judge": ["h1", "h2", "h3"] * 3,
    ...                   "label": ["yes", "yes", "no", "no", "no", "no", "yes", "yes", "no"]})
    >>> fit = mace(v)
    >>> fit.units["consensus"].to_list(), fit.judges["competence"].round(3).to_list()
    (['yes', 'no', 'yes'], [0.826, 0.826, 0.068])
    """
    if method not in ("vb", "em"):
        raise ValueError(f"method must be 'vb' or 'em', got {method!r}")
    if n_iter < 0 or n_restarts < 1:
        raise ValueError(f"n_iter must be >= 0 and n_restarts >= 1, got {n_iter} and {n_restarts}")
    d = _votes(votes, classes)
    k = len(d.classes)
    best: tuple[float, np.ndarray, np.ndarray, list[float]] | None = None
    for r in range(n_restarts):
        spam, thetas = _mace_init(d.judges.height, k, seed + r, noise)
        ll, _, strategy, counts = _mace_e_step(d, spam, thetas)
        history = [ll]
        for _ in range(n_iter):
            if method == "vb":
                spam = _variational(counts, np.array([alpha, beta]))
                thetas = _variational(strategy, strategy_prior)
            else:
                spam, thetas = _smoothed(counts, 0.01 / k), _smoothed(strategy, 0.01 / k)
            ll, _, strategy, counts = _mace_e_step(d, spam, thetas)
            history.append(ll)
        if best is None or ll > best[0]:
            best = (ll, spam, thetas, history)
    assert best is not None
    _, spam, thetas, history = best
    _, posterior, _, _ = _mace_e_step(d, spam, thetas)
    return _finish(d, posterior, spam[:, 1], {"spam": spam, "strategy": thetas}, history)
