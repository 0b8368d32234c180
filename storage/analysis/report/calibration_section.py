"""The report's `calibration` section: model probabilities against the human consensus of correct /
incorrect labels (AUROC, Brier, ECE, reliability bins)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis.calibration import auroc_weighted, calibration_report, ece_weighted
from storage.analysis.consensus import consensus
from storage.analysis.report.figures import CONSENSUS, CORRECT_CLASSES, _figure, _unavailable
from storage.analysis.report.intervals import _Boot, _ratio
from storage.analysis.report.loading import _Data, _mapped
from storage.analysis.report.shared import _vs_consensus_rows
from storage.analysis.report.votes import _correct_votes, _score_rows
from storage.models import HumanMethod


def _calibration(d: _Data, boot: _Boot) -> dict[str, Any]:
    votes = _correct_votes(d)
    if votes.height == 0:
        return _unavailable("no human correct / incorrect labels")
    cons = consensus(votes, CORRECT_CLASSES)
    labels = cons.filter(pl.col("consensus").is_not_null()).select(
        "prompt_id", response_id=pl.col("unit").cast(pl.Int64), label=(pl.col("consensus") == "correct").cast(pl.Int64))
    human_rows = []
    if votes["judge"].n_unique() >= 2 and not d.main_only:
        human_rows = _vs_consensus_rows(votes, None, CORRECT_CLASSES, {}, boot)
    methods = _mapped(d, "compared_with", [HumanMethod.CORRECT])
    scores = _score_rows(d, methods)
    rows = []
    for (judge, method), g in scores.group_by("judge", "method", maintain_order=True):
        f = g.join(labels, on=["prompt_id", "response_id"], how="inner")
        bad = f.filter((pl.col("score") < 0) | (pl.col("score") > 1)).height
        f = f.filter((pl.col("score") >= 0) & (pl.col("score") <= 1)).select("prompt_id", prob="score", label="label")
        if f.height == 0:
            rows.append({"judge": judge, "method": method, "available": False,
                         "reason": "no response with both a probability and a human consensus label",
                         "n_out_of_range": bad})
            continue
        rep = calibration_report(f)
        judges = [judge, CONSENSUS]
        both = 0 < int(f["label"].sum()) < f.height
        prob, lab = f["prob"].to_numpy(), f["label"].to_numpy()

        def auc_fn(counts: np.ndarray, prompt: np.ndarray, prob: np.ndarray = prob,
                   lab: np.ndarray = lab) -> np.ndarray:
            return auroc_weighted(prob, lab, counts, prompt)

        def ece_fn(counts: np.ndarray, prompt: np.ndarray, prob: np.ndarray = prob,
                   lab: np.ndarray = lab) -> np.ndarray:
            return ece_weighted(prob, lab, counts, prompt)
        sq = f.select("prompt_id", se=(pl.col("prob") - pl.col("label")) ** 2, one=pl.lit(1, dtype=pl.Int64)).group_by(
            "prompt_id").agg(pl.col("se").sum(), pl.col("one").sum())
        extra = {"method": method}
        rows.append({
            "judge": judge, "method": method, "available": True, "n": rep["n"], "n_out_of_range": bad,
            "base_rate": _figure("base_rate", [CONSENSUS, CONSENSUS], rep["base_rate"], rep["n"], **extra),
            "auroc": _figure("auroc", judges, rep["auroc"], rep["n"],
                             boot.weighted(f["prompt_id"], auc_fn) if both else None, **extra),
            "brier": _figure("brier", judges, rep["brier"], rep["n"], boot.sums(sq, _ratio("se", "one")), **extra),
            "ece": _figure("ece", judges, rep["ece"], rep["n"],
                           boot.weighted(f["prompt_id"], ece_fn) if rep["n"] >= 10 else None,
                           bins=10, bins_used=rep["n_bins_used"], binning="equal-count, tied runs kept whole",
                           **extra),
            "rms_ce": _figure("rms_calibration_error", judges, rep["rms_ce"], rep["n"], **extra),
            "accuracy_above_half": _figure("accuracy_above_half", judges, rep["accuracy_above_half"],
                                           rep["n_above_half"], **extra),
            "reliability": rep["bins"] if rep["bins"] is not None else []})
    rows.sort(key=lambda r: (r["method"], r["judge"]))
    n_cons = labels.height
    out: dict[str, Any] = {"available": True, "n_units": cons.height, "n_consensus": n_cons,
                           "n_no_consensus": cons.height - n_cons,
                           "positive_label": "correct", "methods": rows, "human_vs_consensus": human_rows}
    if not rows:
        out["note"] = "no model probabilities of a method compared with human correct labels"
    return out
