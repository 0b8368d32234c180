"""The report's `ppi` section: judge-corrected estimates of a human-rated mean (the share of the model's
answers humans call correct, the mean human rating) from the human labels plus the model judge's
predictions on every response (PPI++, `storage.analysis.ppi`), beside the human-only interval."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis.consensus import consensus, rating_consensus
from storage.analysis.ppi import active_mean, ppi_summary
from storage.analysis.report.figures import CORRECT_CLASSES, LEVEL, _unavailable
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.verdicts import _generators, _verdicts
from storage.analysis.report.votes import _correct_votes, _human_ratings, _score_rows
from storage.models import HumanMethod

UNIFORM = "uniform"
ACTIVE = "active (weights from serving probabilities)"
NOT_ESTABLISHED = "not established: items were served in file order"
UNIFORM_SUBSET = "uniform subset (labels served otherwise set aside)"


def target_text(row: dict[str, Any]) -> str:
    """What a ppi (or planning) row estimates, for people.

    >>> target_text({"target": "win_rate", "a": "run 1", "b": "run 2"}), target_text({"target": "rating"})
    ('win rate run 1 over run 2', 'rating')
    """
    return f"win rate {row['a']} over {row['b']}" if row["target"] == "win_rate" else row["target"]


def _validity(serving: pl.DataFrame) -> tuple[str, str]:
    """(validity, note) from how the prompts were served (`loading._serving`)."""
    policies = set(serving["policy"].unique().to_list()) if serving.height else {"position"}
    if policies <= {"random"}:
        return UNIFORM, "the labelled prompts were served in uniform random order: the PPI intervals are valid"
    if "position" not in policies and serving["probability"].is_not_null().all():
        return ACTIVE, ("some prompts were served by a non-uniform policy: the estimates weight each labelled "
                        "item by 1 / its serving probability (active inference)")
    if "random" in policies:
        n = int((serving["policy"] != "random").sum())
        return UNIFORM_SUBSET, (f"the estimates use only the labels of prompts served in uniform random order; "
                                f"{n} labelled prompt(s) served otherwise (file order, routing, gold or labels "
                                "from outside the queue) count as unlabelled. The random picks are uniform over "
                                "the prompts still unserved when they were drawn")
    return NOT_ESTABLISHED, ("PPI is valid only when the labelled items are a uniform random sample of the "
                             "pool; these were not all served in uniform random order (file order, routing, gold "
                             "or imported labels), so the PPI figures are shown but flagged")


def _interval(r: dict[str, Any]) -> dict[str, Any]:
    return {"estimate": r["estimate"], "ci": [r["low"], r["high"]], "se": r["se"]}


def _row(judge: str, method: str, target: str, pool: pl.DataFrame, validity: str,
         serving: pl.DataFrame, **extra: Any) -> dict[str, Any]:
    """pool: prompt_id, response_id, y (null = unlabelled), f. A uniform subset keeps the labels of the
    random-served prompts only; the others' responses join the unlabelled pool with their predictions."""
    if validity == UNIFORM_SUBSET:
        random = serving.filter(pl.col("policy") == "random").select("prompt_id")
        aside = pool.filter(pl.col("y").is_not_null()).join(random, on="prompt_id", how="anti").height
        extra["n_labelled_set_aside"] = aside
        pool = pool.with_columns(y=pl.when(pl.col("prompt_id").is_in(random["prompt_id"].implode()))
                                 .then(pl.col("y")))
    lab = pool.filter(pl.col("y").is_not_null())
    unl = pool.filter(pl.col("y").is_null())
    base = {"judge": judge, "method": method, "target": target, "n_labelled": lab.height,
            "n_unlabelled": unl.height, **extra}
    if lab.height < 2:
        return {**base, "available": False, "reason": f"{lab.height} labelled response(s) with a prediction: "
                                                       "PPI needs at least 2"}
    if unl.height == 0:
        return {**base, "available": False, "reason": "every response with a prediction is labelled: the "
                                                       "human-only estimate is the whole answer"}
    y, f, fu = lab["y"].to_numpy(), lab["f"].to_numpy(), unl["f"].to_numpy()
    s = ppi_summary(y, f, fu, level=LEVEL)
    out = {**base, "available": True, "human_only": _interval(s["classical"]), "ppi_plus": _interval(s["ppi_plus"]),
           "lambda": s["ppi_plus"]["lam"], "effective_n": s["effective_n"], "labels_gained": s["labels_gained"],
           "sd_rectifier": s["ppi_plus"]["sd_rectifier"], "sd_imputed": s["ppi_plus"]["sd_imputed"]}
    if validity == ACTIVE:
        w = pool.join(serving.select("prompt_id", "probability"), on="prompt_id", how="left")
        a = active_mean(w["f"].to_numpy(), w["y"].fill_null(np.nan).to_numpy(), w["y"].is_not_null().to_numpy(),
                        w["probability"].to_numpy(), level=LEVEL)
        out["active"] = {**_interval(a), "lambda": a["lam"]}
    return out


