"""Every self-evaluation method on the demo study: time per method and per response.

Builds a fresh database with the bundled sample study (the first --prompts prompts), samples n
responses per prompt with the embedded engine, then runs `critlab score` method by method through
the real service and prints, per method, the wall time, the time per prompt and per response, and
how many judgments it stored (failed ones counted apart), and the engine calls the job recorded
(prefill reads / generations) per response.

Usage: python bench/methods.py [--prompts 30] [--n 4] [--max-tokens 128] [--methods id,id] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.services import scoring  # noqa: E402
from app.services.context import AppContext  # noqa: E402
from backend.methods.registry import parse_method_list  # noqa: E402
from storage.db import Database  # noqa: E402
from sampled_study import STUDY, sample_study  # noqa: E402  (bench/, the script's own folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--methods", default="all", help="comma-separated method ids (default: all)")
    ap.add_argument("--db", default=None)
    a = ap.parse_args()
    path = a.db or os.path.join(tempfile.mkdtemp(), "bench.duckdb")
    ctx = AppContext(db=Database(path))
    responses, sampling_s = sample_study(ctx, path, a.prompts, a.n, a.max_tokens)
    print(f"{a.prompts} prompts x n={a.n} (max {a.max_tokens} tokens): sampling {sampling_s:.1f} s "
          f"({sampling_s / responses:.2f} s per response)")
    print(f"{'method':<20} {'total s':>8} {'s/prompt':>9} {'s/response':>11} {'judgments':>10} {'failed':>7} "
          f"{'reads/resp':>11} {'gens/resp':>10}")
    for mid in parse_method_list(a.methods):
        before = ctx.db.fetchval("SELECT count(*) FROM judgment")
        t = time.perf_counter()
        done = scoring.start_scoring(ctx, STUDY, mid, background=False)
        s = time.perf_counter() - t
        made = ctx.db.fetchval("SELECT count(*) FROM judgment") - before
        failed = ctx.db.fetchval("SELECT count(*) FROM judgment WHERE method LIKE ? AND status = 'failed'",
                                 [mid + "%"])
        fig = done.figures
        reads, gens = (fig.reads.calls, fig.generations.calls) if fig else (0, 0)
        print(f"{mid:<20} {s:8.1f} {s / a.prompts:9.2f} {s / responses:11.2f} {made:10d} {failed:7d} "
              f"{reads / responses:11.1f} {gens / responses:10.2f}")
    ctx.close()


if __name__ == "__main__":
    main()
