"""Ranking consistency of two judges' scores of the same responses (CREAM, Wang et al. 2024: consecutive
iterations of a self-rewarding model judge the same responses; Kendall's tau between their rankings says how
far the newer judge can be trusted).

Input: one row per (prompt, response, judge) with ``prompt_id``, ``response_id``, ``judge`` and ``score``;
the two judges compared are named. Per prompt, over the responses *both* judges scored (n of them):

- concordant / discordant pairs: i < j with (a_i − a_j)(b_i − b_j) > 0 / < 0
- t_a, t_b: pairs tied in a's / b's scores (a pair tied in both counts in both)
- tau_b = (concordant − discordant) / sqrt((n0 − t_a)(n0 − t_b)), n0 = n(n − 1)/2

(Kendall's tau-b, scipy.stats.kendalltau's default). A prompt with fewer than two common responses
(``fewer_than_two_common``) or with every common response tied by one judge (tau-b undefined, ``all_tied``)
is left out and counted. The headline is the mean tau over the remaining prompts, each prompt weighing the
same, with a percentile cluster-bootstrap interval over prompts (`bootstrap_ci_from_sums`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from storage.analysis._frames import frame
from storage.analysis.bootstrap import bootstrap_ci_from_sums


def kendall_tau_b(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """Kendall's tau-b of two score lists of the same responses (nan when undefined).

    >>> kendall_tau_b([1, 2, 3], [1, 3, 2]), kendall_tau_b([1, 1, 2], [3, 2, 1])
    (0.3333333333333333, -0.8164965809277261)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"kendall_tau_b: {x.size} scores against {y.size}")
    n = x.size
    if n < 2:
        return math.nan
    iu = np.triu_indices(n, k=1)  # every pair once: n ≤ the responses of one prompt, so O(n²) is small
    dx, dy = np.sign(x[iu[0]] - x[iu[1]]), np.sign(y[iu[0]] - y[iu[1]])
    s = float(np.sum(dx * dy))  # concordant − discordant (a pair tied in either scores 0)
    n0 = n * (n - 1) / 2
    denom = math.sqrt((n0 - float(np.sum(dx == 0))) * (n0 - float(np.sum(dy == 0))))
    return s / denom if denom > 0 else math.nan


def ranking_consistency(scores: Any, judge_a: str, judge_b: str, *, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, Any]:
    """Per-prompt Kendall tau-b between `judge_a`'s and `judge_b`'s scores and their mean with an interval.

    Returns ``{"judges": [a, b], "per_prompt": [{"prompt_id", "tau_b", "n_responses"}] (prompt order),
    "mean_tau_b": {"estimate", "low", "high", "level", "n_resamples", "n_valid", "seed"} or None when no
    prompt has a defined tau, "n_prompts": prompts with a tau, "skipped": {reason: prompts}}``; rows of other
    judges are ignored, a (prompt, response, judge) scored twice is refused.

    >>> rows = [(p, r, j, s) for p, r, a, b in [(1, 1, 3, 2), (1, 2, 2, 1), (1, 3, 1, 3), (2, 4, 1, 1), (2, 5, 2, 2)]
    ...         for j, s in (("it0", a), ("it1", b))]
    >>> out = ranking_consistency(pl.DataFrame(rows, schema=["prompt_id", "response_id", "judge", "score"],
    ...                                        orient="row"), "it0", "it1", n_boot=100)
    >>> [p["tau_b"] for p in out["per_prompt"]], out["mean_tau_b"]["estimate"], out["skipped"]
    ([-0.3333333333333333, 1.0], 0.33333333333333337, {})
    """
    if judge_a == judge_b:
        raise ValueError(f"ranking consistency compares two different judges, got {judge_a!r} twice")
    df = frame(scores, ("prompt_id", "response_id", "judge", "score"), "judge scores")
    df = df.filter(pl.col("judge").is_in([judge_a, judge_b]))
    dup = df.group_by("prompt_id", "response_id", "judge").len().filter(pl.col("len") > 1)
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(f"judge scores: {dup.height} response(s) scored more than once by one judge, e.g. "
                         f"response {r['response_id']} of prompt {r['prompt_id']} by {r['judge']!r}")
    a = df.filter(pl.col("judge") == judge_a).select("prompt_id", "response_id", pl.col("score").alias("a"))
    b = df.filter(pl.col("judge") == judge_b).select("prompt_id", "response_id", pl.col("score").alias("b"))
    both = a.join(b, on=["prompt_id", "response_id"], how="inner").sort("prompt_id", "response_id")
    per_prompt: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for (pid,), g in both.group_by("prompt_id", maintain_order=True):
        tau = kendall_tau_b(g["a"].to_numpy(), g["b"].to_numpy())
        if math.isnan(tau):
            reason = "fewer_than_two_common" if g.height < 2 else "all_tied"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        per_prompt.append({"prompt_id": pid, "tau_b": tau, "n_responses": g.height})
    # Prompts one judge scored and the other did not at all have no common response either.
    only_one = set(df["prompt_id"].unique().to_list()) - set(both["prompt_id"].unique().to_list())
    if only_one:
        skipped["fewer_than_two_common"] = skipped.get("fewer_than_two_common", 0) + len(only_one)
    mean = None
    if per_prompt:
        pp = pl.DataFrame({"prompt_id": [p["prompt_id"] for p in per_prompt],
                           "tau": [p["tau_b"] for p in per_prompt], "one": [1] * len(per_prompt)})
        mean = bootstrap_ci_from_sums(pp, "prompt_id", lambda t: t["tau"] / t["one"], n=n_boot, seed=seed,
                                      level=level)
    return {"judges": [judge_a, judge_b], "per_prompt": per_prompt, "mean_tau_b": mean,
            "n_prompts": len(per_prompt), "skipped": skipped}
