"""Figure builders that more than one section uses: Krippendorff's α with its interval over coincidence
sums (pairwise and ratings) and judge-vs-consensus rows (pairwise, calibration and checklist)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from storage.analysis._frames import check_labels, check_unique
from storage.analysis.agreement import judge_vs_consensus, krippendorff_alpha_counts
from storage.analysis.consensus import consensus, vote_counts
from storage.analysis.report.figures import CONSENSUS, LOO, VOTE, _figure
from storage.analysis.report.intervals import _Boot, _cm_cis, _cm_per_prompt


def _coincidence_per_prompt(units: pl.DataFrame, counts: np.ndarray) -> pl.DataFrame:
    """Krippendorff's coincidence matrix summed per prompt (columns o<i>_<j>) from `vote_counts`' units and
    count matrix: α of any resample is a function of these sums (units with fewer than two values drop out, as
    in `krippendorff_alpha_counts`)."""
    k = counts.shape[1]
    c = counts.astype(np.float64)
    m = c.sum(axis=1)
    keep = m >= 2
    c, pid = c[keep], units["prompt_id"].to_numpy()[keep]
    w = c / (m[keep] - 1)[:, None]
    o = c[:, :, None] * w[:, None, :]
    idx = np.arange(k)
    o[:, idx, idx] -= w
    prompts, inv = np.unique(pid, return_inverse=True)
    tot = np.zeros((prompts.size, k * k))
    np.add.at(tot, inv.ravel(), o.reshape(-1, k * k))
    return pl.DataFrame({"prompt_id": prompts, **{f"o{i}_{j}": tot[:, i * k + j] for i in range(k) for j in range(k)}})


def _alpha_from_sums(domain: Sequence[Any], level: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """α per resample from summed coincidence matrices (the formula of `krippendorff_alpha_counts`)."""
    k = len(domain)

    def fn(t: dict[str, np.ndarray]) -> np.ndarray:
        o = np.stack([t[f"o{i}_{j}"] for i in range(k) for j in range(k)], axis=-1).reshape(-1, k, k)
        n_v = o.sum(axis=1)
        n = n_v.sum(axis=1)
        e = (n_v[:, :, None] * n_v[:, None, :] - np.eye(k)[None] * n_v[:, None, :]) / (n - 1)[:, None, None]
        if level == "nominal":
            d = np.broadcast_to(1.0 - np.eye(k), o.shape)
        elif level == "interval":
            x = np.asarray(domain, dtype=np.float64)
            d = np.broadcast_to((x[:, None] - x[None, :]) ** 2, o.shape)
        else:
            cs = np.cumsum(n_v, axis=1)
            i = np.arange(k)
            lo, hi = np.minimum.outer(i, i), np.maximum.outer(i, i)
            d = (cs[:, hi] - cs[:, lo] + n_v[:, lo] - (n_v[:, lo] + n_v[:, hi]) / 2.0) ** 2
        num, den = (o * d).sum(axis=(1, 2)), (e * d).sum(axis=(1, 2))
        out = np.full(num.shape, np.nan)
        np.divide(num, den, out=out, where=den != 0)
        return 1.0 - out
    return fn


AlphaLevel = Literal["nominal", "ordinal", "interval"]


def _alphas(votes: pl.DataFrame, levels: Sequence[AlphaLevel], domain: Sequence[Any], judges: list[str],
            boot: _Boot, value_col: str = "label") -> dict[str, dict[str, Any]]:
    """Krippendorff's α figure per level: the value of `krippendorff_alpha_counts` on the count matrix that
    `krippendorff_alpha` builds (checked and counted once for every level), bootstrap CI over coincidence sums."""
    v = votes.select("prompt_id", "unit", "judge", label=pl.col(value_col))
    check_unique(v, ("prompt_id", "unit", "judge"), "votes", "a judge may vote once per unit")
    check_labels(v, "label", domain, "votes")
    units, _, counts = vote_counts(v, domain)
    pairable = int((counts.sum(axis=1) >= 2).sum())
    if pairable == 0 or len(domain) < 2:
        note = "no unit with values from two or more judges" if pairable == 0 else "a single value"
        return {level: _figure(f"krippendorff_alpha_{level}", judges, None, 0, None, note=note) for level in levels}
    cis = boot.sums_many(_coincidence_per_prompt(units, counts), [_alpha_from_sums(domain, lv) for lv in levels])
    out = {}
    for level, ci in zip(levels, cis):
        value = krippendorff_alpha_counts(counts, np.asarray(domain, dtype=np.float64) if level == "interval"
                                          else None, level)
        out[level] = _figure(f"krippendorff_alpha_{level}", judges, value, pairable, ci, n_units_pairable=pairable)
    return out


def _vs_consensus_rows(human_votes: pl.DataFrame, model_votes: pl.DataFrame | None, classes: Sequence[str],
                       names: dict[str, dict[str, Any]], boot: _Boot) -> list[dict[str, Any]]:
    """`judge_vs_consensus` rows as figures (with bootstrap CIs from per-prompt confusion cells). `names` maps a
    frame judge name to {"judge": shown name, "order": ...} for models."""
    hv = human_votes.select(VOTE)
    table = judge_vs_consensus(hv, model_votes, classes)
    loo = consensus(hv, classes, leave_one_out=True).select(*VOTE, "consensus")
    parts = [loo]
    if model_votes is not None:
        full = consensus(hv, classes).select("prompt_id", "unit", "consensus")
        parts.append(model_votes.select(VOTE).join(full, on=["prompt_id", "unit"], how="left", maintain_order="left"))
    rows = pl.concat(parts).filter(pl.col("consensus").is_not_null())
    pp_all = _cm_per_prompt(rows, "consensus", "label", classes, ["judge"])
    k = len(classes)
    out = []
    for r in table.iter_rows(named=True):
        info = names.get(r["judge"], {"judge": r["judge"]})
        other = LOO if r["kind"] == "human" else CONSENSUS
        judges = [info["judge"], other]
        extra = {k2: v for k2, v in info.items() if k2 != "judge"}
        pp = pp_all.filter(pl.col("judge") == r["judge"]).drop("judge")
        cis = _cm_cis(boot, pp, k, ("accuracy", "precision_macro", "recall_macro", "f1_macro", "kappa"))
        out.append({
            "judge": info["judge"], "kind": r["kind"], **extra, "n": r["n"], "n_no_consensus": r["n_no_consensus"],
            **{m: _figure(m if m != "kappa" else "cohen_kappa", judges, r[m], r["n"], cis[m], **extra)
               for m in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "kappa")},
            "confusion": {"judges": judges, "classes": list(classes), "rows": other, "columns": info["judge"],
                          "matrix": r["confusion"] if r["confusion"] is not None else [[0] * k for _ in range(k)]}})
    return out
