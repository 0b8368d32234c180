"""What the server-side session check costs a request (issue 13): `Sessions.check` against the bare person
lookup that every request made before sessions were rows (a point query on `annotator`), with 2,000
sessions in the table. Prints microseconds per check (median of 7 runs of 500) and the ratio.

    python bench/session_check.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth import Sessions  # noqa: E402
from storage import annotators, sessions  # noqa: E402
from storage.db import Database  # noqa: E402

RUNS, CALLS = 7, 500


def per_call(fn: Callable[[], object]) -> float:
    fn()
    runs = []
    for _ in range(RUNS):
        t = time.perf_counter()
        for _ in range(CALLS):
            fn()
        runs.append((time.perf_counter() - t) / CALLS * 1e6)
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "bench.duckdb")
        with db.write() as cur:
            for i in range(50):
                cur.execute("INSERT INTO annotator (name, role, password_hash) VALUES (?, 'annotator', 'x')",
                            [f"p{i}"])
        s = Sessions(b"k" * 32)
        tokens = [s.issue(db, f"p{i % 50}") for i in range(2000)]
        token = tokens[777]
        bare = per_call(lambda: annotators.get_annotator(db, "p27"))
        check = per_call(lambda: s.check(db, token))
        cold = per_call(lambda: (sessions._open(db).rows.clear(), s.check(db, token)))  # noqa: SLF001
        print(f"person lookup (before: every request)       {bare:7.0f} µs")
        print(f"session check (now: every request)          {check:7.0f} µs   ratio {check / bare:.2f}")
        print(f"session check, session not in memory yet    {cold:7.0f} µs   (once per session after a restart)")
        s.flush()
        s.close()
        db.close()


if __name__ == "__main__":
    main()
