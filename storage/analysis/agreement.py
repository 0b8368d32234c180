"""Agreement between judges: confusion-matrix metrics and Cohen's κ against the human consensus, κ for every
pair of judges, MT-Bench raw agreement (FastChat ``compute_agreement.py``, setups S1/S2), Fleiss' κ,
Krippendorff's α, and rating agreement.

Vote frames have one row per vote: ``prompt_id``, ``unit`` (unique within the prompt), ``judge``, ``label``
(ratings: ``value``). A judge votes at most once per unit; for a model judged in both orders pass its combined
vote (``combine_orders``) or one order at a time (``order_variants``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from storage.analysis._frames import (
    PAIR_CLASSES,
    UNIT_KEYS,
    check_labels,
    check_unique,
    codes,
    frame,
    safe_div,
    zero_div,
)
from storage.analysis.consensus import (
    RATING_COLS,
    VOTE_COLS,
    consensus,
    rating_consensus,
    vote_counts,
)

# -- confusion-matrix metrics --------------------------------------------------------------------------------


def _label_series(x: Any, what: str) -> pl.Series:
    s = x if isinstance(x, pl.Series) else pl.Series(what, list(x) if not isinstance(x, np.ndarray) else x)
    if s.null_count():
        raise ValueError(f"{what}: {s.null_count()} missing label(s)")
    return s


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[Any] = PAIR_CLASSES) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, in the fixed order of `classes`
    (like ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=classes)``).

    >>> confusion_matrix(["first", "tie", "second", "first"], ["first", "first", "second", "tie"])
    array([[1, 0, 1],
           [0, 1, 0],
           [1, 0, 0]])
    """
    t, p = _label_series(y_true, "y_true"), _label_series(y_pred, "y_pred")
    if t.len() != p.len():
        raise ValueError(f"y_true has {t.len()} labels but y_pred has {p.len()}")
    for s, name in ((t, "y_true"), (p, "y_pred")):
        check_labels(pl.DataFrame({"v": s}), "v", classes, name)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (codes(t, classes), codes(p, classes)), 1)
    return cm


def _from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of a stack of confusion matrices (J × K × K, rows = truth): n, accuracy, macro precision /
    recall / F1 over all K classes (0 for a class with no predictions / no truth, as sklearn's
    zero_division=0), Cohen's κ (nan when chance agreement is 1)."""
    cm = cm.astype(np.float64)
    n = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true_k, pred_k = cm.sum(axis=2), cm.sum(axis=1)
    precision = zero_div(tp, pred_k)
    recall = zero_div(tp, true_k)
    f1 = zero_div(2 * tp, true_k + pred_k)
    po = safe_div(tp.sum(axis=1), n)
    pe = safe_div((true_k * pred_k).sum(axis=1), n * n)
    return {"n": n.astype(np.int64), "accuracy": po, "precision_macro": precision.mean(axis=1),
            "recall_macro": recall.mean(axis=1), "f1_macro": f1.mean(axis=1),
            "kappa": safe_div(po - pe, 1 - pe) if n.size else np.zeros(0)}


def classification_metrics(y_true: Any, y_pred: Any, classes: Sequence[Any] = PAIR_CLASSES) -> dict[str, Any]:
    """n, accuracy, macro precision / recall / F1 over all `classes` (a class absent from both sides counts
    0, as sklearn's ``precision_recall_fscore_support(average="macro", labels=classes, zero_division=0)``),
    Cohen's κ and the confusion matrix (rows = truth, columns = prediction, fixed class order).

    >>> m = classification_metrics(["first", "first", "second", "tie"], ["first", "second", "second", "tie"])
    >>> m["accuracy"], round(m["f1_macro"], 4), round(m["kappa"], 4)
    (0.75, 0.7778, 0.6364)
    """
    cm = confusion_matrix(y_true, y_pred, classes)
    out = {k: v[0].item() for k, v in _from_confusion(cm[None]).items()}
    out["confusion"] = cm
    return out


