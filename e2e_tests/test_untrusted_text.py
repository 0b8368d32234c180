"""Prompts and model output are untrusted: script, event-handler, javascript: and remote-image
payloads must render inert in the Label tab, and the browser must fetch nothing remote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, login, settled, start_server
from storage import annotators, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn

pytestmark = pytest.mark.e2e

PAYLOADS = [
    "<img src=x onerror=\"window.__xss='img'\"> image with onerror",
    "<script>window.__xss='script'</script> script tag",
    "[click me](javascript:window.__xss='link') javascript link",
    "![tracker](http://tracker.invalid/pixel.png) remote image",
]


@pytest.fixture(scope="module")
def xss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("xss")
    db = Database(d / "xss.duckdb")
    s = studies.create_study(db, "xss", guidelines="<img src=x onerror=\"window.__xss='guide'\"> be careful")
    prompts.insert_prompts(db, s.id, [PromptIn(external_id="x1", messages=[
        ChatMessage(role="user", content="<svg onload=\"window.__xss='svg'\"></svg> =HYPERLINK(\"http://x\",\"y\")")])])
    pid = prompts.list_prompts(db, s.id)[0].id
    responses.insert_responses(db, [ResponseIn(prompt_id=pid, origin="imported", text=t) for t in PAYLOADS])
    annotators.add_annotator(db, "ann", "annotator", PASSWORDS["ann"])
    members.add(db, s.id, "ann", "test")
    db.close()
    srv = start_server(d / "xss.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_payloads_render_inert(page: Page, xss_server: Server) -> None:
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login(page, xss_server.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("=HYPERLINK", timeout=30_000)
    for k in range(1, 5):
        expect(page.locator(f"#resp-{k}")).to_be_visible()
    settled(page)  # any late image load or handler has started by now
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert not [u for u in requests if "tracker.invalid" in u or u.endswith("/x")]
    cards = page.locator(".resp-text")
    assert cards.locator("img").count() == 0
    assert cards.locator("script").count() == 0
    assert page.locator("#prompt svg").count() == 0
    assert cards.locator("a[href^='javascript']").count() == 0
    expect(page.locator("div[id^='resp-']").filter(has_text="script tag")).to_contain_text("<script>")
    expect(page.locator("div[id^='resp-']").filter(has_text="remote image")).to_contain_text("[image removed: tracker]")
