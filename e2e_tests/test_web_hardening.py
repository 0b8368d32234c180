"""Issue 13, findings 8 and 9 in a real Chromium: the UI loads and works under the security headers (no
Content-Security-Policy violation, a label is submitted), and the Label tab shows the comment's length
limit and stops typing there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, login, start_server, submit_anyway
from storage import annotators, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn, StudyConfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("hard")
    db = Database(d / "hard.duckdb")
    s = studies.create_study(db, "hard", config=StudyConfig(blind=False, questions=["best", "comment"]))
    prompts.insert_prompts(db, s.id, [PromptIn(external_id="h1", messages=[ChatMessage(role="user", content="2+2?")])])
    pid = prompts.list_prompts(db, s.id)[0].id
    responses.insert_responses(db, [ResponseIn(prompt_id=pid, origin="imported", text=t) for t in ("4", "5")])
    annotators.add_annotator(db, "ann", "annotator", PASSWORDS["ann"], study_ids=[s.id])
    db.close()
    srv = start_server(d / "hard.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_the_ui_works_under_the_security_headers(page: Page, hard_server: Server) -> None:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    login(page, hard_server.url, "ann")
    page_answer = page.goto(f"{hard_server.url}/ui/")
    assert page_answer is not None
    headers = page_answer.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    expect(page.locator("#whoami")).to_contain_text("Signed in as ann")
    expect(page.locator("#prompt")).to_contain_text("2+2?")

    comment = page.locator("#comment textarea")
    expect(page.locator("#comment")).to_contain_text("Comment (optional, up to 5,000 characters)")
    expect(comment).to_have_attribute("maxlength", "5000")
    comment.click()
    page.keyboard.insert_text("n" * 5_001)  # as a paste would: the box keeps 5,000
    expect(comment).to_have_value("n" * 5_000)
    page.locator("body").click(position={"x": 5, "y": 5})  # out of the text box, so the keys reach the page
    page.keyboard.press("1")
    submit_anyway(page)
    stored = hard_server.login("ann").get("/api/studies/hard/judgments").json()["judgments"]
    assert [len(j["rationale"]) for j in stored if j["method"] == "comment"] == [5_000]
    assert violations == []
