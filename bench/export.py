"""Export of 200k DPO pairs: time and peak memory of the streaming exporter against the row-by-row baseline.

A synthetic study is built straight in DuckDB: P prompts × 4 responses (≈ 300 characters each), one
annotator's best pick and four ratings per prompt (strictly ordered, so every prompt gives a pair), i.e.
P pairs. Then, each in a fresh subprocess (so peak memory is that run's own):

- `stream-*`: `critlab export dpo` (storage.export.export_dataset, consensus default), which reads 1,000
  prompts at a time and writes 1,000-row batches (JSONL, or Parquet through pyarrow's ParquetWriter);
  `per-annotator-jsonl` the same with `--per-annotator` (the baseline's own pair rule);
- `baseline-*`: the first DPO export, which built every row as a Python dict in one list and then wrote the
  list (one JSON line per row, or one `Table.from_pylist`): its pair builder is kept as the tests' reference
  (tests/dpo_reference.py), and its whole-list writer is `_write_list` here.

Printed per run: rows, wall time, peak RSS (VmHWM) and its growth over the RSS before the export started.

Usage: python bench/export.py [--prompts 200000] [--keep DIR]
       BENCH_TRACEMALLOC=1 python bench/export.py --child DB MODE OUTDIR   # one run, with the Python-heap peak
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ("stream-jsonl", "per-annotator-jsonl", "baseline-jsonl", "stream-parquet", "baseline-parquet")


def build(db_path: Path, n_prompts: int) -> None:
    from storage.db import Database

    db = Database(db_path)
    with db.write() as cur:
        cur.execute("INSERT INTO study (name) VALUES ('bench')")
        cur.execute("""INSERT INTO generation_run (study_id, engine, model_id, n, temperature, top_p, max_tokens,
                       seed_base, top_logprobs) VALUES (1, 'embedded', 'SmolLM2-135M-Instruct-Q4_1', 4, 0.8, 0.9, 256,
                       0, 5)""")
        cur.execute("""INSERT INTO prompt (id, study_id, external_id, position, messages)
                       SELECT i + 1, 1, 'q' || i, i,
                              to_json([{'role': 'user', 'content': 'Question ' || i || ': ' || repeat('why ', 30)}])
                       FROM range(?) t(i)""", [n_prompts])
        cur.execute("""INSERT INTO response (id, prompt_id, run_id, sample_index, origin, text, model_id)
                       SELECT p * 4 + s + 1, p + 1, 1, s, 'sampled',
                              'Answer ' || s || ' to question ' || p || ': ' || repeat('because ✓ ', 30), NULL
                       FROM range(?) t(p), range(4) u(s)""", [n_prompts])
        # one pick (sample 0) and four ratings (7, 5, 3, 1) per prompt
        cur.execute("""INSERT INTO judgment (id, study_id, prompt_id, judge_kind, judge, method, target_key,
                       response_id, shown_order, stage, idempotency_key)
                       SELECT p + 1, 1, p + 1, 'human', 'ann', 'best_of_n', 'prompt:' || (p + 1), p * 4 + 1,
                              [p * 4 + 2, p * 4 + 1, p * 4 + 4, p * 4 + 3], 'blind', 'k' || p
                       FROM range(?) t(p)""", [n_prompts])
        cur.execute("""INSERT INTO judgment (id, study_id, prompt_id, judge_kind, judge, method, target_key,
                       response_id, value, stage, idempotency_key)
                       SELECT ? + p * 4 + s + 1, 1, p + 1, 'human', 'ann', 'likert', 'response:' || (p * 4 + s + 1),
                              p * 4 + s + 1, 7 - 2 * s, 'blind', 'r' || p || '-' || s
                       FROM range(?) t(p), range(4) u(s)""", [n_prompts, n_prompts])
    db.close()


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _write_list(rows: list[dict[str, Any]], out: Path) -> int:
    """The first exporter's writer: the whole list at once (JSON lines, or one Arrow table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.dpo_reference import DPO_SCHEMA

    if out.suffix == ".jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist(rows, schema=DPO_SCHEMA), out)
    return len(rows)


def child(db_path: str, mode: str, out_dir: str) -> None:
    """One export in this process; prints a JSON line with the figures."""
    from storage.db import Database
    from storage.export import ExportOptions, export_dataset
    from tests.dpo_reference import build_dpo_pairs

    db = Database(db_path)
    db.fetchval("SELECT count(*) FROM judgment")  # open and warm like any command would
    ext = mode.rsplit("-", 1)[1]
    out = Path(out_dir) / f"{mode}.{ext}"
    trace = os.environ.get("BENCH_TRACEMALLOC") == "1"  # Python-heap peak (slower; DuckDB's memory not seen)
    if trace:
        import tracemalloc

        tracemalloc.start()
    before = vm_rss_mib()
    t0 = time.perf_counter()
    if mode.startswith("stream"):
        rows = export_dataset(db, "bench", out, ExportOptions()).rows
    elif mode.startswith("per-annotator"):
        rows = export_dataset(db, "bench", out, ExportOptions(per_annotator=True)).rows
    else:
        pairs, _ = build_dpo_pairs(db, db.fetchval("SELECT id FROM study WHERE name = 'bench'"))
        rows = _write_list(pairs, out)
    elapsed = time.perf_counter() - t0
    peak = vm_hwm_mib()
    db.close()
    figures = {"mode": mode, "rows": rows, "seconds": round(elapsed, 2), "peak_rss_mib": round(peak),
               "rss_before_mib": round(before), "growth_mib": round(peak - before),
               "file_mib": round(out.stat().st_size / 2**20, 1)}
    if trace:
        figures["python_heap_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    print(json.dumps(figures))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200_000)
    ap.add_argument("--keep", help="build the database here (and keep it) instead of a temp directory")
    ap.add_argument("--child", nargs=3, metavar=("DB", "MODE", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="critlab-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "bench.duckdb"
    if not db_path.exists():
        t0 = time.perf_counter()
        build(db_path, a.prompts)
        print(f"built {a.prompts} prompts × 4 responses in {time.perf_counter() - t0:.1f} s ({db_path})",
              file=sys.stderr)
    results = []
    for mode in MODES:
        r = subprocess.run([sys.executable, __file__, "--child", str(db_path), mode, str(work)],
                           capture_output=True, text=True, check=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(results[-1], file=sys.stderr)
    print("| export | rows | time | peak RSS | RSS growth | file |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['rows']:,} | {r['seconds']:.1f} s | {r['peak_rss_mib']} MiB | "
              f"{r['growth_mib']} MiB | {r['file_mib']} MiB |")
    if not a.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