def cohen_kappa(a: Any, b: Any, classes: Sequence[Any] | None = None) -> float:
    """Cohen's κ of two label sequences over the same units (nan when both are constant on one label, where κ
    is undefined); matches ``sklearn.metrics.cohen_kappa_score``.

    >>> # po = 3/4; marginals a: first 2, second 1, tie 1; b: first 1, second 2, tie 1
    >>> # pe = (2*1 + 1*2 + 1*1) / 16 = 5/16; κ = (12/16 - 5/16) / (11/16) = 7/11
    >>> round(cohen_kappa(["first", "first", "second", "tie"], ["first", "second", "second", "tie"]), 6)
    0.636364
    """
    sa, sb = _label_series(a, "a"), _label_series(b, "b")
    if classes is None:
        classes = pl.concat([sa, sb.cast(sa.dtype)]).unique().sort().to_list()
    return float(_from_confusion(confusion_matrix(sa, sb, classes)[None])["kappa"][0])


def _per_judge(rows: pl.DataFrame, classes: Sequence[Any]) -> pl.DataFrame:
    """rows: judge, label, consensus (non-null) → one row of metrics per judge."""
    judges = rows.select("judge").unique(maintain_order=True)
    j = rows.select("judge").join(judges.with_row_index("_j"), on="judge", how="left",
                                  maintain_order="left")["_j"].to_numpy()
    k = len(classes)
    cm = np.zeros((judges.height, k, k), dtype=np.int64)
    np.add.at(cm, (j, codes(rows["consensus"], classes), codes(rows["label"], classes)), 1)
    m = _from_confusion(cm)
    return judges.with_columns(**{name: pl.Series(val) for name, val in m.items()},
                               confusion=pl.Series(cm.tolist(), dtype=pl.List(pl.List(pl.Int64))))


def judge_vs_consensus(human_votes: Any, model_votes: Any = None,
                       classes: Sequence[Any] = PAIR_CLASSES) -> pl.DataFrame:
    """Every judge against the human consensus: humans against the consensus of the OTHER humans
    (leave-one-out), models against the consensus of all humans. Units the humans judged without a
    (unique-mode) consensus are left out and counted in ``n_no_consensus``; a model's votes on units no human
    judged are left out and not counted (there was no consensus to reach).

    Returns one row per judge: ``judge, kind ('human'|'model'), n, n_no_consensus, accuracy,
    precision_macro, recall_macro, f1_macro, kappa, confusion`` (rows = consensus, columns = the judge, in
    the order of `classes`).

    >>> h = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "a", "b", "b", "b"],
    ...                   "judge": ["h1", "h2", "h3"] * 2,
    ...                   "label": ["first", "first", "second", "tie", "tie", "tie"]})
    >>> m = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b"], "judge": "m", "label": ["first", "first"]})
    >>> judge_vs_consensus(h, m).select("judge", "kind", "n", "n_no_consensus", "accuracy").rows()
    [('h1', 'human', 1, 1, 1.0), ('h2', 'human', 1, 1, 1.0), ('h3', 'human', 2, 0, 0.5), ('m', 'model', 2, 0, 0.5)]
    """
    loo = consensus(human_votes, classes, leave_one_out=True).select("judge", "label", "consensus")
    parts = [loo.with_columns(kind=pl.lit("human"), judged=pl.lit(True))]
    if model_votes is not None:
        model_votes = frame(model_votes, VOTE_COLS, "model_votes")
        check_labels(model_votes, "label", classes, "model_votes")
        check_unique(model_votes, (*UNIT_KEYS, "judge"), "model_votes",
                     "a judge may vote once per unit (combine a model's two orders with combine_orders)")
        both = set(loo["judge"].unique().to_list()) & set(model_votes["judge"].unique().to_list())
        if both:
            raise ValueError(f"judge name(s) {sorted(both)[:5]} appear among both the humans and the models")
        full = consensus(human_votes, classes).select(*UNIT_KEYS, "consensus", judged=pl.lit(True))
        mv = model_votes.select(*UNIT_KEYS, "judge", pl.col("label").cast(loo["label"].dtype)).join(
            full, on=list(UNIT_KEYS), how="left", maintain_order="left")
        parts.append(mv.select("judge", "label", "consensus", kind=pl.lit("model"),
                               judged=pl.col("judged").fill_null(False)))
    rows = pl.concat(parts)
    kinds = rows.group_by("judge", maintain_order=True).agg(
        kind=pl.col("kind").first(),
        n_no_consensus=(pl.col("consensus").is_null() & pl.col("judged")).sum().cast(pl.Int64))
    scored = _per_judge(rows.filter(pl.col("consensus").is_not_null()), classes)
    out = kinds.join(scored, on="judge", how="left", maintain_order="left").with_columns(pl.col("n").fill_null(0))
    return out.select("judge", "kind", "n", "n_no_consensus", "accuracy", "precision_macro", "recall_macro",
                      "f1_macro", "kappa", "confusion")


