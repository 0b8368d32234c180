"""The labelling-protocol settings in the Studies tab: the label set's runs, the queue order, the gold rate and
gate, saved through the form (a run the study does not have refused, saying so), and each person's gold
accuracy in the progress table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, critlab, login, start_server, wait_idle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("proto")
    db = d / "proto.duckdb"
    items = [{"item_id": f"g{i}", "prompt": f"What is {i} + 2?",
              "responses": [{"id": f"g{i}{c}", "text": f"Answer {c}: {i + 2 if c == 'a' else i}."} for c in "ab"]}
             for i in range(3)]
    f = d / "items.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    critlab("import", "judgments", str(f), "--study", "proto", db=db)
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    critlab("annotators", "add", "ann", "--study", "proto", "--password-stdin", db=db, stdin=PASSWORDS["ann"])
    server = start_server(db, d / "server.log")
    yield server
    server.stop()


def _open(page: Page, srv: Server) -> None:
    login(page, srv.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    expect(page.locator("#cfg-study input")).to_have_value("proto")
    wait_idle(page)


def test_protocol_settings_save_and_gold_accuracy_shows(page: Page, srv: Server, shot_dir: Path) -> None:
    admin = srv.login("admin")
    r = admin.post("/api/admin/op/gold_add", json={"study": "proto", "prompt": "g0", "question": "best",
                                                   "response_id": 1})
    assert r.status_code == 200, r.text
    ann = srv.login("ann")
    item = ann.get("/api/studies/proto/next").json()["item"]
    assert item["prompt_external_id"] == "g0"
    order = [c["response_id"] for c in item["cards"]]
    r = ann.post("/api/studies/proto/judgments", json={"prompt_id": item["prompt_id"], "shown_order": order,
                                                       "best": 1, "idempotency_key": uuid.uuid4().hex})
    assert r.status_code == 200, r.text

    _open(page, srv)
    expect(page.locator("#cfg-queue-order input")).to_have_value("file position")
    expect(page.locator("#cfg-progress")).to_contain_text("1 / 1 (100%)")
    # A run the study does not have: refused with the reason, nothing saved.
    page.locator("#cfg-label-runs textarea").fill("7, imported")
    page.locator("#cfg-save").click()
    expect(page.locator("#cfg-status")).to_contain_text("generation run 7 is not a run of study 'proto'")
    page.locator("#cfg-label-runs textarea").fill("imported")
    page.locator("#cfg-queue-order input").click()
    page.get_by_role("option", name="random (uniform, seeded)").click()
    page.locator("#cfg-gold-rate input").fill("0.25")
    page.locator("#cfg-gold-min input").fill("0.8")
    page.locator("#cfg-save").click()
    # A new label set on a labelled study: the labels before and after are on different cards.
    expect(page.locator("#cfg-status")).to_contain_text("change the responses people label (the label set)")
    page.locator("#cfg-confirm").click()
    expect(page.locator("#cfg-status")).to_contain_text("queue order: position → random")
    expect(page.locator("#cfg-status")).to_contain_text("label set (runs): the latest run → imported")
    config = admin.post("/api/admin/op/study_settings", json={"study": "proto"}).json()["config"]
    assert (config["label_runs"], config["queue_order"], config["gold_rate"], config["gold_min_accuracy"]) == \
        (["imported"], "random", 0.25, 0.8)
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.locator("#cfg-label-runs").scroll_into_view_if_needed()
        page.screenshot(path=str(shot_dir / f"protocol-settings-{width}.png"), full_page=False)
