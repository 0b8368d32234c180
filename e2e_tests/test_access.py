"""Study members in a real Chromium (issue 13): an annotator's Label tab lists only the studies they are a
member of; the Admin tab ticks and unticks an annotator's studies with immediate effect; a person removed
while an item is open is told so when they submit, and nothing of theirs is stored then (what they stored
before stays)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e_tests.conftest import PASSWORDS, Server, logged_in, login, start_server, wait_idle
from storage import annotators, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn, StudyConfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Studies alpha and beta (best pick only, so a submit needs no confirmation); ann is a member of alpha,
    bob of nothing."""
    d = tmp_path_factory.mktemp("access")
    db = Database(d / "access.duckdb")
    for name in ("alpha", "beta"):
        s = studies.create_study(db, name, config=StudyConfig(questions=["best"]))
        prompts.insert_prompts(db, s.id, [PromptIn(external_id=f"{name}-{i}", messages=[ChatMessage(
            role="user", content=f"A {name} question number {i}?")]) for i in range(3)])
        for p in prompts.list_prompts(db, s.id):
            responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=f"Answer {k}.")
                                            for k in (1, 2)])
    for name in ("admin", "ann", "bob"):
        annotators.add_annotator(db, name, "admin" if name == "admin" else "annotator", PASSWORDS[name])
    members.add(db, studies.get_study(db, "alpha").id, "ann", "admin")
    db.close()
    server = start_server(d / "access.duckdb", d / "server.log")
    yield server
    server.stop()


def picker_choices(page: Page) -> list[str]:
    page.locator("#study-select input").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    names = [t.replace("✓", "").strip() for t in options.all_inner_texts()]  # ✓ marks the chosen one
    page.keyboard.press("Escape")
    return names


def ticks_after_now(page: Page) -> None:
    """Wait until the page's refresh timer has run after this moment: two of its event streams
    (/queue/data) finish, and the second one opened after the first closed, so it carries only events
    joined, and answered, from now on. The timer leaves a focused picker alone, so a test must not open
    one before its update has arrived."""
    for _ in range(2):
        with page.expect_request_finished(lambda r: "/gradio_api/queue/data" in r.url):
            pass


def set_studies(admin: Page, person: str, ticked: dict[str, bool]) -> None:
    """The Admin tab: choose the person, tick or untick studies, save."""
    admin.get_by_role("tab", name="Admin").click()
    pick = admin.locator("#ann-pick input")
    pick.click()
    admin.get_by_role("option", name=person, exact=True).click()
    expect(pick).to_have_value(person)
    boxes = admin.locator("#ann-studies")
    expect(boxes.get_by_label("alpha")).to_be_enabled()
    for study, on in ticked.items():
        box = boxes.get_by_label(study, exact=True)
        if box.is_checked() != on:
            box.click()
        expect(box).to_be_checked(checked=on)
    admin.locator("#ann-studies-save").click()


def test_the_label_tab_lists_member_studies_only_and_the_admin_tab_adds_one(page: Page, browser: Browser,
                                                                         srv: Server) -> None:
    login(page, srv.url, "bob")
    expect(page.locator("#whoami")).to_contain_text("Signed in as bob")
    expect(page.locator("#status")).to_contain_text("No study to label yet")
    # The prompt box agrees: nothing claims bob's work is done.
    expect(page.locator("#prompt")).to_contain_text("No study for you to label yet")
    wait_idle(page)
    for empty_form in ("#best", "#comment", "#submit-btn", "#skip-btn"):  # nothing to answer, nothing offered
        expect(page.locator(empty_form)).to_be_hidden()

    with logged_in(browser, srv.url, "admin") as admin:
        set_studies(admin, "bob", {"beta": True})
        expect(admin.locator("#ann-status")).to_contain_text("bob may label: beta (added to beta)")
        row = admin.locator("#ann-table").get_by_role("row").filter(
            has=admin.get_by_role("gridcell", name="bob", exact=True))
        expect(row).to_contain_text("beta")
        # An admin's own boxes: every study, and nothing to untick.
        admin.locator("#ann-pick input").click()
        admin.get_by_role("option", name="admin", exact=True).click()
        expect(admin.locator("#ann-studies")).to_contain_text("Admins open every study")
        expect(admin.locator("#ann-studies").get_by_label("alpha")).to_be_disabled()

    # bob's open page learns of the new study on its refresh timer, and only of that one.
    ticks_after_now(page)
    page.locator("#study-select input").click()
    expect(page.get_by_role("option", name="beta", exact=True)).to_be_visible()
    assert [t.replace("✓", "").strip() for t in page.get_by_role("option").all_inner_texts()] == ["beta"]
    page.get_by_role("option", name="beta", exact=True).click()
    expect(page.locator("#prompt")).to_contain_text("A beta question")
    for form in ("#best", "#submit-btn", "#skip-btn"):  # beta asks for no comment
        expect(page.locator(form)).to_be_visible()

    with logged_in(browser, srv.url, "ann") as ann:
        expect(ann.locator("#prompt")).to_contain_text("A alpha question")
        wait_idle(ann)
        assert picker_choices(ann) == ["alpha"]


def test_a_member_removed_with_an_item_open_is_told_on_submit(page: Page, browser: Browser, srv: Server) -> None:
    login(page, srv.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("A alpha question")
    wait_idle(page)
    page.locator("#progress").click()  # the page has the focus, not a field
    page.keyboard.press("1")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("Saved prompt alpha-")
    wait_idle(page)
    expect(page.locator("#prompt")).to_contain_text("A alpha question")  # the next item, now open

    with logged_in(browser, srv.url, "admin") as admin:
        set_studies(admin, "ann", {"alpha": False})
        expect(admin.locator("#ann-status")).to_contain_text("ann may label: no study (removed from alpha)")

    page.locator("#progress").click()
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("ann is not a member of study 'alpha'")
    expect(page.locator("#status")).to_contain_text("labels stored before stay")
    # The server owns the database: ask it. The label made before the removal stayed; nothing came after.
    admin_api = srv.login("admin")
    rows = admin_api.get("/api/studies/alpha/judgments", params={"judge": "ann"}).json()["judgments"]
    admin_api.close()
    assert len({r["prompt_id"] for r in rows}) == 1