def pairwise_kappa(votes: Any, classes: Sequence[Any] = PAIR_CLASSES) -> pl.DataFrame:
    """Cohen's κ (and raw agreement) for every pair of judges, on the units both judged.

    Returns ``judge_a, judge_b, n, agreement, kappa`` (judge_a < judge_b; pairs with no shared unit are
    omitted; κ is nan when both judges used one and the same label throughout).

    >>> v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "c", "a", "b", "c"],
    ...                   "judge": ["x", "x", "x", "y", "y", "y"],
    ...                   "label": ["first", "second", "tie", "first", "second", "second"]})
    >>> # po = 2/3, pe = (1*1 + 1*2 + 1*0)/9 = 1/3, κ = (1/3)/(2/3) = 0.5
    >>> [(a, b, n, round(po, 4), round(k, 4)) for a, b, n, po, k in pairwise_kappa(v).rows()]
    [('x', 'y', 3, 0.6667, 0.5)]
    """
    votes = frame(votes, VOTE_COLS, "votes")
    check_labels(votes, "label", classes, "votes")
    check_unique(votes, (*UNIT_KEYS, "judge"), "votes", "a judge may vote once per unit")
    v = votes.select(*UNIT_KEYS, "judge", "label")
    pairs = v.join(v, on=list(UNIT_KEYS), suffix="_b").filter(pl.col("judge") < pl.col("judge_b"))
    aggs = [pl.len().alias("n"), (pl.col("label") == pl.col("label_b")).sum().alias("_agree")]
    for i, c in enumerate(classes):
        aggs += [(pl.col("label") == c).sum().alias(f"_a{i}"), (pl.col("label_b") == c).sum().alias(f"_b{i}")]
    g = pairs.group_by("judge", "judge_b").agg(aggs).sort("judge", "judge_b")
    n = g["n"].to_numpy().astype(np.float64)
    po = safe_div(g["_agree"].to_numpy(), n)
    pe = sum(g[f"_a{i}"].to_numpy() * g[f"_b{i}"].to_numpy() for i in range(len(classes))) / np.maximum(n * n, 1)
    return g.select(judge_a="judge", judge_b="judge_b", n=pl.col("n").cast(pl.Int64)).with_columns(
        agreement=pl.Series(po), kappa=pl.Series(safe_div(po - pe, 1 - pe)))


# -- MT-Bench raw agreement ----------------------------------------------------------------------------------

MTBENCH_COLS = ("s1_agree", "s1_n", "s2_agree", "s2_n")


def _names(judges: str | Sequence[str]) -> list[str]:
    out = [judges] if isinstance(judges, str) else list(judges)
    if not out:
        raise ValueError("a judge group must name at least one judge")
    return out


