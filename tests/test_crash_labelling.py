"""A server killed with SIGKILL (twice) while 8 annotators label through the JSON API loses nothing it
acknowledged, stores nothing twice when clients retry, and gives each annotator back their place.

The harness here (a study built through storage functions, `critlab serve` in a subprocess, an
annotator's HTTP client) is shared with tests/test_concurrent_writers.py and tests/test_api_label.py.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage import annotators, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn, StudyConfig
from tests.server_process import free_port, start_serve, stop

PASSWORD = "label-pass-123"
STUDY = "crash"


# -- harness (also used by tests/test_concurrent_writers.py) ---------------------------------------
def build_label_db(path: Path, *, n_prompts: int, names: list[str], n_responses: int = 4,
                   overlap: int | None = None, study: str = STUDY) -> None:
    """A study of imported prompts and responses (no model needed) and one account per name."""
    with Database(path) as db:
        s = studies.create_study(db, study, config=StudyConfig(questions=["best", "rating", "comment"],
                                                               overlap=overlap))
        prompts.insert_prompts(db, s.id, [PromptIn(external_id=f"q{i}", messages=[
            ChatMessage(role="user", content=f"Question {i}?")]) for i in range(n_prompts)])
        pids = [r[0] for r in db.fetchall("SELECT id FROM prompt WHERE study_id = ? ORDER BY position", [s.id])]
        responses.insert_responses(db, [ResponseIn(prompt_id=p, origin="imported", text=f"answer {k} to {p}")
                                        for p in pids for k in range(n_responses)])
        for name in names:
            annotators.add_annotator(db, name, "annotator", PASSWORD)
            members.add(db, s.id, name, "test")


@dataclass
class LabelServer:
    """`critlab serve` in a subprocess; restarts reuse the port so clients keep their base URL."""

    db: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        # Clients here label as fast as the server answers, far above a person's pace: no per-person limit.
        self.proc, _ = start_serve(self.db, self.log, "--submits-per-minute", "0", port=self.port, timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)


class LabelClient:
    """One annotator using the JSON labelling API, answering deterministically per (name, prompt)."""

    def __init__(self, url: str, name: str, study: str = STUDY):
        self.name, self.study = name, study
        self.http = httpx.Client(base_url=url, timeout=60)
        r = self.http.post("/api/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text

    def next(self) -> dict[str, Any] | None:
        r = self.http.get(f"/api/studies/{self.study}/next")
        r.raise_for_status()
        return r.json()["item"]

    def answer(self, item: dict[str, Any]) -> dict[str, Any]:
        """A fresh submit body (new idempotency key) for this item."""
        order = [c["response_id"] for c in item["cards"]]
        h = hashlib.sha256(f"{self.name}:{item['prompt_id']}".encode()).digest()
        return {"prompt_id": item["prompt_id"], "shown_order": order, "best": order[h[0] % len(order)],
                "ratings": {str(rid): 1 + h[1 + i] % 7 for i, rid in enumerate(order)},
                "idempotency_key": uuid.uuid4().hex, "duration_ms": 1000}

    def submit(self, body: dict[str, Any]) -> list[int]:
        r = self.http.post(f"/api/studies/{self.study}/judgments", json=body)
        if r.status_code != 200:
            raise AssertionError(f"{self.name}: submit answered {r.status_code}: {r.text}")
        return r.json()["judgment_ids"]

    def stored_keys(self) -> dict[str, list[int]]:
        """This annotator's stored judgment ids by submit key (through the API: the server holds the file)."""
        r = self.http.get(f"/api/studies/{self.study}/judgments", params={"include_superseded": True})
        r.raise_for_status()
        out: dict[str, list[int]] = {}
        for j in r.json()["judgments"]:
            out.setdefault(j["idempotency_key"].split(":")[0], []).append(j["id"])
        return out

    def close(self) -> None:
        self.http.close()


def rows_per_submit(body: dict[str, Any]) -> int:
    return 1 + len(body["ratings"])  # best_of_n + one likert per response (no comment is sent)


# -- the crash -------------------------------------------------------------------------------------
N_ANNOTATORS = 8
N_PROMPTS = 20
# Acknowledged submits (of 8 × 20) at which the server is SIGKILLed; the second crash replays a WAL that
# already went through one replay.
KILL_AFTER_ACKS = (30, 80)


@dataclass
class Resume:
    """What one annotator saw on coming back after the restart, judged after the run."""

    name: str
    crash: int  # which crash (0, 1 …)
    in_flight: int | None  # the prompt of the submit that got no answer (None: the load failed)
    in_flight_stored: bool  # the server had committed that submit before it died
    acked: set[int]  # prompts whose submit was acknowledged before the crash
    served: int | None  # the first item served after the restart


@dataclass
class Outcome:
    acked: list[tuple[str, int, dict[str, Any], list[int]]] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    crash: int = -1  # the latest crash, set before the kill
    back: list[threading.Event] = field(default_factory=lambda: [threading.Event() for _ in KILL_AFTER_ACKS])


