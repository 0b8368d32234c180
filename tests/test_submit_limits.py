"""Issue 13, finding 8: a submit's free text has a length limit and each person a submit rate limit, both
enforced on the server: a refusal names the field and the limit (400) or the rate (429) and stores nothing.

A real server in this process (tests/test_security.py's `serve`), so the database can be read directly and
the rate limit's clock moved instead of waiting a minute.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.services.rate import SUBMITS_PER_MINUTE, RateLimit
from storage import annotators, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn, StudyConfig
from tests.clock import Clock
from tests.security_server import Live, serve

STUDY = "limits"
PEOPLE = {"ann": "ann-pass-12", "bob": "bob-pass-12"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = Database(tmp_path_factory.mktemp("limits") / "limits.duckdb")
    s = studies.create_study(db, STUDY, config=StudyConfig(blind=False, questions=["best", "reference", "comment"]))
    prompts.insert_prompts(db, s.id, [PromptIn(external_id=f"p{i}", messages=[ChatMessage(role="user", content=f"q{i}")])
                                      for i in range(3)])
    for p in prompts.list_prompts(db, s.id):
        responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=f"a{k}") for k in (1, 2)])
    for name, password in PEOPLE.items():
        annotators.add_annotator(db, name, "annotator", password, study_ids=[s.id])
    srv = serve(db)
    yield srv
    srv.stop()


def _client(live: Live, name: str) -> httpx.Client:
    return live.login(name, PEOPLE[name])


def _submit(live: Live, c: httpx.Client, **answers: Any) -> httpx.Response:
    """A label of the study's first prompt (again and again: each submit replaces the person's earlier one)."""
    pid = live.db.fetchval("SELECT min(id) FROM prompt")
    item = c.get(f"/api/studies/{STUDY}/items/{pid}").json()["item"]
    order = [card["response_id"] for card in item["cards"]]
    body = {"prompt_id": pid, "shown_order": order, "best": order[0], "stage": "revealed",
            "idempotency_key": uuid.uuid4().hex, **answers}
    return c.post(f"/api/studies/{STUDY}/judgments", json=body)


def _stored(live: Live) -> tuple[int, int]:
    """(judgment rows, total characters of their text): what a refused submit must leave as it was."""
    n, chars = live.db.fetchall("SELECT count(*), coalesce(sum(length(rationale)), 0) FROM judgment")[0]
    return int(n), int(chars)


def test_comment_and_reference_have_a_length_limit(live: Live) -> None:
    c = _client(live, "ann")
    before = _stored(live)
    r = _submit(live, c, comment="x" * 5_001)
    assert r.status_code == 400 and r.json() == {"error": "comment has 5,001 characters; the limit is 5,000"}
    r = _submit(live, c, reference="y" * 200_000, comment="z" * 200_000)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == ("reference has 200,000 characters; the limit is 20,000; "
                                 "comment has 200,000 characters; the limit is 5,000")
    r = _submit(live, c, reference="y" * 2_000_000, comment="z" * 2_000_000)  # the report's 2 MB
    assert r.status_code == 413 and "takes at most 1024 KiB" in r.json()["error"], r.text  # the body cap, first
    assert _stored(live) == before
    # At the limit is fine.
    r = _submit(live, c, reference="y" * 20_000, comment="z" * 5_000)
    assert r.status_code == 200, r.text
    assert _stored(live) == (before[0] + 3, before[1] + 25_000)


def test_each_person_has_a_submit_rate_limit(live: Live) -> None:
    assert live.ctx.submit_limit is not None and live.ctx.submit_limit.limit == SUBMITS_PER_MINUTE == 120
    clock = Clock(5000.0)
    live.ctx.submit_limit = RateLimit(5, 60, clock=clock)
    try:
        ann, bob = _client(live, "ann"), _client(live, "bob")
        assert [_submit(live, ann, comment=f"note {i}").status_code for i in range(5)] == [200] * 5
        before = _stored(live)
        r = _submit(live, ann, comment="one too many")
        assert r.status_code == 429, r.text
        assert r.json()["error"] == ("too many labels at once: at most 5 submits a minute per person; "
                                     "try again in 60 s")
        assert r.headers["retry-after"] == "60"
        assert _stored(live) == before  # nothing of the refused submit was stored
        assert _submit(live, bob).status_code == 200  # the limit is per person
        clock.now += 60
        assert _submit(live, ann).status_code == 200
    finally:
        live.ctx.submit_limit = RateLimit(SUBMITS_PER_MINUTE)
