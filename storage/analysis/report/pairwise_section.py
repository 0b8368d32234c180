"""The report's `pairwise` section: MT-Bench agreement, judges against the human consensus, Cohen's κ for
every pair, Fleiss' κ, Krippendorff's α and the order-swap figures of model judges."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import PAIR_CLASSES
from storage.analysis.agreement import fleiss_kappa, mtbench_agreement, pairwise_kappa
from storage.analysis.consensus import consensus
from storage.analysis.pairwise import order_swap, order_variants
from storage.analysis.report.figures import CONSENSUS, HUMANS, MAX_LISTED_UNITS, VOTE, _figure, _unavailable
from storage.analysis.report.intervals import _Boot, _cm_cis, _cm_per_prompt, _ratio
from storage.analysis.report.loading import _Data, _with_external
from storage.analysis.report.shared import _alphas, _vs_consensus_rows
from storage.analysis.report.turns import by_turn
from storage.analysis.report.votes import _combined_orders, _pairwise_frames


def _mtbench_row(votes: pl.DataFrame, g1: list[str], g2: list[str], judges: list[str], boot: _Boot,
                 **extra: Any) -> dict[str, Any]:
    pp = mtbench_agreement(votes, g1, g2, by_prompt=True)
    t = {c: int(pp[c].sum()) for c in ("s1_agree", "s1_n", "s2_agree", "s2_n")}
    s1 = _figure("mtbench_agreement_s1", judges, t["s1_agree"] / t["s1_n"] if t["s1_n"] else None, t["s1_n"],
                 boot.sums(pp.select("prompt_id", "s1_agree", "s1_n"), _ratio("s1_agree", "s1_n")),
                 agree=t["s1_agree"], **extra)
    s2 = _figure("mtbench_agreement_s2", judges, t["s2_agree"] / t["s2_n"] if t["s2_n"] else None, t["s2_n"],
                 boot.sums(pp.select("prompt_id", "s2_agree", "s2_n"), _ratio("s2_agree", "s2_n")),
                 agree=t["s2_agree"], **extra)
    return {"judges": judges, **extra, "s1": s1, "s2": s2}


def _kappa_matrix(votes: pl.DataFrame, classes: Sequence[str], boot: _Boot) -> list[dict[str, Any]]:
    pk = pairwise_kappa(votes.select(VOTE), classes)
    v = votes.select(VOTE)
    pairs = v.join(v, on=["prompt_id", "unit"], suffix="_b").filter(pl.col("judge") < pl.col("judge_b"))
    pp_all = _cm_per_prompt(pairs, "label", "label_b", classes, ["judge", "judge_b"])
    out = []
    for r in pk.iter_rows(named=True):
        pp = pp_all.filter((pl.col("judge") == r["judge_a"]) & (pl.col("judge_b") == r["judge_b"])).drop(
            "judge", "judge_b")
        cis = _cm_cis(boot, pp, len(classes), ("accuracy", "kappa"))
        judges = [r["judge_a"], r["judge_b"]]
        out.append({"judges": judges, "n": r["n"],
                    "agreement": _figure("raw_agreement", judges, r["agreement"], r["n"], cis["accuracy"]),
                    "kappa": _figure("cohen_kappa", judges, r["kappa"], r["n"], cis["kappa"])})
    return out


def fleiss_overlap(configured: int | None, votes_per_unit: Sequence[int]) -> tuple[int, str]:
    """The number of raters per unit Fleiss' κ is computed at, and where it came from: the study's configured
    overlap, else the most common number of human votes per unit (the larger on a tie), so that a few units
    with extra annotators cannot shrink κ to a handful of units.

    >>> fleiss_overlap(None, [3, 3, 3, 2, 5])
    (3, 'most common human votes per unit')
    >>> fleiss_overlap(None, [2, 2, 4, 4, 7])
    (4, 'most common human votes per unit')
    >>> fleiss_overlap(2, [3, 3, 3])
    (2, 'study config')
    """
    if configured:
        return configured, "study config"
    counts: dict[int, int] = {}
    for n in votes_per_unit:
        counts[n] = counts.get(n, 0) + 1
    return max(counts, key=lambda n: (counts[n], n)), "most common human votes per unit"


def _fleiss(votes: pl.DataFrame, overlap: int, classes: Sequence[str], boot: _Boot, source: str) -> dict[str, Any]:
    judges = [HUMANS, HUMANS]
    if overlap < 2:
        return _figure("fleiss_kappa", judges, None, 0, None, overlap=overlap, overlap_source=source,
                       n_units_below=0, n_units_truncated=0, note="needs a target overlap of two or more humans")
    v = votes.select(*VOTE, "created_at")
    r = fleiss_kappa(v, overlap, classes, order_col="created_at")
    # the same units and votes as fleiss_kappa (first `overlap` votes by created_at), summed per prompt
    kept = (v.sort("created_at", maintain_order=True)
            .with_columns(_i=pl.int_range(pl.len()).over("prompt_id", "unit"), _n=pl.len().over("prompt_id", "unit"))
            .filter((pl.col("_n") >= overlap) & (pl.col("_i") < overlap)))
    ci = None
    if kept.height:
        per_unit = kept.group_by("prompt_id", "unit").agg(
            *[(pl.col("label") == c).sum().cast(pl.Int64).alias(f"n{i}") for i, c in enumerate(classes)])
        sq = sum(pl.col(f"n{i}") ** 2 for i in range(len(classes)))
        pp = per_unit.with_columns(_p=(sq - overlap) / (overlap * (overlap - 1))).group_by("prompt_id").agg(
            *[pl.col(f"n{i}").sum() for i in range(len(classes))], sum_p=pl.col("_p").sum(),
            units=pl.len().cast(pl.Int64))
        k = len(classes)

        def fn(t: dict[str, np.ndarray]) -> np.ndarray:
            tot = np.stack([t[f"n{i}"] for i in range(k)], axis=-1)
            pj = tot / tot.sum(axis=1, keepdims=True)
            pe = (pj * pj).sum(axis=1)
            return (t["sum_p"] / t["units"] - pe) / (1 - pe)
        ci = boot.sums(pp, fn)
    return _figure("fleiss_kappa", judges, r["kappa"], r["n_units"], ci, overlap=overlap, overlap_source=source,
                   n_units_below=r["n_units_below"], n_units_truncated=r["n_units_truncated"])


def _order_swap_rows(orders: pl.DataFrame, combined: pl.DataFrame, human_votes: pl.DataFrame,
                     boot: _Boot) -> list[dict[str, Any]]:
    table = order_swap(orders, human_votes.select(VOTE), orders_combined=combined)
    full = consensus(human_votes.select(VOTE)).select("prompt_id", "unit", "consensus")
    comb = combined.filter(pl.col("n_orders") == 2).join(full, on=["prompt_id", "unit"], how="left")
    scored = pl.col("consensus").is_not_null()
    per = comb.group_by("judge", "prompt_id").agg(
        units=pl.len().cast(pl.Int64), consistent=pl.col("consistent").sum().cast(pl.Int64),
        first=((pl.col("label_ab") == "first").cast(pl.Int64) + (pl.col("label_ba") == "second").cast(pl.Int64)).sum(),
        decisive=((pl.col("label_ab") != "tie").cast(pl.Int64) + (pl.col("label_ba") != "tie").cast(pl.Int64)).sum(),
        scored=scored.sum().cast(pl.Int64),
        hit_ab=((pl.col("label_ab") == pl.col("consensus")) & scored).sum().cast(pl.Int64),
        hit_ba=((pl.col("label_ba") == pl.col("consensus")) & scored).sum().cast(pl.Int64),
        hit_c=((pl.col("label") == pl.col("consensus")) & scored).sum().cast(pl.Int64))
    out = []
    for r in table.iter_rows(named=True):
        m = r["judge"]
        pp = per.filter(pl.col("judge") == m).drop("judge")
        vs = [m, CONSENSUS]
        consistency, first, hit_ab, hit_ba, hit_mean, hit_c = boot.sums_many(pp, [
            _ratio("consistent", "units"), _ratio("first", "decisive"), _ratio("hit_ab", "scored"),
            _ratio("hit_ba", "scored"), lambda t: (t["hit_ab"] + t["hit_ba"]) / (2 * t["scored"]),
            _ratio("hit_c", "scored")])
        out.append({
            "judge": m, "n_units": r["n_units"], "n_scored": r["n_scored"],
            "consistency": _figure("order_consistency", [m, m], r["consistency"], r["n_units"], consistency,
                                   orders=["ab", "ba"]),
            "first_position_rate": _figure("first_position_rate", [m, m], r["first_position_rate"], r["n_decisive"],
                                           first),
            "tie_rate": _figure("tie_rate", [m, m], r["tie_rate"], 2 * r["n_units"]),
            "both_first_rate": _figure("both_first_rate", [m, m], r["both_first_rate"], r["n_units"]),
            "both_second_rate": _figure("both_second_rate", [m, m], r["both_second_rate"], r["n_units"]),
            "accuracy_ab": _figure("accuracy", vs, r["acc_ab"], r["n_scored"], hit_ab, order="ab"),
            "accuracy_ba": _figure("accuracy", vs, r["acc_ba"], r["n_scored"], hit_ba, order="ba"),
            "accuracy_order_mean": _figure("accuracy_order_mean", vs, r["acc_order_mean"], r["n_scored"], hit_mean),
            "accuracy_combined": _figure("accuracy", vs, r["acc_combined"], r["n_scored"], hit_c,
                                         order="combined")})
    return out


def _pairwise(d: _Data, boot: _Boot) -> dict[str, Any]:
    human_votes, orders = _pairwise_frames(d)
    if human_votes.height == 0:
        return _unavailable("no human pairwise votes")
    humans = sorted(human_votes["judge"].unique().to_list())
    models = sorted(orders["judge"].unique().to_list()) if orders is not None else []
    comb_orders = _combined_orders(d, orders) if orders is not None else None
    variants = order_variants(orders, orders_combined=comb_orders) if orders is not None else None
    combined = variants.filter(pl.col("judge").is_in(models)) if variants is not None else None
    names: dict[str, dict[str, Any]] = {h: {"judge": h, "order": None} for h in humans}
    for m in models:
        names.update({m: {"judge": m, "order": "combined"}, f"{m}#ab": {"judge": m, "order": "ab"},
                      f"{m}#ba": {"judge": m, "order": "ba"}})
    cons = _with_external(consensus(human_votes.select(VOTE)), d.prompts)
    no_cons = cons.filter(pl.col("consensus").is_null()).sort("prompt_id", "unit")
    units = {"n_units": cons.height, "n_with_consensus": cons.height - no_cons.height,
             "n_no_consensus": no_cons.height,
             "no_consensus": no_cons.head(MAX_LISTED_UNITS).select("prompt_id", "external_id", "unit", "n_votes"),
             "n_units_model_judged": (combined.select("prompt_id", "unit").unique().height
                                      if combined is not None else 0)}

    all_votes = pl.concat([human_votes.select(VOTE), variants]) if variants is not None else human_votes.select(VOTE)
    agreement = []
    if len(humans) >= 2:
        agreement.append(_mtbench_row(all_votes, humans, humans, [HUMANS, HUMANS], boot, order=None))
    present = set(all_votes["judge"].unique().to_list())
    # a model against the humans counts only units the humans judged: the rest need not be passed on
    near = all_votes.join(human_votes.select("prompt_id", "unit").unique(), on=["prompt_id", "unit"], how="semi")
    near_judges = set(near["judge"].unique().to_list())
    orders_shown = (("combined",) if d.main_only else ("combined", "ab", "ba"))
    for m in models:
        for name, order in ((m, "combined"), (f"{m}#ab", "ab"), (f"{m}#ba", "ba")):
            if name in present and order in orders_shown:
                agreement.append(_mtbench_row(near if name in near_judges else all_votes, [name], humans,
                                              [m, HUMANS], boot, order=order))
    if d.main_only:  # the headline's main figure (S1 against the humans) and its ceiling: nothing else
        return {"available": True, "classes": list(PAIR_CLASSES), "humans": humans, "models": models,
                "units": units, "agreement": agreement, "vs_consensus": []}
    for a, b in itertools.combinations(models, 2):
        agreement.append(_mtbench_row(all_votes, [a], [b], [a, b], boot, order="combined"))

    vs = _vs_consensus_rows(human_votes, variants, PAIR_CLASSES, names, boot)
    kappa_votes = pl.concat([human_votes.select(VOTE), combined]) if combined is not None else human_votes.select(VOTE)
    overlap, source = fleiss_overlap(d.study.config.overlap,
                                     human_votes.group_by("prompt_id", "unit").len()["len"].to_list())
    return {
        "available": True, "classes": list(PAIR_CLASSES), "humans": humans, "models": models, "units": units,
        "agreement": agreement,
        "vs_consensus": vs,
        "kappa_matrix": {"judges": humans + models, "pairs": _kappa_matrix(kappa_votes, PAIR_CLASSES, boot)},
        "fleiss_kappa": _fleiss(human_votes, overlap, PAIR_CLASSES, boot, source),
        "krippendorff_alpha": _alphas(human_votes, ["nominal"], PAIR_CLASSES, [HUMANS, HUMANS], boot)["nominal"],
        "order_swap": (_order_swap_rows(orders, comb_orders, human_votes, boot)
                       if orders is not None and comb_orders is not None else []),
        "by_turn": by_turn(d),
    }
