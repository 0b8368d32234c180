"""The JSON labelling API (app/api_label.py) in process: sessions, roles, the CSRF rule, idempotency keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.services.context import AppContext
from app.services.labelling import shown_order
from storage import annotators
from storage.db import Database
from tests.test_crash_labelling import PASSWORD, STUDY, build_label_db

ORIGIN = {"origin": "http://testserver"}
TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    build_label_db(tmp_path / "api.duckdb", n_prompts=3, names=["ann", "bob"])
    db = Database(tmp_path / "api.duckdb")
    annotators.add_annotator(db, "boss", "admin", PASSWORD)
    with TestClient(create_app(AppContext(db=db), admin_token=TOKEN), base_url="http://testserver") as client:
        yield client, db


def _login(client: TestClient, name: str) -> None:
    assert client.post("/api/login", json={"name": name, "password": PASSWORD}).status_code == 200


def _body(item: dict, key: str) -> dict:
    order = [c["response_id"] for c in item["cards"]]
    return {"prompt_id": item["prompt_id"], "shown_order": order, "best": order[1],
            "ratings": {str(order[0]): 2, str(order[1]): 6}, "idempotency_key": key}


def test_next_item_is_the_annotators_view_and_stays_reserved(api: tuple[TestClient, Database]) -> None:
    client, _ = api
    _login(client, "ann")
    item = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    ids = [c["response_id"] for c in item["cards"]]
    assert ids == shown_order("ann", item["prompt_id"], ids) and len(ids) == 4
    assert item["questions"] == ["best", "rating", "comment"] and item["messages"][0]["content"] == "Question 0?"
    assert client.get(f"/api/studies/{STUDY}/next").json()["item"]["prompt_id"] == item["prompt_id"]


def test_a_retried_submit_stores_once_and_answers_the_same_ids(api: tuple[TestClient, Database]) -> None:
    client, db = api
    _login(client, "ann")
    item = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    first = client.post(f"/api/studies/{STUDY}/judgments", json=_body(item, "key-000001"), headers=ORIGIN)
    again = client.post(f"/api/studies/{STUDY}/judgments", json=_body(item, "key-000001"), headers=ORIGIN)
    assert first.status_code == again.status_code == 200
    assert first.json()["judgment_ids"] == again.json()["judgment_ids"] and len(first.json()["judgment_ids"]) == 3
    assert db.fetchall("SELECT method, source FROM judgment ORDER BY id") == [
        ("best_of_n", "api"), ("likert", "api"), ("likert", "api")]
    nxt = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    assert nxt["prompt_id"] != item["prompt_id"]


def test_another_persons_key_is_refused_and_stores_nothing(api: tuple[TestClient, Database]) -> None:
    client, db = api
    _login(client, "ann")
    item = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    assert client.post(f"/api/studies/{STUDY}/judgments", json=_body(item, "key-000002"),
                       headers=ORIGIN).status_code == 200
    _login(client, "bob")
    theirs = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    r = client.post(f"/api/studies/{STUDY}/judgments", json=_body(theirs, "key-000002"), headers=ORIGIN)
    assert r.status_code == 409 and "already used" in r.json()["detail"]
    assert db.fetchall("SELECT DISTINCT judge FROM judgment") == [("ann",)]


def test_session_role_and_same_origin_are_checked(api: tuple[TestClient, Database]) -> None:
    client, db = api
    assert client.get(f"/api/studies/{STUDY}/next").status_code == 401
    # The CLI's admin token is not a person: a human label under its name would be wrong.
    r = client.get(f"/api/studies/{STUDY}/next", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403
    _login(client, "ann")
    item = client.get(f"/api/studies/{STUDY}/next").json()["item"]
    url = f"/api/studies/{STUDY}/judgments"
    assert client.post(url, data={"prompt_id": item["prompt_id"]}).status_code == 415  # a cross-site form
    assert client.post(url, json=_body(item, "key-000003"), headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post(url, json={**_body(item, "key-000003"), "bets": 1}, headers=ORIGIN).status_code == 422
    wrong = {**_body(item, "key-000003"), "shown_order": [item["cards"][0]["response_id"]]}  # one card of four
    r = client.post(url, json=wrong, headers=ORIGIN)
    assert r.status_code == 400 and "reload the item" in r.json()["error"]
    assert client.get("/api/studies/nope/next").status_code == 400
    assert db.fetchval("SELECT count(*) FROM judgment") == 0
