"""The label loop under load: 16 annotators labelling through the real HTTP routes of a real server,
on a study of 100k prompts × 4 responses that already holds 1M judgments.

The database is built straight in DuckDB (INSERT … SELECT over generated ranges, a few seconds): one
generation run with 4 samples per prompt, and 20 earlier annotators whose labels (a best pick and four
ratings each, 5 judgment rows) cover every prompt twice: 100k × 2 × 5 = 1M rows. The study asks for 3
annotators per prompt, so each new annotator still has every prompt to do, and the queue has to find a
prompt that nobody else holds among 100k that all carry labels.

Then `critlab serve` runs on a copy of it; each simulated annotator logs in and repeats GET next item →
POST judgments (JSON API, docs/api.md) for --seconds. Printed: p50/p95/p99/max of each, measured at the
client (so HTTP and queueing in the server are included), requests per second, and the load average
before and after (other work may share the machine).

Usage: python bench/label_loop.py [--prompts 100000] [--seconds 60] [--annotators 16] [--think-ms 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.server_process import start_serve, stop  # noqa: E402 - after the path set-up above

STUDY = "bench"
PASSWORD = "bench-pass-123"
PAST_ANNOTATORS = 20
PAST_LABELS_PER_PROMPT = 2
OVERLAP = 3


def build(db_path: Path, n_prompts: int) -> None:
    """The study, its run, its prompts and responses and the earlier annotators' 1M judgments."""
    from storage import studies
    from storage.db import Database
    from storage.models import SamplingSettings, StudyConfig

    t0 = time.perf_counter()
    db = Database(db_path)
    s = studies.create_study(db, STUDY, config=StudyConfig(questions=["best", "rating", "comment"], overlap=OVERLAP))
    run = studies.create_run(db, s.id, "sglang", "bench/model", SamplingSettings(n=4, seed=0), 0,
                             seeds_honoured=True, logprob_mode="raw")
    with db.write() as cur:
        cur.execute("""INSERT INTO prompt (study_id, external_id, position, messages)
                       SELECT $study, 'q' || i, i,
                              to_json([{'role': 'user', 'content': 'Question ' || i || ': ' || repeat('why ', 30)}])
                       FROM range($n) t(i)""", {"study": s.id, "n": n_prompts})
        cur.execute("""INSERT INTO response (prompt_id, run_id, sample_index, origin, text, model_id, finish_reason)
                       SELECT p.id, $run, k, 'sampled',
                              'Answer ' || k || ' to question ' || p.position || ': ' || repeat('because ', 40),
                              'bench/model', 'stop'
                       FROM prompt p, range(4) u(k) WHERE p.study_id = $study ORDER BY p.id, k""",
                    {"run": run.id, "study": s.id})
        # Label l of prompt i is by earlier annotator (i + l * 7) % 20, so both labels differ in judge. The
        # earlier names (ann00, ann02 …) interleave with the new ones (ann01, ann03 …), as real names would:
        # DuckDB's min/max zone maps cannot skip a judge's rows just because the name sorts apart.
        cur.execute("""CREATE TEMP TABLE past AS
                       SELECT p.id AS prompt_id, 'ann' || lpad((2 * ((p.position + l * 7) % $judges))::VARCHAR, 2, '0')
                              AS judge,
                              l, list(r.id ORDER BY r.sample_index) AS rids
                       FROM prompt p, range($labels) t(l), response r
                       WHERE p.study_id = $study AND r.prompt_id = p.id GROUP BY ALL""",
                    {"judges": PAST_ANNOTATORS, "labels": PAST_LABELS_PER_PROMPT, "study": s.id})
        cur.execute("""INSERT INTO judgment (study_id, prompt_id, judge_kind, judge, method, target_key, response_id,
                                             shown_order, stage, source, idempotency_key, created_at)
                       SELECT $study, prompt_id, 'human', judge, 'best_of_n', 'prompt:' || prompt_id,
                              rids[1 + (prompt_id + l * (prompt_id % 2)) % 4], rids, 'blind', 'ui', 'past:' || prompt_id || ':' || l,
                              TIMESTAMPTZ '2026-11-01' + to_seconds(prompt_id * 2 + l)
                       FROM past ORDER BY prompt_id, l""", {"study": s.id})
        cur.execute("""INSERT INTO judgment (study_id, prompt_id, judge_kind, judge, method, target_key, response_id,
                                             value, stage, source, idempotency_key, created_at)
                       SELECT $study, prompt_id, 'human', judge, 'likert', 'response:' || rids[k], rids[k],
                              1 + (prompt_id * 7 + k * 3 + l) % 7, 'blind', 'ui', 'past:' || prompt_id || ':' || l || ':r' || k,
                              TIMESTAMPTZ '2026-11-01' + to_seconds(prompt_id * 2 + l)
                       FROM past, range(1, 5) u(k) ORDER BY prompt_id, l, k""", {"study": s.id})
        cur.execute("DROP TABLE past")
        # The disagreement flags the app would have set as those labels came in (odd prompts: split picks).
        cur.execute("""INSERT INTO prompt_flag (prompt_id, disagreement)
                       SELECT prompt_id, count(DISTINCT response_id) > 1 FROM judgment
                       WHERE method = 'best_of_n' GROUP BY prompt_id""")
    counts = db.fetchall("SELECT (SELECT count(*) FROM prompt), (SELECT count(*) FROM response), "
                         "(SELECT count(*) FROM judgment)")[0]
    db.close()
    print(f"built {db_path.name}: {counts[0]:,} prompts, {counts[1]:,} responses, {counts[2]:,} judgments "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)


