"""The Label tab's model's view on an item scored by two judge models with the same method: after the blind
submit each judge's verdicts show under its model id. Screenshots at 1400 and 800 px go to $CRITLAB_SHOTS."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, critlab, login, review_shot, start_server, wait_idle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("judges-view")
    db = d / "view.duckdb"
    item = {"item_id": "q1", "prompt": "What is 2 + 2?",
            "responses": [{"id": "r-a", "text": "It is 4."}, {"id": "r-b", "text": "It is 5."}],
            "judgments": [{"judge": judge, "judge_kind": "model", "type": "p_true", "response": rid, "prob": p}
                          for judge, probs in (("judge-x@aaa", (0.91, 0.12)), ("judge-y@bbb", (0.35, 0.64)))
                          for rid, p in zip(("r-a", "r-b"), probs)]}
    f = d / "items.jsonl"
    f.write_text(json.dumps(item) + "\n")
    critlab("import", "judgments", str(f), "--study", "view", db=db)
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    critlab("annotators", "add", "ann", "--study", "view", "--password-stdin", db=db, stdin=PASSWORDS["ann"])
    server = start_server(db, d / "server.log")
    r = server.login("admin").post("/api/admin/op/configure", json={"study": "view", "config": {
        "questions": ["best"], "blind": True, "reveal": True}})
    assert r.status_code == 200, r.text
    yield server
    server.stop()


def test_each_judge_under_its_model_name(page: Page, srv: Server) -> None:
    login(page, srv.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("2 + 2")
    wait_idle(page)
    page.locator("#progress").click()
    page.keyboard.press("1")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("model's view is now shown")
    wait_idle(page)
    views = page.locator("#view-1, #view-2")
    expect(views.first).to_be_visible()
    for v in (page.locator("#view-1"), page.locator("#view-2")):
        expect(v.locator(".judge-name")).to_have_count(2)
        expect(v.locator(".judge-name").nth(0)).to_have_text("judge-x@aaa")
        expect(v.locator(".judge-name").nth(1)).to_have_text("judge-y@bbb")
    text = page.locator("#view-1").inner_text() + page.locator("#view-2").inner_text()
    assert "0.91" in text and "0.35" in text and "0.12" in text and "0.64" in text
    page.locator("#view-1").scroll_into_view_if_needed()
    review_shot(page, "model-view-judges-1400.png")
    page.set_viewport_size({"width": 800, "height": 1000})
    page.locator("#view-1").scroll_into_view_if_needed()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    review_shot(page, "model-view-judges-800.png")
