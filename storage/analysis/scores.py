"""Model scores against humans: rank correlations per prompt and pooled, best-of-N top-1 selection accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import (
    as_float_array,
    average_ranks,
    check_unique,
    frame,
    safe_div,
)

# Above this many cells the pooled Kendall τ-b counts pairs block by block instead of through a table of
# distinct (x, y) values.
_TABLE_CELLS = 4_000_000


def _tau_b_counts(s: float, n0: float, tx: float, ty: float) -> float:
    den = (n0 - tx) * (n0 - ty)
    return float(s / np.sqrt(den)) if den > 0 else float("nan")


def kendall_tau_b(x: Any, y: Any, *, method: str = "auto") -> float:
    """Kendall's τ-b of two paired samples (ties corrected; nan when either side is constant), matching
    ``scipy.stats.kendalltau`` (variant "b"). `method`: ``"table"`` counts concordance over the table of
    distinct values with 2-D cumulative sums (fast for discrete scores), ``"blocks"`` compares all pairs
    block by block (O(n²) work, bounded memory), ``"auto"`` picks by table size.

    >>> # pairs (1,1),(2,3),(3,2): concordant 2, discordant 1, no ties → τ = 1/3
    >>> round(kendall_tau_b([1, 2, 3], [1, 3, 2]), 6)
    0.333333
    """
    xa, ya = as_float_array(x, "x"), as_float_array(y, "y")
    if xa.size != ya.size:
        raise ValueError(f"x has {xa.size} values but y has {ya.size}")
    n = xa.size
    if n < 2:
        return float("nan")
    ux, xi = np.unique(xa, return_inverse=True)
    uy, yi = np.unique(ya, return_inverse=True)
    n0 = n * (n - 1) / 2.0
    cx = np.bincount(xi.ravel()).astype(np.float64)
    cy = np.bincount(yi.ravel()).astype(np.float64)
    tx, ty = (cx * (cx - 1)).sum() / 2.0, (cy * (cy - 1)).sum() / 2.0
    if method == "auto":
        method = "table" if ux.size * uy.size <= _TABLE_CELLS else "blocks"
    if method == "table":
        t = np.zeros((ux.size, uy.size))
        np.add.at(t, (xi.ravel(), yi.ravel()), 1.0)
        # above[a, b] = Σ t[a' > a, b' > b]; below[a, b] = Σ t[a' > a, b' < b]
        suffix = np.cumsum(np.cumsum(t[::-1, ::-1], axis=0), axis=1)[::-1, ::-1]  # Σ t[a' >= a, b' >= b]
        above = np.zeros_like(t)
        above[:-1, :-1] = suffix[1:, 1:]
        rows_after = np.cumsum(t[::-1], axis=0)[::-1]  # Σ t[a' >= a, b]
        prefix_b = np.cumsum(rows_after, axis=1)  # Σ t[a' >= a, b' <= b]
        below = np.zeros_like(t)
        below[:-1, 1:] = prefix_b[1:, :-1]
        s = float((t * above).sum() - (t * below).sum())
    elif method == "blocks":
        s = 0.0
        step = max(1, 2_000_000 // n)
        for start in range(0, n, step):  # a loop over blocks of rows, each compared with all rows at once
            dx = np.sign(xa[start:start + step, None] - xa[None, :])
            dy = np.sign(ya[start:start + step, None] - ya[None, :])
            s += float((dx * dy).sum())
        s /= 2.0
    else:
        raise ValueError(f"method must be 'auto', 'table' or 'blocks', got {method!r}")
    return _tau_b_counts(s, n0, tx, ty)


def spearman(x: Any, y: Any) -> float:
    """Spearman's ρ: Pearson's r of the average ranks (nan when either side is constant), matching
    ``scipy.stats.spearmanr``.

    >>> spearman([1, 2, 3, 4], [10, 20, 20, 40])  # ranks 1,2,3,4 vs 1,2.5,2.5,4
    0.9486832980505138
    """
    xa, ya = as_float_array(x, "x"), as_float_array(y, "y")
    if xa.size != ya.size:
        raise ValueError(f"x has {xa.size} values but y has {ya.size}")
    if xa.size < 2:
        return float("nan")
    rx, ry = average_ranks(xa), average_ranks(ya)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(safe_div((rx * ry).sum(), np.sqrt((rx * rx).sum() * (ry * ry).sum())))


def rank_correlations_per_prompt(scores: Any, *, x: str = "score", y: str = "human",
                                 prompt_col: str = "prompt_id") -> pl.DataFrame:
    """Spearman ρ and Kendall τ-b within each prompt over its responses: ``prompt_id, n, constant,
    spearman, kendall`` (``constant`` = fewer than two responses, or x or y constant within the prompt;
    then both correlations are null).

    >>> s = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "score": [0.1, 0.5, 0.9, 0.3, 0.4],
    ...                   "human": [1, 3, 2, 5, 5]})
    >>> rank_correlations_per_prompt(s).rows()
    [(1, 3, False, 0.5, 0.3333333333333333), (2, 2, True, None, None)]
    """
    df = frame(scores, (prompt_col, x, y), "scores").select(
        prompt_col, _x=pl.col(x).cast(pl.Float64), _y=pl.col(y).cast(pl.Float64))
    bad = df.filter(~pl.col("_x").is_finite() | ~pl.col("_y").is_finite())
    if bad.height:
        raise ValueError(f"scores: {bad.height} non-finite value(s) in {x!r} or {y!r}")
    d = df.with_row_index("_r").with_columns(_rx=pl.col("_x").rank("average").over(prompt_col),
                                             _ry=pl.col("_y").rank("average").over(prompt_col))
    per = d.group_by(prompt_col, maintain_order=True).agg(
        n=pl.len().cast(pl.Int64), constant=(pl.col("_x").n_unique() < 2) | (pl.col("_y").n_unique() < 2),
        spearman=pl.corr("_rx", "_ry"))
    pairs = d.select(prompt_col, "_r", "_x", "_y").join(d.select(prompt_col, "_r", "_x", "_y"), on=prompt_col,
                                                        suffix="_b").filter(pl.col("_r") < pl.col("_r_b"))
    sx, sy = (pl.col("_x") - pl.col("_x_b")).sign(), (pl.col("_y") - pl.col("_y_b")).sign()
    kt = pairs.group_by(prompt_col).agg(_s=(sx * sy).sum(), _nx=(sx != 0).sum(), _ny=(sy != 0).sum())
    per = per.join(kt, on=prompt_col, how="left", maintain_order="left").with_columns(
        kendall=pl.col("_s") / (pl.col("_nx").cast(pl.Float64) * pl.col("_ny")).sqrt())
    return per.with_columns(
        spearman=pl.when(pl.col("constant")).then(None).otherwise(pl.col("spearman")),
        kendall=pl.when(pl.col("constant")).then(None).otherwise(pl.col("kendall")),
    ).select(prompt_col, "n", "constant", "spearman", "kendall")


def rank_correlations(scores: Any, *, x: str = "score", y: str = "human", prompt_col: str = "prompt_id",
                      per_prompt: pl.DataFrame | None = None) -> dict[str, float | int]:
    """A model score `x` against a human score `y` (e.g. the consensus rating) per response.

    Per prompt (a model is usually asked which of a prompt's responses is better): Spearman ρ and Kendall
    τ-b within each prompt, then averaged over prompts (``spearman_mean``, ``kendall_mean``, over
    ``n_prompts``); prompts with fewer than two responses or a constant score on either side are skipped and
    counted (``n_prompts_skipped``). Pooled: ρ and τ-b over all responses at once (``spearman_pooled``,
    ``kendall_pooled``, ``n_pooled``). `per_prompt`: ``rank_correlations_per_prompt`` of the same arguments when
    the caller has it already (used as given).

    >>> s = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "score": [0.1, 0.5, 0.9, 0.3, 0.4],
    ...                   "human": [1, 3, 2, 5, 5]})
    >>> r = rank_correlations(s)
    >>> r["spearman_mean"], r["n_prompts"], r["n_prompts_skipped"], r["n_pooled"]
    (0.5, 1, 1, 5)
    """
    per = (rank_correlations_per_prompt(scores, x=x, y=y, prompt_col=prompt_col) if per_prompt is None
           else per_prompt)
    used = per.filter(~pl.col("constant"))
    df = frame(scores, (prompt_col, x, y), "scores")
    xs, ys = df[x].cast(pl.Float64).to_numpy(), df[y].cast(pl.Float64).to_numpy()
    return {"spearman_mean": float(used["spearman"].mean()) if used.height else float("nan"),
            "kendall_mean": float(used["kendall"].mean()) if used.height else float("nan"),
            "n_prompts": used.height, "n_prompts_skipped": per.height - used.height,
            "spearman_pooled": spearman(xs, ys), "kendall_pooled": kendall_tau_b(xs, ys), "n_pooled": int(xs.size)}


def best_of_n_accuracy(human_picks: Any, selector_picks: Any, candidates: Any, *,
                       majority: str | None = "select_majority") -> pl.DataFrame:
    """Top-1 accuracy of each best-of-N selector against the human pick, beside the random baseline.

    Inputs: ``human_picks`` (``prompt_id, judge, response_id``: one pick per human and prompt),
    ``selector_picks`` (``prompt_id, selector, response_id``: one pick per selector and prompt),
    ``candidates`` (``prompt_id, response_id``: the N responses each prompt offered).

    Per selector, over the prompts where it picked:
    - ``acc_consensus``: a hit when its pick equals the human consensus pick (the plurality pick when it is a
      unique mode; prompts without one are left out and counted in ``n_no_consensus``), over ``n_consensus``
      prompts;
    - ``acc_human_mean``: per prompt the share of the humans whose pick it matches, averaged over
      ``n_prompts`` prompts (each prompt weighs the same, however many humans picked on it).
    The ``random`` row gives the expectation of a uniform pick: 1/N per prompt, averaged over the prompts with
    a consensus pick (``acc_consensus``) and with any human pick (``acc_human_mean``). ``kind`` marks the
    `majority` selector (majority vote / self-consistency) as ``"majority"``.

    >>> h = pl.DataFrame({"prompt_id": [1, 1, 1, 2, 2], "judge": ["a", "b", "c", "a", "b"],
    ...                   "response_id": [10, 10, 11, 20, 21]})
    >>> s = pl.DataFrame({"prompt_id": [1, 2], "selector": "select_usc", "response_id": [10, 21]})
    >>> c = pl.DataFrame({"prompt_id": [1] * 4 + [2] * 2, "response_id": [10, 11, 12, 13, 20, 21]})
    >>> # consensus: prompt 1 → 10 (2 of 3), prompt 2 → none (1-1); per human: (2/3 + 1/2) / 2 = 7/12
    >>> r = best_of_n_accuracy(h, s, c)
    >>> r.select("selector", "n_consensus", "acc_consensus", pl.col("acc_human_mean").round(4)).rows()
    [('select_usc', 1, 1.0, 0.5833), ('random', 1, 0.25, 0.375)]
    """
    h = frame(human_picks, ("prompt_id", "judge", "response_id"), "human_picks")
    s = frame(selector_picks, ("prompt_id", "selector", "response_id"), "selector_picks")
    c = frame(candidates, ("prompt_id", "response_id"), "candidates").select("prompt_id", "response_id").unique()
    check_unique(h, ("prompt_id", "judge"), "human_picks", "one pick per human and prompt")
    check_unique(s, ("prompt_id", "selector"), "selector_picks", "one pick per selector and prompt")
    for name, picks in (("human_picks", h), ("selector_picks", s)):
        stray = picks.join(c, on=["prompt_id", "response_id"], how="anti")
        if stray.height:
            raise ValueError(f"{name}: {stray.height} pick(s) of a response that is not among the prompt's "
                             f"candidates, e.g. {stray.row(0, named=True)}")
    n_cand = c.group_by("prompt_id").agg(_n=pl.len())
    votes = h.group_by("prompt_id", "response_id").agg(_c=pl.len())
    cons = (votes.with_columns(_top=pl.col("_c").max().over("prompt_id"))
            .with_columns(_ntop=(pl.col("_c") == pl.col("_top")).sum().over("prompt_id"))
            .group_by("prompt_id").agg(
                consensus=pl.col("response_id").filter((pl.col("_c") == pl.col("_top")) & (pl.col("_ntop") == 1))
                .first()))
    sc = s.select("prompt_id", "selector", pick="response_id").join(cons, on="prompt_id", how="inner")
    per_human = (s.select("prompt_id", "selector", pick="response_id")
                 .join(h.select("prompt_id", "response_id"), on="prompt_id", how="inner")
                 .group_by("selector", "prompt_id").agg(_hit=(pl.col("pick") == pl.col("response_id")).mean())
                 .group_by("selector").agg(n_prompts=pl.len().cast(pl.Int64), acc_human_mean=pl.col("_hit").mean()))
    with_cons = pl.col("consensus").is_not_null()
    by_cons = sc.group_by("selector").agg(
        n_consensus=with_cons.sum().cast(pl.Int64), n_no_consensus=(~with_cons).sum().cast(pl.Int64),
        acc_consensus=(pl.col("pick") == pl.col("consensus")).filter(with_cons).mean())
    sel = (s.select("selector").unique(maintain_order=True)
           .join(by_cons, on="selector", how="left", maintain_order="left")
           .join(per_human, on="selector", how="left", maintain_order="left")
           .with_columns(kind=pl.when((pl.col("selector") == majority) if majority is not None else pl.lit(False))
                         .then(pl.lit("majority"))
                         .otherwise(pl.lit("selector")),
                         n_consensus=pl.col("n_consensus").fill_null(0),
                         n_no_consensus=pl.col("n_no_consensus").fill_null(0),
                         n_prompts=pl.col("n_prompts").fill_null(0)))
    rnd_base = cons.join(n_cand, on="prompt_id", how="left").with_columns(_p=1.0 / pl.col("_n"))
    rnd = pl.DataFrame({
        "selector": ["random"], "kind": ["random"],
        "n_consensus": [int(rnd_base["consensus"].is_not_null().sum())],
        "n_no_consensus": [int(rnd_base["consensus"].is_null().sum())],
        "acc_consensus": [rnd_base.filter(with_cons)["_p"].mean()],
        "n_prompts": [rnd_base.height], "acc_human_mean": [rnd_base["_p"].mean()]},
        schema_overrides={"acc_consensus": pl.Float64, "acc_human_mean": pl.Float64})
    cols = ["selector", "kind", "n_consensus", "n_no_consensus", "acc_consensus", "n_prompts", "acc_human_mean"]
    return pl.concat([sel.select(cols), rnd.select(cols)], how="vertical_relaxed")