def _ppi(d: _Data) -> dict[str, Any]:
    validity, note = _validity(d.serving)
    rows: list[dict[str, Any]] = []
    # correctness: the consensus label of each response (1 = correct) against the judge's probability
    votes = _correct_votes(d)
    if votes.height:
        cons = consensus(votes, CORRECT_CLASSES)
        labels = cons.filter(pl.col("consensus").is_not_null()).select(
            response_id=pl.col("unit").cast(pl.Int64), y=(pl.col("consensus") == "correct").cast(pl.Float64))
        voted = cons.select(response_id=pl.col("unit").cast(pl.Int64))
        scores = _score_rows(d, _mapped(d, "compared_with", [HumanMethod.CORRECT]))
        for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
            g = g.filter((pl.col("score") >= 0) & (pl.col("score") <= 1))
            # responses voted on without a consensus are neither labelled nor unlabelled: left out
            n_tied = g.join(voted, on="response_id", how="semi").join(labels, on="response_id", how="anti").height
            pool = (g.join(voted, on="response_id", how="anti").select("prompt_id", "response_id", f="score")
                    .with_columns(y=pl.lit(None, dtype=pl.Float64))
                    .vstack(g.join(labels, on="response_id").select("prompt_id", "response_id", f="score", y="y")))
            rows.append(_row(judge, method, "correct", pool, validity, d.serving, n_no_consensus=n_tied,
                             prediction="the judge's probability that the response is correct"))
    ratings = _human_ratings(d)
    if ratings.height:
        human = rating_consensus(ratings).select(response_id=pl.col("unit").cast(pl.Int64), y="consensus")
        scale = [float(v) for v in d.study.config.rating_scale] or [float(ratings["value"].min()),
                                                                     float(ratings["value"].max())]
        lo, hi = min(scale), max(scale)
        scores = _score_rows(d, _mapped(d, "compared_with", [HumanMethod.RATING]))
        for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
            smin, smax = float(g["score"].min()), float(g["score"].max())
            span = smax - smin
            mapped = (pl.lit(lo) + (pl.col("score") - smin) / span * (hi - lo)) if span > 0 else pl.lit((lo + hi) / 2)
            pool = g.join(human, on="response_id", how="left").select("prompt_id", "response_id", f=mapped, y="y")
            rows.append(_row(judge, method, "rating", pool, validity, d.serving,
                             prediction=(f"the judge's score mapped linearly from its range in the study "
                                         f"[{smin:g}, {smax:g}] onto the rating scale [{lo:g}, {hi:g}]")))
    rows.extend(_win_rates(d, validity))
    if not rows:
        return _unavailable("no model probability or score of a method compared with human correct labels or "
                            "ratings, and no model pairwise verdict between two generators")
    rows.sort(key=lambda r: (r["target"], r["method"], r["judge"]))
    policies = d.serving.group_by("policy").len().sort("policy")
    return {"available": True, "validity": validity, "validity_note": note, "level": LEVEL,
            "serving": {r["policy"]: int(r["len"]) for r in policies.iter_rows(named=True)},
            "estimator": "PPI++ with the variance-minimising lambda (Angelopoulos et al. 2023), normal intervals",
            "rows": rows}


def _win_rates(d: _Data, validity: str) -> list[dict[str, Any]]:
    """The win rate of one generator over another (runs, and models), per model judge with pairwise verdicts:
    per unit (prompt, pair of responses from generators a < b), y = the share of its human votes preferring
    a's response (ties half) and f = the same share over the judge's verdicts (its two shown orders
    averaged); the mean over every judged pair is the win rate."""
    v = _verdicts(d).filter(pl.col("kind") == "pairwise")
    if v.filter(pl.col("source") == "model").height == 0:
        return []
    gen = _generators(d)
    rows: list[dict[str, Any]] = []
    for level in ("run", "model"):
        g = gen.select("response_id", level)
        u = (v.join(g.rename({"response_id": "first", level: "g1"}), on="first")
             .join(g.rename({"response_id": "second", level: "g2"}), on="second")
             .filter(pl.col("g1") != pl.col("g2")))
        a_first = pl.col("g1") < pl.col("g2")
        u = u.select("source", "judge", "prompt_id", lo=pl.min_horizontal("first", "second"),
                     hi=pl.max_horizontal("first", "second"), a=pl.min_horizontal("g1", "g2"),
                     b=pl.max_horizontal("g1", "g2"),
                     s=pl.when(pl.col("result") == "tie").then(0.5)
                     .when((pl.col("result") == "a") == a_first).then(1.0).otherwise(0.0))
        keys = ["prompt_id", "lo", "hi", "a", "b"]
        human = u.filter(pl.col("source") == "human").group_by(keys).agg(y=pl.col("s").mean())
        model = u.filter(pl.col("source") == "model").group_by("judge", *keys).agg(f=pl.col("s").mean())
        for (judge, a, b), m in model.group_by("judge", "a", "b", maintain_order=True):
            pool = m.join(human, on=keys, how="left")
            no_prediction = human.filter((pl.col("a") == a) & (pl.col("b") == b)).join(m, on=keys, how="anti")
            rows.append(_row(judge, "pairwise", "win_rate", pool.select("prompt_id", "f", "y"), validity, d.serving,
                             level=level, a=a, b=b, n_labelled_without_prediction=no_prediction.height,
                             prediction=(f"the judge's verdicts between a {level} {a} and a {level} {b} response "
                                         f"(share preferring {a}, ties half, its shown orders averaged); the "
                                         f"target: the share of human votes preferring {a}")))
    rows.sort(key=lambda r: (r["level"], r["a"], r["b"], r["judge"]))
    return rows
