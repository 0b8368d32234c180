"""The report's `rankings` section: Bradley–Terry scores of the responses' generators (runs and models)
from the humans' verdicts and from each model judge's, and how far each model ranking agrees with the
humans' (`storage.analysis.bradley_terry`)."""

from __future__ import annotations

from typing import Any

import polars as pl

from storage.analysis.bradley_terry import bradley_terry, ranking_agreement
from storage.analysis.report.figures import HUMANS, LEVEL, _unavailable
from storage.analysis.report.loading import _Data
from storage.analysis.report.verdicts import _generators, _verdicts

PRIOR = 0.5  # virtual wins each way, used only when the plain MLE does not exist


def _fit(c: pl.DataFrame) -> dict[str, Any]:
    """Bradley–Terry on comparisons of generators (a, b, result); the MLE, else with PRIOR virtual wins."""
    try:
        t, prior = bradley_terry(c, level=LEVEL), 0.0
    except ValueError as e:
        if "groups never compared" in str(e):
            return {"available": False, "reason": str(e)}
        t, prior = bradley_terry(c, prior=PRIOR, level=LEVEL), PRIOR
    return {"available": True, "prior": prior, "n_verdicts": c.height,
            "scores": t.select("item", "score", "se", "low", "high", "wins", "losses", "ties", "n")}


def _by_generator(v: pl.DataFrame, gen: pl.DataFrame, level: str) -> pl.DataFrame:
    """Verdicts between responses → verdicts between their generators at `level` (run / model); verdicts
    between two responses of one generator say nothing about generators and are dropped."""
    g = gen.select("response_id", level)
    out = (v.join(g.rename({"response_id": "first", level: "a"}), on="first")
           .join(g.rename({"response_id": "second", level: "b"}), on="second"))
    return out.filter(pl.col("a") != pl.col("b")).select("judge", "source", "kind", "prompt_id", "a", "b", "result")


def _level(v: pl.DataFrame, gen: pl.DataFrame, level: str) -> dict[str, Any]:
    names = sorted(gen[level].unique().to_list())
    if len(names) < 2:
        return _unavailable(f"one generator: no ranking ({level}: {names[0] if names else 'none'})")
    c = _by_generator(v, gen, level)
    rankings = []
    human = c.filter(pl.col("source") == "human")
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
    return {"available": True, "level": LEVEL,
            "verdicts": ("human and model pairwise verdicts (every order of a model judge's verdict counts once) "
                         "and best-of-N picks, each pick counted as a win over every other response shown with "
                         "it (a model selector's: over the prompt's other candidate responses); ties count half"),
            "intervals": "Wald intervals from the Fisher information (verdicts treated as independent)",
            "runs": _level(v, gen, "run"), "models": _level(v, gen, "model")}
