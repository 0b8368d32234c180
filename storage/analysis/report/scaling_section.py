"""The report's `scaling` section: the inference-time scaling curve of principles_critique (DeepSeek-GRM,
Liu et al. 2025): its agreement with the humans when k = 1, 2, 4, 8 samples are summed, from one run.

Sample j's seed and shown order depend only on j (backend/methods/principles.py), so the per-sample rows
s0..s(k-1) of a run with more samples are the samples a run with k draws: the k-score of a response is their
sum. The agreement is the method's own comparison in the report (`scores` section, headline): Spearman ρ per
prompt against the humans' mean rating, averaged over prompts (Kendall τ-b beside it)."""

from __future__ import annotations

import html
from typing import Any

import polars as pl

from storage.analysis.bootstrap import bootstrap_ci_from_sums
from storage.analysis.consensus import rating_consensus
from storage.analysis.report.figures import LEVEL, _est, _num, _unavailable
from storage.analysis.report.loading import _Data
from storage.analysis.report.votes import _human_ratings
from storage.analysis.scores import rank_correlations, rank_correlations_per_prompt
from storage.models import HumanMethod

METHOD = "principles_critique"
KS = (1, 2, 4, 8)


def _interval(per: pl.DataFrame, col: str, value: float | None, n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"estimate": value, "ci": None}
    if n_boot > 0 and per.height and value is not None:
        ci = bootstrap_ci_from_sums(per.select("prompt_id", col, "one"), "prompt_id", lambda t: t[col] / t["one"],
                                    n=n_boot, seed=seed, level=LEVEL)
        out["ci"] = [ci["low"], ci["high"]]
    return out


def _point(samples: pl.DataFrame, human: pl.DataFrame, k: int, n_boot: int, seed: int) -> dict[str, Any]:
    """samples: prompt_id, response_id, j, value (parsed samples). The k-score needs all of s0..s(k-1)."""
    first = samples.filter(pl.col("j") < k).group_by("prompt_id", "response_id").agg(
        score=pl.col("value").sum(), n=pl.len())
    complete = first.filter(pl.col("n") == k)
    f = complete.join(human, on=["prompt_id", "response_id"]).select("prompt_id", "score", "human")
    point: dict[str, Any] = {"k": k, "n_responses": f.height, "n_incomplete": first.height - complete.height}
    if f.height == 0:
        return {**point, "available": False, "reason": f"no response with all of s0..s{k - 1} and a human rating"}
    per_prompt = rank_correlations_per_prompt(f)
    rc = rank_correlations(f, per_prompt=per_prompt)
    per = per_prompt.filter(~pl.col("constant")).select("prompt_id", rho="spearman", tau="kendall",
                                                        one=pl.lit(1, dtype=pl.Int64))
    return {**point, "available": True, "n_prompts": rc["n_prompts"], "n_prompts_skipped": rc["n_prompts_skipped"],
            "spearman_mean": _interval(per, "rho", _num(rc["spearman_mean"]), n_boot, seed),
            "kendall_mean": _interval(per, "tau", _num(rc["kendall_mean"]), n_boot, seed)}


def _scaling(d: _Data, n_boot: int, seed: int) -> dict[str, Any]:
    info = d.mapping.get(METHOD)
    rows = d.model.filter((pl.col("method") == METHOD) & pl.col("variant").str.contains(r"^s\d+$")
                          & pl.col("response_id").is_not_null() & pl.col("value").is_not_null())
    if rows.height == 0:
        return _unavailable(f"no per-sample rows of {METHOD}")
    if info is None or info.get("compared_with") != HumanMethod.RATING:
        return _unavailable(f"{METHOD} is not mapped to the human rating it is compared with (method table)")
    ratings = _human_ratings(d)
    if ratings.height == 0:
        return _unavailable("no human ratings")
    human = rating_consensus(ratings).select("prompt_id", response_id=pl.col("unit").cast(pl.Int64),
                                             human="consensus")
    samples = rows.select("judge", "prompt_id", "response_id", "value",
                          j=pl.col("variant").str.slice(1).cast(pl.Int64))
    judges = []
    for (judge,), g in samples.group_by("judge", maintain_order=True):
        k_max = int(g["j"].max()) + 1
        judges.append({"judge": judge, "k_max": k_max,
                       "points": [_point(g, human, k, n_boot, seed) for k in KS if k <= k_max]})
    judges.sort(key=lambda r: r["judge"])
    return {"available": True, "method": METHOD, "level": LEVEL, "ks": list(KS),
            "metric": "spearman_per_prompt_mean",
            "scores": "the sum of the first k samples' 1–10 scores (s0..s(k-1)); a response missing one of them "
                      "(a failed sample) is left out at that k (n_incomplete)",
            "human": "the humans' mean rating", "judges": judges}


