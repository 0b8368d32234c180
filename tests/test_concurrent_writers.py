"""16 annotators label at the same time through the real HTTP routes: no request fails (no DuckDB
write conflict, no "connection is busy"), double submits store once, and the database holds exactly
what the clients were told was stored.

The run is bounded by time, not by a count, so the load is whatever the machine sustains; set
CRITLAB_SOAK=1 for the long run (SOAK_SECONDS).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.services import labelling
from app.services.context import AppContext
from storage.db import Database
from tests.test_crash_labelling import (
    STUDY,
    LabelClient,
    LabelServer,
    build_label_db,
    rows_per_submit,
)

N_ANNOTATORS = 16
CI_SECONDS = 15.0
SOAK_SECONDS = 60.0
SECONDS = SOAK_SECONDS if os.environ.get("CRITLAB_SOAK") else CI_SECONDS
N_PROMPTS = int(20 + 4 * SECONDS)  # more than one annotator gets through in that time
EDIT_EVERY = 5  # every 5th submit also edits the annotator's previous label (an UPDATE + INSERT)
DOUBLE_EVERY = 4  # every 4th submit is sent twice at once, as a client retrying on a timeout would
# Errors DuckDB raises when two writers meet or one connection is shared across threads.
DB_RACE_WORDS = ("Conflict", "connection is busy", "unfinished result", "TransactionContext")


@dataclass
class Tally:
    sent: dict[str, tuple[str, int, dict[str, Any], list[int]]] = field(default_factory=dict)  # key -> submit
    edits: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _label_until(client: LabelClient, twin: LabelClient, deadline: float, start: threading.Barrier,
                 tally: Tally) -> None:
    """Next item, submit, repeat until the deadline; `twin` shares the session and sends the doubles."""
    previous: dict[str, Any] | None = None
    n = 0
    try:
        start.wait()
        with ThreadPoolExecutor(1) as pool:
            while time.monotonic() < deadline:
                item = client.next()
                if item is None:
                    return
                body = client.answer(item)
                n += 1
                if n % DOUBLE_EVERY == 0:
                    other = pool.submit(twin.submit, body)
                    ids = client.submit(body)
                    if sorted(other.result()) != sorted(ids):
                        raise AssertionError(f"a double submit answered {ids} and {other.result()}")
                else:
                    ids = client.submit(body)
                with tally.lock:
                    tally.sent[body["idempotency_key"]] = (client.name, item["prompt_id"], body, ids)
                if previous is not None and n % EDIT_EVERY == 0:
                    edit = {**previous, "ratings": {k: 1 + v % 7 for k, v in previous["ratings"].items()},
                            "idempotency_key": client.answer(item)["idempotency_key"]}
                    edit_ids = client.submit(edit)
                    with tally.lock:
                        tally.sent[edit["idempotency_key"]] = (client.name, edit["prompt_id"], edit, edit_ids)
                        tally.edits += 1
                previous = body
    except Exception as e:  # noqa: BLE001 - the main thread asserts; a thread's exception would only be printed
        with tally.lock:
            tally.errors.append(f"{client.name}: {type(e).__name__}: {e}")
    finally:
        client.close()
        twin.close()


@pytest.fixture
def busy_server(tmp_path: Path) -> Iterator[LabelServer]:
    build_label_db(tmp_path / "busy.duckdb", n_prompts=N_PROMPTS, names=[f"ann{i}" for i in range(N_ANNOTATORS)])
    srv = LabelServer(tmp_path / "busy.duckdb", tmp_path / "server.log")
    srv.start()
    yield srv
    srv.kill()


def test_sixteen_annotators_at_once_store_exactly_what_they_sent(busy_server: LabelServer) -> None:
    srv = busy_server
    tally = Tally()
    start = threading.Barrier(N_ANNOTATORS)
    pairs = [(LabelClient(srv.url, f"ann{i}"), LabelClient(srv.url, f"ann{i}")) for i in range(N_ANNOTATORS)]
    # The deadline only bounds how much work is done; nothing below depends on how fast it went.
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=_label_until, args=(c, twin, deadline, start, tally), daemon=True)
               for c, twin in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 600)
    assert not any(t.is_alive() for t in threads)
    srv.stop()
    log = srv.log.read_text()
    assert not tally.errors, tally.errors[:5]
    assert not [w for w in DB_RACE_WORDS if w in log], log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert len({name for name, *_ in tally.sent.values()}) == N_ANNOTATORS  # everyone got work done
    assert tally.edits > 0

    with Database(srv.db) as db:
        stored = {k: (judge, prompt, ids) for k, judge, prompt, ids in db.fetchall(
            """SELECT split_part(idempotency_key, ':', 1), judge, prompt_id, list(id ORDER BY id)
               FROM judgment WHERE judge_kind = 'human' GROUP BY ALL""")}
        current = db.fetchall("""SELECT judge, prompt_id, split_part(idempotency_key, ':', 1), count(*)
                                 FROM judgment WHERE superseded_at IS NULL GROUP BY ALL""")
    assert stored.keys() == tally.sent.keys()  # nothing stored that no client was told about, and the reverse
    for key, (name, prompt, body, ids) in tally.sent.items():
        judge, p, stored_ids = stored[key]
        assert (judge, p) == (name, prompt)
        assert stored_ids == sorted(ids) and len(ids) == rows_per_submit(body)
    # Exactly one current submit per annotator and prompt: each edit superseded the whole earlier label.
    per_label: dict[tuple[str, int], list[str]] = {}
    for judge, prompt, key, count in current:
        per_label.setdefault((judge, prompt), []).append(key)
        assert count == rows_per_submit(tally.sent[key][2])
    assert all(len(keys) == 1 for keys in per_label.values()), [k for k in per_label.items() if len(k[1]) > 1]
    assert len(per_label) == len(tally.sent) - tally.edits


def test_overlap_holds_when_many_annotators_race_for_the_last_slots(tmp_path: Path) -> None:
    """In process, no HTTP: 8 annotators take items concurrently from a study that wants 2 labels per
    prompt. The shared queue order is checked under the write lock, so no prompt gets a third
    annotator, and no prompt is left short while someone still asked for work."""
    names = [f"ann{i}" for i in range(8)]
    build_label_db(tmp_path / "overlap.duckdb", n_prompts=30, names=names, overlap=2)
    errors: list[str] = []
    with Database(tmp_path / "overlap.duckdb") as db:
        ctx = AppContext(db=db)

        def work(name: str) -> None:
            try:
                while (item := labelling.next_item(ctx, name, STUDY)) is not None:
                    order = [c.response_id for c in item.cards]
                    labelling.submit(ctx, name, labelling.LabelSubmission(
                        study=STUDY, prompt_id=item.prompt_id, shown_order=order, best=order[0],
                        idempotency_key=f"{name}-{item.prompt_id}-key"))
            except Exception as e:  # noqa: BLE001 - asserted below, in the test's thread
                errors.append(f"{name}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        per_prompt = db.fetchall("""SELECT prompt_id, count(DISTINCT judge), count(*) FROM judgment
                                    GROUP BY prompt_id ORDER BY prompt_id""")
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert per_prompt == [(p, 2, 2) for p in range(1, 31)]  # (prompt, annotators, labels)