def add_annotators(db_path: Path, names: list[str]) -> None:
    from storage import annotators, members, studies
    from storage.db import Database

    with Database(db_path) as db:
        study = studies.get_study(db, STUDY)
        for name in names:
            annotators.add_annotator(db, name, "annotator", PASSWORD)
            members.add(db, study.id, name, "bench")  # annotators label only the studies they are members of


class Annotator(threading.Thread):
    """Logs in, then GET next → POST judgments until the deadline; keeps each request's latency."""

    def __init__(self, url: str, name: str, start: threading.Barrier, deadline: list[float], think_ms: float = 0):
        super().__init__(daemon=True)
        self.name_, self.start_barrier, self.deadline, self.think_ms = name, start, deadline, think_ms
        self.pace = random.Random(name)
        self.http = httpx.Client(base_url=url, timeout=120)
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.error: str | None = None

    def login(self) -> None:
        r = self.http.post("/api/login", json={"name": self.name_, "password": PASSWORD})
        r.raise_for_status()

    def run(self) -> None:
        try:
            self.start_barrier.wait()
            while time.monotonic() < self.deadline[0]:
                t0 = time.perf_counter()
                r = self.http.get(f"/api/studies/{STUDY}/next")
                t1 = time.perf_counter()
                r.raise_for_status()
                item = r.json()["item"]
                if item is None:
                    return
                r = self.http.post(f"/api/studies/{STUDY}/judgments", json=self.answer(item))
                t2 = time.perf_counter()
                r.raise_for_status()
                self.next_ms.append((t1 - t0) * 1000)
                self.submit_ms.append((t2 - t1) * 1000)
                if self.think_ms:  # reading and deciding, ±50 % so the annotators do not march in step
                    time.sleep(self.think_ms * self.pace.uniform(0.5, 1.5) / 1000)
        except Exception as e:  # noqa: BLE001 - reported in the summary; a benchmark never asserts
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.http.close()

    def answer(self, item: dict[str, Any]) -> dict[str, Any]:
        order = [c["response_id"] for c in item["cards"]]
        h = hashlib.sha256(f"{self.name_}:{item['prompt_id']}".encode()).digest()
        return {"prompt_id": item["prompt_id"], "shown_order": order, "best": order[h[0] % len(order)],
                "ratings": {str(rid): 1 + h[1 + i] % 7 for i, rid in enumerate(order)},
                "idempotency_key": uuid.uuid4().hex, "duration_ms": 4000}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(label: str, values: list[float]) -> str:
    return (f"{label:<10} n={len(values):>6}  p50 {pct(values, .50):7.1f} ms  p95 {pct(values, .95):7.1f} ms  "
            f"p99 {pct(values, .99):7.1f} ms  max {max(values, default=float('nan')):7.1f} ms  "
            f"mean {statistics.fmean(values) if values else float('nan'):7.1f} ms")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc: the server is another process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--annotators", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2, help="requests per annotator left out of the figures")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="mean pause after each submit (0: every annotator sends its next request at once)")
    ap.add_argument("--keep", help="build the database here (reused when present) instead of a temp directory")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="label_loop_"))
    work.mkdir(parents=True, exist_ok=True)
    pristine = work / f"label_loop_{args.prompts}.duckdb"
    if not pristine.exists():
        build(pristine, args.prompts)
    run_db = work / "run.duckdb"
    for p in work.glob("run.duckdb*"):
        p.unlink()
    shutil.copy(pristine, run_db)
    names = [f"ann{2 * i + 1:02d}" for i in range(args.annotators)]
    add_annotators(run_db, names)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}")
    print(f"load average before start: {loadavg()}", flush=True)
    # Saturated clients submit far faster than people: the per-person limit would be all this measured.
    proc, url = start_serve(run_db, work / "server.log", "--submits-per-minute", "0", timeout=120)
    try:
        start = threading.Barrier(args.annotators)
        deadline = [float("inf")]
        threads = [Annotator(url, n, start, deadline, args.think_ms) for n in names]
        for t in threads:
            t.login()
        deadline[0] = time.monotonic() + args.seconds
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_cpu = cpu_seconds(proc.pid) - cpu0
        print(f"load average after the run: {loadavg()}")
    finally:
        stop(proc, timeout=60)
    errors = [f"{t.name_}: {t.error}" for t in threads if t.error]
    nxt = [v for t in threads for v in t.next_ms[args.warmup:]]
    sub = [v for t in threads for v in t.submit_ms[args.warmup:]]
    done = sum(len(t.submit_ms) for t in threads)
    print(f"{args.annotators} annotators, think {args.think_ms:.0f} ms, {args.seconds:.0f} s, {args.prompts:,} prompts: "
          f"{done} labels ({done / elapsed:.1f}/s), server CPU {server_cpu / max(done, 1) * 1000:.0f} ms per label "
          f"({server_cpu / elapsed:.2f} cores), {len(errors)} errors")
    print(summary("load-next", nxt))
    print(summary("submit", sub))
    for e in errors[:5]:
        print("error:", e)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