def _scaling_svg(judges: list[dict[str, Any]], title: str) -> str:
    """Spearman ρ (mean over prompts) against k on a log₂ axis, one line per judge with interval bars."""
    colors = ["#3367d6", "#d93025", "#188038", "#f29900", "#a142f4", "#12a4af"]
    w, h, pad, legend = 460, 260, 40, 150
    sx, sy = w - 2 * pad - legend, h - 2 * pad

    def x(k: int) -> float:
        return pad + (k.bit_length() - 0.5) / 4 * sx  # k = 1, 2, 4, 8 evenly spaced, clear of the frame

    def y(v: float) -> float:
        return h - pad - (v + 1) / 2 * sy  # ρ from −1 to 1
    parts = [(f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
              f'aria-label="{html.escape(title, quote=True)}">'), f'<title>{html.escape(title)}</title>',
             f'<rect x="{pad}" y="{pad}" width="{sx}" height="{sy}" fill="#fafafa" stroke="#999"/>',
             f'<line x1="{pad}" y1="{y(0)}" x2="{pad + sx}" y2="{y(0)}" stroke="#bbb" stroke-dasharray="4 3"/>',
             f'<text x="{pad + sx / 2}" y="{pad - 14}" font-size="11" text-anchor="middle">{html.escape(title)}</text>',
             f'<text x="{pad + sx / 2}" y="{h - 8}" font-size="11" text-anchor="middle">k (samples summed)</text>',
             f'<text x="12" y="{h / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {h / 2})">'
             f'Spearman ρ vs humans</text>']
    for k in KS:
        parts.append(f'<text x="{x(k):.1f}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{k}</text>')
    for t in (-1.0, 0.0, 1.0):
        parts.append(f'<text x="{pad - 6}" y="{y(t) + 3:.1f}" font-size="10" text-anchor="end">{t:g}</text>')
    for n, r in enumerate(judges):
        c = colors[n % len(colors)]
        pts = [(p["k"], p["spearman_mean"]) for p in r["points"]
               if p.get("available") and _num(p["spearman_mean"].get("estimate")) is not None]
        for k, s in pts:
            ci = s.get("ci") or [None, None]
            if _num(ci[0]) is not None and _num(ci[1]) is not None:
                parts.append(f'<line x1="{x(k):.1f}" y1="{y(ci[0]):.1f}" x2="{x(k):.1f}" y2="{y(ci[1]):.1f}" '
                             f'stroke="{c}" stroke-opacity="0.5" stroke-width="2"/>')
            parts.append(f'<circle cx="{x(k):.1f}" cy="{y(s["estimate"]):.1f}" r="3.5" fill="{c}"/>')
        if len(pts) > 1:
            line = " ".join(f"{x(k):.1f},{y(s['estimate']):.1f}" for k, s in pts)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.8"/>')
        name = str(r["judge"])
        short = name if len(name) <= 24 else name[:23] + "…"
        ly = pad + 12 + 16 * n
        parts.append(f'<line x1="{pad + sx + 8}" y1="{ly - 4}" x2="{pad + sx + 22}" y2="{ly - 4}" stroke="{c}" '
                     f'stroke-width="2"/><text x="{pad + sx + 26}" y="{ly}" font-size="10">{html.escape(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scaling_blocks(doc: Any, sec: dict[str, Any]) -> None:
    doc.p(f"{sec['method']}: agreement with {sec['human']} as k samples are summed. Scores: {sec['scores']}.")
    doc.svg(_scaling_svg(sec["judges"], f"{sec['method']}: Spearman ρ per prompt (mean) by k"))
    doc.table(["judge", "k", "responses", "prompts", "Spearman ρ mean [95% CI]", "Kendall τ-b mean [95% CI]",
               "incomplete", "note"],
              [[r["judge"], p["k"], p["n_responses"], p.get("n_prompts", "–"), _est(p.get("spearman_mean")),
                _est(p.get("kendall_mean")), p["n_incomplete"], p.get("reason") or ""]
               for r in sec["judges"] for p in r["points"]])
