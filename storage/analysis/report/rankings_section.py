"""The report's `rankings` section: Bradley–Terry scores of the responses' generators (runs and models)
from the humans' verdicts and from each model judge's, and how far each model ranking agrees with the
humans' (`storage.analysis.bradley_terry`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis.bradley_terry import fisher_covariance, fit_scores, ranking_agreement
from storage.analysis.ppi import z_value
from storage.analysis.report.figures import HUMANS, LEVEL, _unavailable
from storage.analysis.report.loading import _Data
from storage.analysis.report.verdicts import _generators, _verdicts

PRIOR = 0.5  # virtual wins each way, used only when the plain MLE does not exist


def _fit(counts: pl.DataFrame) -> dict[str, Any]:
    """Bradley–Terry (`storage.analysis.bradley_terry`: the same win matrix, fit and Fisher intervals as
    `bradley_terry`) from verdict counts ``a, b, result, n``: a study holds few generators and up to millions of
    verdicts, so the verdicts are counted first. The MLE, else with PRIOR virtual wins each way."""
    items = sorted(set(counts["a"].to_list()) | set(counts["b"].to_list()))
    index = {g: k for k, g in enumerate(items)}
    k = len(items)
    w = np.zeros((k, k))
    wins, losses, ties = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    for a, b, result, n in counts.select("a", "b", "result", "n").iter_rows():
        i, j = index[a], index[b]
        if result == "a":
            w[i, j] += n
            wins[i] += n
            losses[j] += n
        elif result == "b":
            w[j, i] += n
            wins[j] += n
            losses[i] += n
        else:  # a tie: half a win each way
            w[i, j] += n / 2
            w[j, i] += n / 2
            ties[i] += n
            ties[j] += n
    try:
        theta, prior = fit_scores(w, items=items), 0.0
    except ValueError as e:
        if "never compared" in str(e):
            return {"available": False, "reason": str(e)}
        theta, prior = fit_scores(w, prior=PRIOR, items=items), PRIOR
    se = np.sqrt(np.clip(np.diag(fisher_covariance(theta, w + prior * ((w + w.T) > 0))), 0.0, None))
    z = z_value(LEVEL)
    t = pl.DataFrame({"item": items, "score": theta, "se": se, "low": theta - z * se, "high": theta + z * se,
                      "wins": wins, "losses": losses, "ties": ties})
    t = t.with_columns(n=pl.col("wins") + pl.col("losses") + pl.col("ties")).sort("score", descending=True)
    return {"available": True, "prior": prior, "n_verdicts": int(counts["n"].sum()), "scores": t}


def _by_generator(v: pl.DataFrame, gen: pl.DataFrame, level: str) -> pl.DataFrame:
    """Verdicts between responses → counts of verdicts between their generators at `level` (run / model):
    ``source, judge, a, b, result, n``; verdicts between two responses of one generator say nothing about
    generators and are dropped."""
    out = v.rename({f"{level}_a": "a", f"{level}_b": "b"})
    return (out.filter(pl.col("a") != pl.col("b")).group_by("source", "judge", "a", "b", "result")
            .agg(n=pl.len().cast(pl.Int64)).sort("source", "judge", "a", "b", "result"))


def _level(v: pl.DataFrame, gen: pl.DataFrame, level: str) -> dict[str, Any]:
    names = sorted(gen[level].unique().to_list())
    if len(names) < 2:
        return _unavailable(f"one generator: no ranking ({level}: {names[0] if names else 'none'})")
    c = _by_generator(v, gen, level)
    rankings = []
    human = c.filter(pl.col("source") == "human").group_by("a", "b", "result").agg(pl.col("n").sum())
    human_fit = _fit(human) if human.height else _unavailable("no human verdict between two generators")
    rankings.append({"judge": HUMANS, "source": "human", **human_fit})
    for judge in sorted(c.filter(pl.col("source") == "model")["judge"].unique().to_list()):
        mc = c.filter((pl.col("source") == "model") & (pl.col("judge") == judge))
        fit = _fit(mc)
        row: dict[str, Any] = {"judge": judge, "source": "model", **fit}
        if fit["available"] and human_fit["available"]:
            row["vs_humans"] = ranking_agreement(human_fit["scores"], fit["scores"])
        rankings.append(row)
    return {"available": True, "generators": names, "rankings": rankings}


def _rankings(d: _Data) -> dict[str, Any]:
    gen = _generators(d)
    v = _verdicts(d)
    if v.height == 0:
        return _unavailable("no pairwise verdicts or best-of-N picks")
    # each side's run and model, joined once for both levels
    g = gen.select("response_id", "run", "model")
    v = (v.select("source", "judge", "first", "second", "result")
         .join(g.rename({"response_id": "first", "run": "run_a", "model": "model_a"}), on="first")
         .join(g.rename({"response_id": "second", "run": "run_b", "model": "model_b"}), on="second"))
    return {"available": True, "level": LEVEL,
            "verdicts": ("human and model pairwise verdicts (every order of a model judge's verdict counts once) "
                         "and best-of-N picks, each pick counted as a win over every other response shown with "
                         "it (a model selector's: over the prompt's other candidate responses); ties count half"),
            "intervals": "Wald intervals from the Fisher information (verdicts treated as independent)",
            "runs": _level(v, gen, "run"), "models": _level(v, gen, "model")}
