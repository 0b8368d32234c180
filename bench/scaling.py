"""Inference-time scaling of principles_critique (DeepSeek-GRM's k-sample vote) on the embedded engine: one run
with k = 8 samples, then the report's `scaling` section (agreement for k = 1, 2, 4, 8 from the stored samples
s0..s7) and the cost.

Without --db: a fresh database with the first --prompts prompts of the bundled sample study, n responses each
sampled by the embedded engine (bundled SmolLM2), and, since a bench has no annotators, a STAND-IN rater (not a
human): each response rated 1–7 by its length in words, ranked within its prompt. The curve against it shows
the mechanics, not how well the judge agrees with people. With --db PATH --study NAME: an existing study (its
human ratings and its responses; principles_critique k = 8 is run on it, or skipped where already stored).
Also printed: how far the k-score already ranks the responses as the k = 8 score does (Spearman per prompt,
mean), which needs no human.

The samples are drawn by one method run with k = 8 (`PrinciplesCritique(samples=8)`): its sample j has the
seed and shown order a k = 1, 2 or 4 run would draw, so a k-run costs k/8 of the measured generation time.
Figures only: nothing here asserts on time.

Usage: python bench/scaling.py [--prompts 6] [--n 3] [--max-tokens 64] [--judge-max-tokens 256] [--k 8]
                               [--db PATH --study NAME] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402

from app.services import scoring  # noqa: E402
from app.services.agreement import method_info  # noqa: E402
from app.services.context import AppContext  # noqa: E402
from app.services.engine_meter import MeteredEngine  # noqa: E402
from backend.methods.principles import PrinciplesCritique  # noqa: E402
from storage import judgments, prompts, studies  # noqa: E402
from storage.analysis.report import build_report  # noqa: E402
from storage.analysis.scores import rank_correlations_per_prompt  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import JudgmentIn  # noqa: E402
from sampled_study import STUDY, sample_study  # noqa: E402  (bench/, the script's own folder)

STANDIN = "stand-in (length rank, not a human)"


def _demo(ctx: AppContext, path: str, a: argparse.Namespace) -> str:
    made, seconds = sample_study(ctx, path, a.prompts, a.n, a.max_tokens)
    print(f"sampling: {a.prompts} prompts x n={a.n} (max {a.max_tokens} tokens): {made} responses in {seconds:.1f} s")
    study = studies.get_study(ctx.db, STUDY)
    rows = ctx.db.fetchall("SELECT r.prompt_id, r.id, r.text FROM response r JOIN prompt p ON p.id = r.prompt_id "
                           "WHERE p.study_id = ? ORDER BY r.prompt_id, r.id", [study.id])
    df = pl.DataFrame(rows, schema=["prompt_id", "response_id", "text"], orient="row").with_columns(
        words=pl.col("text").str.split(" ").list.len())
    df = df.with_columns(rating=(1 + (pl.col("words").rank("dense").over("prompt_id") - 1) * 6
                                 / pl.max_horizontal(pl.col("words").rank("dense").max().over("prompt_id") - 1, 1))
                         .round().clip(1, 7))
    judgments.record(ctx.db, [JudgmentIn(study_id=study.id, prompt_id=r["prompt_id"], judge_kind="human",
                                         judge=STANDIN, method="likert", response_id=r["response_id"],
                                         value=float(r["rating"]), idempotency_key=uuid.uuid4().hex)
                              for r in df.iter_rows(named=True)])
    return STUDY


def _convergence(ctx: AppContext, study_id: int, judge: str, k_max: int) -> dict[int, float | None]:
    """Mean over prompts of Spearman(k-score, k_max-score): how far k samples already give the full vote's order."""
    rows = ctx.db.fetchall("SELECT prompt_id, response_id, variant, value FROM judgment WHERE study_id = ? AND "
                           "method = 'principles_critique' AND judge = ? AND status = 'ok' AND superseded_at IS NULL "
                           "AND variant LIKE 's%'", [study_id, judge])
    if not rows:  # every sample failed (too few --judge-max-tokens for a score): nothing to compare
        return {k: None for k in (1, 2, 4, 8) if k <= k_max}
    s = pl.DataFrame(rows, schema=["prompt_id", "response_id", "variant", "value"], orient="row").with_columns(
        j=pl.col("variant").str.slice(1).cast(pl.Int64))
    full = s.filter(pl.col("j") < k_max).group_by("prompt_id", "response_id").agg(
        human=pl.col("value").sum(), m=pl.len()).filter(pl.col("m") == k_max)
    out: dict[int, float | None] = {}
    for k in (1, 2, 4, 8):
        if k > k_max:
            break
        part = s.filter(pl.col("j") < k).group_by("prompt_id", "response_id").agg(score=pl.col("value").sum())
        per = rank_correlations_per_prompt(part.join(full, on=["prompt_id", "response_id"]))
        out[k] = per.filter(~pl.col("constant"))["spearman"].mean()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per sampled response")
    ap.add_argument("--judge-max-tokens", type=int, default=256, help="tokens per principles_critique sample")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--db", default=None)
    ap.add_argument("--study", default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    path = a.db or os.path.join(tempfile.mkdtemp(), "scaling.duckdb")
    ctx = AppContext(db=Database(path))
    name = a.study if a.db else _demo(ctx, path, a)
    study = studies.get_study(ctx.db, name)
    method = PrinciplesCritique(samples=a.k, max_tokens=a.judge_max_tokens)
    engine = MeteredEngine(ctx.engine(ctx.default_engine))
    info = engine.info()
    pids = [p.id for p in prompts.list_prompts(ctx.db, study.id)]
    n_resp = ctx.db.fetchval("SELECT count(*) FROM response r JOIN prompt p ON p.id = r.prompt_id "
                             "WHERE p.study_id = ? AND r.origin IN ('sampled', 'imported')", [study.id])
    t = time.perf_counter()
    for pid in pids:
        scoring.score_prompt(ctx, study, pid, method, engine, info)
    wall = time.perf_counter() - t
    gens = engine.figures().generations
    failed = ctx.db.fetchval("SELECT count(*) FROM judgment WHERE study_id = ? AND method = 'principles_critique' "
                             "AND status = 'failed' AND variant IS NOT NULL", [study.id])
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; engine {info.engine} {info.model_id}")
    print(f"principles_critique k={a.k} (<= {a.judge_max_tokens} tokens per sample): {len(pids)} prompts, "
          f"{n_resp} responses; {wall:.1f} s wall, {gens.calls} generations in {gens.seconds:.1f} s "
          f"({gens.seconds / max(gens.calls, 1):.2f} s per sample, {wall / max(n_resp, 1):.2f} s per response at "
          f"k={a.k}); failed sample rows {failed}")
    rep = build_report(ctx.db, study.id, n_boot=a.n_boot, method_info=method_info)
    sec = rep["scaling"]
    if not sec.get("available"):
        print(f"scaling section: {sec.get('reason')}")
    conv = _convergence(ctx, study.id, info.model_id, a.k)
    print(f"{'k':>2} {'s/response (k/' + str(a.k) + ' of the run)':>28} {'rho vs ratings [95% CI]':>30} "
          f"{'prompts':>8} {'incomplete':>10} {'rho vs k=' + str(a.k):>10}")
    points = next((r["points"] for r in sec.get("judges", []) if r["judge"] == info.model_id), [])
    for p in points:
        s = p.get("spearman_mean") or {}
        ci = s.get("ci") or [None, None]
        est = "–" if s.get("estimate") is None else f"{s['estimate']:.3f}"
        band = "" if ci[0] is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        c = conv.get(p["k"])
        print(f"{p['k']:>2} {wall / max(n_resp, 1) * p['k'] / a.k:>28.2f} {est + band:>30} "
              f"{p.get('n_prompts', 0):>8} {p['n_incomplete']:>10} {'–' if c is None else f'{c:.3f}':>10}")
    if not a.db:
        print(f"ratings: {STANDIN}; see the docstring")
    ctx.close()


if __name__ == "__main__":
    main()