def mtbench_agreement(votes: Any, judges_1: str | Sequence[str], judges_2: str | Sequence[str], *,
                      tie: Any = "tie", by_prompt: bool = False) -> dict[str, float] | pl.DataFrame:
    """Raw agreement as in MT-Bench (Zheng et al. 2023; FastChat ``llm_judge/compute_agreement.py``).

    On every unit, every vote of a judge in `judges_1` is compared with every vote of a judge in `judges_2`,
    counting only pairs of non-identical individuals; counts are pooled over units (not averaged per unit).
    When both groups are the same set (e.g. human vs human), each unordered pair of votes by two different
    judges counts once. Two ties agree. S1 keeps ties as a class; S2 ("without ties") drops every
    comparison in which either vote is `tie`. Groups that overlap without being equal are rejected.

    Returns ``{"s1_agree", "s1_n", "s1_rate", "s2_agree", "s2_n", "s2_rate"}`` (rate nan when n = 0), or
    with ``by_prompt`` one row per prompt with ``prompt_id, s1_agree, s1_n, s2_agree, s2_n`` (for
    ``bootstrap_ci_from_sums``).

    >>> v = pl.DataFrame({"prompt_id": 1, "unit": ["u"] * 3, "judge": ["h1", "h2", "m"],
    ...                   "label": ["first", "tie", "first"]})
    >>> mtbench_agreement(v, "m", ["h1", "h2"])   # m-h1 agree, m-h2 differ; S2 keeps only m-h1
    {'s1_agree': 1, 's1_n': 2, 's1_rate': 0.5, 's2_agree': 1, 's2_n': 1, 's2_rate': 1.0}
    >>> mtbench_agreement(v, ["h1", "h2"], ["h1", "h2"])  # one pair h1-h2: differ; S2 drops it
    {'s1_agree': 0, 's1_n': 1, 's1_rate': 0.0, 's2_agree': 0, 's2_n': 0, 's2_rate': nan}
    """
    votes = frame(votes, VOTE_COLS, "votes")
    g1, g2 = _names(judges_1), _names(judges_2)
    same = set(g1) == set(g2)
    overlap = set(g1) & set(g2)
    if overlap and not same:
        raise ValueError(f"judge groups overlap in {sorted(overlap)[:5]} without being the same group")
    known = set(votes["judge"].unique().to_list())
    unknown = sorted((set(g1) | set(g2)) - known)
    if unknown:
        raise ValueError(f"judge(s) {unknown[:5]} have no votes")
    v = votes.filter(pl.col("judge").is_in(g1 + g2)).select(*UNIT_KEYS, "judge", "label")
    check_unique(v, (*UNIT_KEYS, "judge"), "votes",
                 "a judge may vote once per unit (combine a model's two orders with combine_orders)")
    keys = list(UNIT_KEYS)
    is_tie = pl.col("label") == tie
    if same:
        c = v.group_by(*keys, "label").agg(c=pl.len().cast(pl.Int64), t=is_tie.first())
        per_unit = c.group_by(keys).agg(
            n=pl.col("c").sum(), nt=pl.col("c").filter(pl.col("t")).sum(),
            s1_agree=(pl.col("c") * (pl.col("c") - 1) // 2).sum(),
            s2_agree=(pl.col("c") * (pl.col("c") - 1) // 2).filter(~pl.col("t")).sum())
        per_unit = per_unit.with_columns(s1_n=pl.col("n") * (pl.col("n") - 1) // 2,
                                         s2_n=(pl.col("n") - pl.col("nt")) * (pl.col("n") - pl.col("nt") - 1) // 2)
    else:
        def side(names: list[str], s: str) -> tuple[pl.DataFrame, pl.DataFrame]:
            sv = v.filter(pl.col("judge").is_in(names))
            by_label = sv.group_by(*keys, "label").agg(pl.len().cast(pl.Int64).alias(f"c{s}"))
            by_unit = sv.group_by(keys).agg(pl.len().cast(pl.Int64).alias(f"n{s}"),
                                            is_tie.sum().cast(pl.Int64).alias(f"t{s}"))
            return by_label, by_unit

        (l1, u1), (l2, u2) = side(g1, "1"), side(g2, "2")
        agree = l1.join(l2, on=[*keys, "label"]).group_by(keys).agg(
            s1_agree=(pl.col("c1") * pl.col("c2")).sum(),
            s2_agree=(pl.col("c1") * pl.col("c2")).filter(pl.col("label") != tie).sum())
        per_unit = u1.join(u2, on=keys).join(agree, on=keys, how="left").with_columns(
            pl.col("s1_agree", "s2_agree").fill_null(0),
            s1_n=pl.col("n1") * pl.col("n2"), s2_n=(pl.col("n1") - pl.col("t1")) * (pl.col("n2") - pl.col("t2")))
    per_prompt = (per_unit.group_by("prompt_id").agg(pl.col(*MTBENCH_COLS).sum().cast(pl.Int64))
                  .sort("prompt_id").select("prompt_id", *MTBENCH_COLS))
    if by_prompt:
        return per_prompt
    tot = {c: int(per_prompt[c].sum()) for c in MTBENCH_COLS}
    return {"s1_agree": tot["s1_agree"], "s1_n": tot["s1_n"], "s1_rate": float(safe_div(tot["s1_agree"], tot["s1_n"])),
            "s2_agree": tot["s2_agree"], "s2_n": tot["s2_n"], "s2_rate": float(safe_div(tot["s2_agree"], tot["s2_n"]))}


def mtbench_agreement_table(votes: Any, groups: Mapping[str, Sequence[str]], *, tie: Any = "tie") -> pl.DataFrame:
    """`mtbench_agreement` for every unordered pair of the named judge groups, and within each group of two
    or more judges: ``group_1, group_2, s1_agree, s1_n, s1_rate, s2_agree, s2_n, s2_rate``.

    >>> v = pl.DataFrame({"prompt_id": 1, "unit": ["u"] * 3, "judge": ["h1", "h2", "m"],
    ...                   "label": ["first", "first", "first"]})
    >>> mtbench_agreement_table(v, {"human": ["h1", "h2"], "model": ["m"]}).select("group_1", "group_2", "s1_n").rows()
    [('human', 'human', 1), ('human', 'model', 2)]
    """
    rows = []
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i:]:
            if a == b and len(set(groups[a])) < 2:
                continue
            rows.append({"group_1": a, "group_2": b, **mtbench_agreement(votes, groups[a], groups[b], tie=tie)})
    return pl.DataFrame(rows, schema={"group_1": pl.String, "group_2": pl.String, "s1_agree": pl.Int64,
                                      "s1_n": pl.Int64, "s1_rate": pl.Float64, "s2_agree": pl.Int64,
                                      "s2_n": pl.Int64, "s2_rate": pl.Float64})


# -- Fleiss' κ and Krippendorff's α ------------------------------------------------------------------------


def fleiss_kappa_counts(counts: Any) -> float:
    """Fleiss' κ from an items × categories count matrix with the same number m ≥ 2 of ratings per item:
    P_i = (Σ_j n_ij² − m) / (m(m−1)), p_j = Σ_i n_ij / (N m), κ = (mean P_i − Σ p_j²) / (1 − Σ p_j²)
    (nan when every rating falls in one category).

    >>> # Wikipedia's worked example: 10 subjects, 14 raters, 5 categories; P̄ = 0.378, P_e = 0.213
    >>> wiki = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    ...         [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    >>> round(fleiss_kappa_counts(wiki), 3)
    0.21
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] < 2:
        raise ValueError(f"Fleiss' kappa needs an items x categories matrix with >= 1 item and >= 2 categories, "
                         f"got shape {c.shape}")
    if (c < 0).any():
        raise ValueError("Fleiss' kappa: counts must be non-negative")
    m = c.sum(axis=1)
    if not np.all(m == m[0]) or m[0] < 2:
        raise ValueError(f"Fleiss' kappa needs the same number (>= 2) of ratings per item, got "
                         f"{sorted(set(m.astype(int).tolist()))[:5]}")
    p_i = ((c * c).sum(axis=1) - m) / (m * (m - 1))
    p_j = c.sum(axis=0) / c.sum()
    pe = float((p_j * p_j).sum())
    return float(safe_div(p_i.mean() - pe, 1 - pe))


def fleiss_kappa(votes: Any, overlap: int, classes: Sequence[Any] = PAIR_CLASSES, *,
                 order_col: str | None = None) -> dict[str, Any]:
    """Fleiss' κ over the units that reached the target `overlap` (number of judges per unit).

    Units with fewer votes are left out (``n_units_below``). Units with more votes (e.g. extra annotators
    routed to disagreements) keep their first `overlap` votes, by `order_col` (e.g. ``created_at``) or frame
    order, so that the extra, adaptively added votes do not bias κ (``n_units_truncated``).

    Returns ``{"kappa", "n_units", "n_units_below", "n_units_truncated", "overlap"}``.

    >>> v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "b", "b", "c"], "judge": ["x", "y", "x", "y", "x"],
    ...                   "label": ["first", "first", "tie", "second", "tie"]})
    >>> # units a (2,0,0) and b (0,1,1): P_a = 1, P_b = 0, P̄ = 0.5; p = (.5,.25,.25), P_e = .375; κ = .125/.625
    >>> fleiss_kappa(v, overlap=2)  # unit c has 1 vote: left out
    {'kappa': 0.2, 'n_units': 2, 'n_units_below': 1, 'n_units_truncated': 0, 'overlap': 2}
    """
    if overlap < 2:
        raise ValueError(f"Fleiss' kappa needs an overlap of at least 2 judges per unit, got {overlap}")
    votes = frame(votes, VOTE_COLS, "votes")
    if order_col is not None:
        if order_col not in votes.columns:
            raise ValueError(f"votes: order_col {order_col!r} is not a column; got {votes.columns}")
        votes = votes.sort(order_col, maintain_order=True)
    check_labels(votes, "label", classes, "votes")
    check_unique(votes, (*UNIT_KEYS, "judge"), "votes", "a judge may vote once per unit")
    keys = list(UNIT_KEYS)
    v = votes.select(*keys, "label").with_columns(_i=pl.int_range(pl.len()).over(keys), _n=pl.len().over(keys))
    per_unit = v.group_by(keys).agg(pl.col("_n").first())
    kept = v.filter((pl.col("_n") >= overlap) & (pl.col("_i") < overlap))
    out = {"kappa": float("nan"), "n_units": int((per_unit["_n"] >= overlap).sum()),
           "n_units_below": int((per_unit["_n"] < overlap).sum()),
           "n_units_truncated": int((per_unit["_n"] > overlap).sum()), "overlap": overlap}
    if kept.height:
        _, _, counts = vote_counts(kept, classes)
        out["kappa"] = fleiss_kappa_counts(counts)
    return out


def krippendorff_alpha_counts(value_counts: Any, value_domain: Sequence[Any] | None = None,
                              level: Literal["nominal", "ordinal", "interval"] = "nominal") -> float:
    """Krippendorff's α from a units × values count matrix (missing data allowed: any number of values per
    unit; units with fewer than two are not pairable and drop out). `value_domain` gives the values of the
    columns (ordered; numbers for interval; default 0..V-1).

    α = 1 − (n − 1) Σ o_ck δ_ck / Σ n_c n_k δ_ck with the coincidence matrix o, its marginals n_c and
    δ = [c ≠ k] (nominal), (Σ_{g between c and k} n_g − (n_c + n_k)/2)² (ordinal), (c − k)² (interval);
    nan when no disagreement is possible (a single value used).

    >>> # Krippendorff's textbook example (also in the `krippendorff` package docs): α nominal = 0.691
    >>> vc = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 2, 1], [0, 0, 0, 3],
    ...       [1, 0, 1, 0], [0, 2, 0, 0], [2, 0, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 2, 0], [0, 0, 0, 0],
    ...       [0, 0, 1, 1]]
    >>> round(krippendorff_alpha_counts(vc), 6)
    0.691358
    """
    c = np.asarray(value_counts, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"Krippendorff's alpha needs a units x values matrix with >= 2 values, got shape {c.shape}")
    domain = np.arange(c.shape[1], dtype=np.float64) if value_domain is None else np.asarray(value_domain)
    if len(domain) != c.shape[1]:
        raise ValueError(f"value_domain has {len(domain)} values but the count matrix has {c.shape[1]} columns")
    m = c.sum(axis=1)
    c = c[m >= 2]
    if c.shape[0] == 0:
        raise ValueError("Krippendorff's alpha needs at least one unit with values from two or more judges")
    w = c / (c.sum(axis=1) - 1)[:, None]
    o = c.T @ w - np.diag(w.sum(axis=0))
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1)
    if level == "nominal":
        d = 1.0 - np.eye(len(n_v))
    elif level == "interval":
        try:
            x = domain.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("interval alpha needs numeric values") from None
        d = (x[:, None] - x[None, :]) ** 2
    elif level == "ordinal":
        cs = np.cumsum(n_v)
        i = np.arange(len(n_v))
        lo, hi = np.minimum.outer(i, i), np.maximum.outer(i, i)
        d = (cs[hi] - cs[lo] + n_v[lo] - (n_v[lo] + n_v[hi]) / 2.0) ** 2
    else:
        raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval', got {level!r}")
    return float(1.0 - safe_div((o * d).sum(), (e * d).sum()))


def krippendorff_alpha(votes: Any, level: Literal["nominal", "ordinal", "interval"] = "nominal", *,
                       value_col: str = "label", value_domain: Sequence[Any] | None = None) -> float:
    """Krippendorff's α over all units (missing data allowed) from a vote frame (``prompt_id, unit, judge`` and
    `value_col`). The value domain defaults to the sorted distinct values (give it for ordinal strings or to
    fix the order, e.g. ``["first", "tie", "second"]``).

    >>> # a {1, 1}, b {2, 3, 3}, c {5} (one value: not pairable). Coincidences o_11 = 2, o_23 = o_32 = 1, o_33 = 1;
    >>> # n_1 = 2, n_2 = 1, n_3 = 2, n = 5; Σ o δ = 2·1² = 2; Σ n_c n_k δ = 2·(2·1·1 + 2·2·4 + 1·2·1) = 40;
    >>> # α = 1 − (n − 1)·2/40 = 0.8
    >>> v = pl.DataFrame({"prompt_id": 1, "unit": ["a", "a", "b", "b", "b", "c"],
    ...                   "judge": ["x", "y", "x", "y", "z", "x"], "value": [1, 1, 2, 3, 3, 5]})
    >>> round(krippendorff_alpha(v, "interval", value_col="value"), 4)
    0.8
    """
    votes = frame(votes, (*UNIT_KEYS, "judge", value_col), "votes")
    check_unique(votes, (*UNIT_KEYS, "judge"), "votes", "a judge may vote once per unit")
    if value_domain is None:
        if level == "ordinal" and votes[value_col].dtype == pl.String:
            raise ValueError("ordinal alpha on text labels needs an ordered value_domain")
        value_domain = votes[value_col].unique().sort().to_list()
    else:
        check_labels(votes, value_col, value_domain, "votes")
    if len(value_domain) < 2:
        raise ValueError(f"Krippendorff's alpha needs at least two distinct values, got {list(value_domain)}")
    counts_votes = votes.select(*UNIT_KEYS, "judge", label=pl.col(value_col))
    _, _, counts = vote_counts(counts_votes, value_domain)
    domain = np.asarray(value_domain, dtype=np.float64) if level == "interval" else None
    return krippendorff_alpha_counts(counts, domain, level)


# -- ratings -------------------------------------------------------------------------------------------------


def rating_agreement(human_ratings: Any, model_ratings: Any = None) -> pl.DataFrame:
    """Every judge's numeric ratings against the human consensus (the mean; for a human, the mean of the
    OTHER humans): ``judge, kind, n, mae, pearson, spearman`` (correlations pooled over the judge's units,
    Spearman on average ranks; nan when either side is constant).

    >>> h = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "c"] * 2, "judge": ["h1"] * 3 + ["h2"] * 3,
    ...                   "value": [1.0, 4.0, 7.0, 2.0, 4.0, 6.0]})
    >>> m = pl.DataFrame({"prompt_id": 1, "unit": ["a", "b", "c"], "judge": "m", "value": [3.0, 3.0, 5.0]})
    >>> # h1 vs h2's ratings: |1-2|, |4-4|, |7-6| → 2/3; m vs the means 1.5, 4, 6.5: (1.5 + 1 + 1.5)/3
    >>> rating_agreement(h, m).select("judge", "n", pl.col("mae").round(4)).rows()
    [('h1', 3, 0.6667), ('h2', 3, 0.6667), ('m', 3, 1.3333)]
    """
    loo = rating_consensus(human_ratings, leave_one_out=True).select("judge", "value", "consensus")
    parts = [loo.with_columns(kind=pl.lit("human"))]
    if model_ratings is not None:
        mr = frame(model_ratings, RATING_COLS, "model_ratings")
        check_unique(mr, (*UNIT_KEYS, "judge"), "model_ratings", "a judge may rate a unit once")
        full = rating_consensus(human_ratings).select(*UNIT_KEYS, "consensus")
        mv = mr.select(*UNIT_KEYS, "judge", pl.col("value").cast(pl.Float64)).join(
            full, on=list(UNIT_KEYS), how="left", maintain_order="left")
        parts.append(mv.select("judge", "value", "consensus", kind=pl.lit("model")))
    rows = pl.concat([p.with_columns(pl.col("value").cast(pl.Float64)) for p in parts]).filter(
        pl.col("consensus").is_not_null())
    rows = rows.with_columns(rv=pl.col("value").rank("average").over("judge"),
                             rc=pl.col("consensus").rank("average").over("judge"))
    return rows.group_by("judge", maintain_order=True).agg(
        kind=pl.col("kind").first(), n=pl.len().cast(pl.Int64),
        mae=(pl.col("value") - pl.col("consensus")).abs().mean(),
        pearson=pl.corr("value", "consensus"), spearman=pl.corr("rv", "rc"))
