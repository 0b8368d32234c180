"""storage.analysis.annotators (own Dawid–Skene and MACE) against crowd-kit 1.4.2 (a test dependency) on the
same votes with the same initialisation: posteriors, competences and model parameters within 1e-6."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from crowdkit.aggregation import MACE, DawidSkene

from storage.analysis.annotators import dawid_skene, mace


def simulate(seed: int, n_units: int = 150, classes=("bad", "good", "ok"), skills=(0.9, 0.8, 0.6, 0.4, 0.34),
             p_vote: float = 0.7) -> pl.DataFrame:
    """Units with a true class; judge j answers right with probability skills[j], else uniformly at random, and
    votes on a unit with probability p_vote. Rows are ordered by judge, then label, and the first judge votes on
    every unit, so that judges and labels first appear in sorted order: crowd-kit's MACE (1.4.2) indexes its
    per-judge counts by sorted names but its parameters by order of appearance, and only agrees with itself
    when the two coincide."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(classes), size=n_units)
    rows = []
    for j, skill in enumerate(skills):
        for u in range(n_units):
            if j > 0 and rng.uniform() > p_vote:
                continue
            said = truth[u] if rng.uniform() < skill else rng.integers(0, len(classes))
            rows.append((u // 50, f"u{u:03d}", f"j{j}", classes[said]))
    v = pl.DataFrame(rows, schema=["prompt_id", "unit", "judge", "label"], orient="row").sort("judge", "label")
    first_labels = v["label"].unique(maintain_order=True).to_list()
    assert first_labels == sorted(first_labels), "reorder: crowd-kit needs labels first seen in sorted order"
    return v


def to_pandas(v: pl.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"task": [f"{p}:{u}" for p, u in v.select("prompt_id", "unit").iter_rows()],
                         "worker": v["judge"].to_list(), "label": v["label"].to_list()})


def ours_by_task(fit) -> pd.DataFrame:
    tasks = [f"{p}:{u}" for p, u in fit.units.select("prompt_id", "unit").iter_rows()]
    return pd.DataFrame(fit.posterior, index=tasks, columns=list(fit.classes))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_iter,tol", [(100, 1e-5), (7, 0.0)])
def test_dawid_skene_matches_crowd_kit(seed, n_iter, tol):
    v = simulate(seed)
    ck = DawidSkene(n_iter=n_iter, tol=tol).fit(to_pandas(v))
    fit = dawid_skene(v, n_iter=n_iter, tol=tol)
    want = ck.probas_.loc[:, list(fit.classes)]
    got = ours_by_task(fit).loc[want.index]
    assert np.abs(got.to_numpy() - want.to_numpy()).max() < 1e-6
    assert np.abs(fit.params["priors"] - ck.priors_.loc[list(fit.classes)].to_numpy()).max() < 1e-6
    for j, judge in enumerate(fit.judges["judge"].to_list()):
        conf = ck.errors_.loc[judge].reindex(index=list(fit.classes), columns=list(fit.classes), fill_value=0.0)
        assert np.abs(fit.params["confusion"][j] - conf.to_numpy()).max() < 1e-6
    assert len(fit.history) == len(ck.loss_history_)
    assert np.abs(np.array(fit.history) - np.array(ck.loss_history_)).max() < 1e-6
    tasks = [f"{p}:{u}" for p, u in fit.units.select("prompt_id", "unit").iter_rows()]
    assert fit.units["consensus"].to_list() == ck.labels_.loc[tasks].to_list()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["vb", "em"])
def test_mace_matches_crowd_kit(seed, method):
    v = simulate(seed)
    ck = MACE(n_restarts=2, n_iter=30, method=method, random_state=seed).fit(to_pandas(v))
    fit = mace(v, n_iter=30, method=method, seed=seed)
    want = ck.probas_.loc[:, list(fit.classes)]
    got = ours_by_task(fit).loc[want.index]
    assert np.abs(got.to_numpy() - want.to_numpy()).max() < 1e-6
    assert np.abs(fit.judges["competence"].to_numpy() - ck.spamming_[:, 1]).max() < 1e-6
    assert np.abs(fit.params["strategy"] - ck.thetas_).max() < 1e-6


def test_mace_initialisation_is_crowd_kits():
    # no EM step: both report the posterior of the random start
    v = simulate(3, n_units=40)
    ck = MACE(n_restarts=1, n_iter=0, random_state=11).fit(to_pandas(v))
    fit = mace(v, n_iter=0, seed=11)
    assert np.abs(ours_by_task(fit).loc[ck.probas_.index, list(ck.probas_.columns)].to_numpy()
                  - ck.probas_.to_numpy()).max() < 1e-12


def test_competence_orders_the_judges_by_their_simulated_skill():
    v = simulate(4, n_units=400)
    for fit in (dawid_skene(v), mace(v)):
        comp = dict(fit.judges.select("judge", "competence").iter_rows())
        assert comp["j0"] > comp["j1"] > comp["j2"] > comp["j3"] > comp["j4"]


def test_consensus_is_null_when_the_posterior_ties():
    v = pl.DataFrame({"prompt_id": [1, 1], "unit": ["a", "a"], "judge": ["h1", "h2"], "label": ["yes", "no"]})
    fit = dawid_skene(v)
    assert fit.units["consensus"].to_list() == [None]
    assert fit.units["confidence"].to_list() == [0.5]


def test_bad_votes_are_named():
    with pytest.raises(ValueError, match="vote once per unit"):
        dawid_skene(pl.DataFrame({"prompt_id": [1, 1], "unit": ["a", "a"], "judge": ["h", "h"], "label": ["x", "y"]}))
    with pytest.raises(ValueError, match="outside"):
        mace(pl.DataFrame({"prompt_id": [1], "unit": ["a"], "judge": ["h"], "label": ["x"]}), classes=("y", "z"))
    with pytest.raises(ValueError, match="method must be"):
        mace(pl.DataFrame({"prompt_id": [1], "unit": ["a"], "judge": ["h"], "label": ["x"]}), method="gibbs")