def _annotate(client: LabelClient, out: Outcome) -> None:
    """Label until the queue is empty. On a dropped connection: wait for the restart, look at what comes
    next (before retrying anything), resend the last acknowledged submit (as if its answer had been
    lost), then retry the in-flight submit with its original key."""
    pending: dict[str, Any] | None = None
    acked: set[int] = set()
    last: tuple[dict[str, Any], list[int]] | None = None  # the latest acknowledged submit
    seen: set[int] = set()
    try:
        while True:
            try:
                if pending is None:
                    item = client.next()
                    if item is None:
                        return
                    pending = client.answer(item)
                ids = client.submit(pending)
                with out.lock:
                    out.acked.append((client.name, pending["prompt_id"], pending, ids))
                acked.add(pending["prompt_id"])
                last, pending = (pending, ids), None
            except httpx.TransportError:
                crash = out.crash
                if crash in seen:
                    raise  # the restarted server dropped a request
                seen.add(crash)
                out.back[crash].wait()
                stored = client.stored_keys()
                in_flight_stored = pending is not None and pending["idempotency_key"] in stored
                served = client.next()
                with out.lock:
                    out.resumes.append(Resume(client.name, crash, pending["prompt_id"] if pending else None,
                                              in_flight_stored, set(acked), served and served["prompt_id"]))
                if last is not None:
                    # As if that answer had been lost too: the retry finds the replayed rows, stores nothing.
                    again = client.submit(last[0])
                    if sorted(again) != sorted(last[1]):
                        out.errors.append(f"{client.name}: a retried submit answered {again}, first {last[1]}")
                if pending is not None and in_flight_stored:
                    # The server stored it but the answer was lost: the retry must answer with those same ids.
                    ids = client.submit(pending)
                    if sorted(ids) != sorted(stored[pending["idempotency_key"]]):
                        out.errors.append(f"{client.name}: retry answered {ids}, stored {stored}")
                    with out.lock:
                        out.acked.append((client.name, pending["prompt_id"], pending, ids))
                    acked.add(pending["prompt_id"])
                    pending = client.answer(served) if served is not None else None
                    if served is None:
                        return
    except Exception as e:  # noqa: BLE001 - reported by the main thread, which owns the assertions
        with out.lock:
            out.errors.append(f"{client.name}: {type(e).__name__}: {e}")
    finally:
        client.close()


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[LabelServer]:
    names = [f"ann{i}" for i in range(N_ANNOTATORS)]
    build_label_db(tmp_path / "crash.duckdb", n_prompts=N_PROMPTS, names=names)
    srv = LabelServer(tmp_path / "crash.duckdb", tmp_path / "server.log")
    srv.start()
    yield srv
    srv.kill()


def test_sigkill_mid_labelling_loses_and_duplicates_nothing(crash_server: LabelServer) -> None:
    srv = crash_server
    out = Outcome()
    clients = [LabelClient(srv.url, f"ann{i}") for i in range(N_ANNOTATORS)]
    threads = [threading.Thread(target=_annotate, args=(c, out), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for crash, acks in enumerate(KILL_AFTER_ACKS):
        while True:  # wait (on progress, not on time) for enough acknowledged submits
            with out.lock:
                if len(out.acked) >= acks or out.errors:
                    break
            threading.Event().wait(0.05)
        assert not out.errors, out.errors
        out.crash = crash
        srv.kill()
        assert srv.db.with_name(srv.db.name + ".wal").exists()  # the restart really replays a WAL
        acked_before_kill = len(out.acked)
        srv.start()
        out.back[crash].set()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "an annotator never finished"
    assert not out.errors, out.errors
    srv.stop()

    # Every annotator hit each crash and came back to where they were.
    assert sorted((r.crash, r.name) for r in out.resumes) == sorted(
        (c, f"ann{i}") for c in range(len(KILL_AFTER_ACKS)) for i in range(N_ANNOTATORS))
    for r in out.resumes:
        assert r.served not in r.acked, f"{r.name} was served {r.served} again after submitting it"
        if r.in_flight is not None and not r.in_flight_stored:
            assert r.served == r.in_flight, f"{r.name} lost their place: {r.in_flight} -> {r.served}"
        elif r.in_flight is not None:
            assert r.served != r.in_flight

    with Database(srv.db) as db:
        rows = db.fetchall("""SELECT split_part(idempotency_key, ':', 1), judge, prompt_id, list(id ORDER BY id),
                                     count(*) FILTER (WHERE superseded_at IS NOT NULL)
                              FROM judgment WHERE judge_kind = 'human' GROUP BY ALL""")
        per_label = db.fetchall("""SELECT judge, prompt_id, count(*) FROM judgment
                                   WHERE method = 'best_of_n' GROUP BY ALL HAVING count(*) <> 1""")
    stored = {key: (judge, prompt, ids, superseded) for key, judge, prompt, ids, superseded in rows}
    assert len(out.acked) > acked_before_kill  # labelling went on after the last restart
    for name, prompt, body, ids in out.acked:  # every acknowledged submit is stored, exactly once
        judge, p, stored_ids, _ = stored[body["idempotency_key"]]
        assert (judge, p) == (name, prompt)
        assert sorted(ids) == stored_ids and len(stored_ids) == rows_per_submit(body)
    assert not per_label, f"a prompt labelled twice by one annotator: {per_label}"
    assert sum(s[3] for s in stored.values()) == 0  # nothing was superseded by a duplicate submit
    labelled = {(j, p) for j, p, _, _ in stored.values()}
    assert labelled == {(f"ann{i}", p) for i in range(N_ANNOTATORS) for p in range(1, N_PROMPTS + 1)}
    assert {b["idempotency_key"] for _, _, b, _ in out.acked} == set(stored)  # no submit left unacknowledged
