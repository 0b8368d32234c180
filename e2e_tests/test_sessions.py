"""Sessions in a real Chromium: logging out in place, a session that ends under an open page (deleted
cookie, disabled account) sends the page to the login form with a message instead of a wall of Gradio
"Error" badges, whatever the person does next; and the Admin tab manages people (add, disable, enable,
reset password) with immediate effect on their sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from app.auth import COOKIE
from e2e_tests.conftest import PASSWORDS, Server, logged_in, login, start_server, wait_idle
from storage import annotators, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, PromptIn, ResponseIn

pytestmark = pytest.mark.e2e

EXPIRED = re.compile(r"/login\?expired=1$")
# Gradio's error badge on an output and its error toast. The watcher below records whether either ever
# appeared on a /ui/ page (in sessionStorage, which survives the tab's move to the login page).
ERROR_BADGES = "[data-testid=status-tracker] .error, [data-testid=toast-body].error"
WATCH_ERRORS = """
if (location.pathname.startsWith("/ui")) {
  new MutationObserver(() => {
    if (document.querySelector(%r)) sessionStorage.setItem("critlab-test-error-seen", location.href);
  }).observe(document, {childList: true, subtree: true});
}
""" % ERROR_BADGES


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One study with two imported responses per prompt (so the Label tab has work), an admin and three
    annotators."""
    d = tmp_path_factory.mktemp("sessions")
    db = Database(d / "sessions.duckdb")
    s = studies.create_study(db, "sess")
    prompts.insert_prompts(db, s.id, [PromptIn(external_id=f"q{i}", messages=[ChatMessage(role="user",
                                                                                          content=f"Question {i}?")])
                                      for i in range(4)])
    for p in prompts.list_prompts(db, s.id):
        responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=f"Answer {k}.")
                                        for k in (1, 2)])
    for name, password in PASSWORDS.items():
        annotators.add_annotator(db, name, "admin" if name == "admin" else "annotator", password)
        if name != "admin":
            members.add(db, s.id, name, "test")
    db.close()
    server = start_server(d / "sessions.duckdb", d / "server.log")
    yield server
    server.stop()


def open_ui(page: Page, url: str, name: str) -> None:
    page.context.add_init_script(WATCH_ERRORS)
    login(page, url, name)
    expect(page.locator("#whoami")).to_contain_text(f"Signed in as {name}")
    expect(page.locator("#prompt")).to_contain_text("Question")
    wait_idle(page)


def session_cookies(context: BrowserContext) -> list[dict]:
    return [c for c in context.cookies() if c["name"] == COOKIE]


def assert_sent_to_login_with_message(page: Page) -> None:
    expect(page).to_have_url(EXPIRED)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("Your session has ended")
    assert page.locator(ERROR_BADGES).count() == 0
    assert page.evaluate("sessionStorage.getItem('critlab-test-error-seen')") is None, "Gradio showed Error badges"


def test_log_out_happens_in_the_same_tab_and_back_shows_no_ui(page: Page, srv: Server) -> None:
    open_ui(page, srv.url, "ann")
    page.goto(f"{srv.url}/ui/")  # a second /ui/ entry in the history, for Back to land on
    expect(page.locator("#whoami")).to_contain_text("Signed in as ann")
    copied = session_cookies(page.context)
    assert copied
    page.get_by_text("Log out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
    expect(page.locator("#notice")).to_contain_text("You have logged out")
    assert page.context.pages == [page], "logging out opened another tab"
    assert session_cookies(page.context) == []
    # The session ended on the server: a copy of the cookie taken before logging out is refused too.
    with httpx.Client(base_url=srv.url, timeout=30, cookies={COOKIE: copied[0]["value"]}) as copy:
        assert copy.get("/api/me").status_code == 401
    # Back: the earlier /ui/ page is asked for again (no-store) and the session gate answers with the login page.
    page.go_back()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#label-panel")).to_have_count(0)
    expect(page.locator("#whoami")).to_have_count(0)


@pytest.mark.parametrize("action", ["key", "click", "timer"])
def test_a_deleted_session_cookie_sends_the_page_to_the_login_form(page: Page, srv: Server, action: str) -> None:
    """Whatever comes next (a shortcut handled by hotkeys.js, a click on Submit, the Studies tab's job
    timer ticking by itself), the page goes to the login form with a message and Gradio never paints an
    Error badge."""
    open_ui(page, srv.url, "admin" if action == "timer" else "ann")
    if action == "timer":
        page.get_by_role("tab", name="Studies").click()
        expect(page.locator("#job-progress")).to_be_visible()
    page.context.clear_cookies()
    # Acted on at once, without waiting for an element: every open page also has a refresh timer, and when it
    # ticks first it is the one that meets the 401 (the same outcome, which the timer case checks alone).
    if action == "key":
        page.keyboard.press("s")  # skip (the page has the focus, not a text field)
    elif action == "click":
        page.evaluate("document.querySelector('#submit-btn')?.click()")
    assert_sent_to_login_with_message(page)


def test_a_person_disabled_by_an_admin_is_sent_to_the_login_form_and_cannot_log_in(
        page: Page, browser: Browser, srv: Server) -> None:
    """cy has the Label tab open; an admin disables cy in the Admin tab; cy's next key press ends on the
    login form, and cy's password no longer works. Enabling cy lets the password work again."""
    open_ui(page, srv.url, "cy")
    with logged_in(browser, srv.url, "admin") as admin:
        choose_person(admin, "cy")
        admin.locator("#ann-disable").click()
        expect(admin.locator("#ann-status")).to_contain_text("Disabled cy")
        # cy's next request ends on the login form: this key press, or the page's refresh timer if it ticks first.
        page.keyboard.press("s")
        assert_sent_to_login_with_message(page)
        page.fill("#name", "cy")
        page.fill("#password", PASSWORDS["cy"])
        page.keyboard.press("Enter")
        expect(page.locator("#error")).to_contain_text("wrong name or password")
        admin.locator("#ann-enable").click()
        expect(admin.locator("#ann-status")).to_contain_text("Enabled cy")
    page.locator("#login-btn").click()
    page.wait_for_url("**/ui/**")
    expect(page.locator("#whoami")).to_contain_text("Signed in as cy")


def choose_person(page: Page, name: str) -> None:
    page.get_by_role("tab", name="Admin").click()
    picker = page.locator("#ann-pick input")
    picker.click()
    page.get_by_role("option", name=name, exact=True).click()
    expect(picker).to_have_value(name)


def row_of(page: Page, name: str):  # noqa: ANN201
    return page.locator("#ann-table").get_by_role("row").filter(has=page.get_by_role("gridcell", name=name, exact=True))


def test_admin_tab_adds_disables_enables_and_resets_people(page: Page, srv: Server) -> None:
    login(page, srv.url, "admin")
    page.get_by_role("tab", name="Admin").click()
    for name in ("admin", "ann", "bob"):
        expect(row_of(page, name)).to_contain_text("active")
    # Add: the password is shown once and the name box clears for the next person.
    page.locator("#ann-name textarea, #ann-name input").first.fill("dora")
    page.locator("#ann-add").click()
    expect(page.locator("#ann-status")).to_contain_text("Added dora (annotator). Password:")
    expect(page.locator("#ann-name textarea, #ann-name input").first).to_have_value("")
    expect(row_of(page, "dora")).to_contain_text("annotator")
    dora_password = re.search(r"Password: (\S+) \(shown once", page.locator("#ann-status").inner_text()).group(1)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.post("/api/login", json={"name": "dora", "password": dora_password}).status_code == 200

    # bob is logged in elsewhere (a script with his cookie); a disable ends that session at once.
    bob = srv.login("bob")
    try:
        assert bob.get("/api/me").status_code == 200
        choose_person(page, "bob")
        page.locator("#ann-disable").click()
        expect(page.locator("#ann-status")).to_contain_text("Disabled bob")
        expect(row_of(page, "bob")).to_contain_text("disabled")
        assert bob.get("/api/me").status_code == 401
        page.locator("#ann-enable").click()
        expect(page.locator("#ann-status")).to_contain_text("Enabled bob")
        expect(row_of(page, "bob")).to_contain_text("active")
        assert bob.get("/api/me").status_code == 401, "enabling brought an ended session back"

        bob = srv.login("bob")
        page.locator("#ann-reset").click()
        expect(page.locator("#ann-status")).to_contain_text("New password for bob:")
        assert bob.get("/api/me").status_code == 401
        new = re.search(r"New password for bob: (\S+) \(shown once", page.locator("#ann-status").inner_text()).group(1)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.post("/api/login", json={"name": "bob", "password": PASSWORDS["bob"]}).status_code == 401
            assert c.post("/api/login", json={"name": "bob", "password": new}).status_code == 200
    finally:
        bob.close()

    # The last enabled admin cannot be disabled (nobody could undo it from the UI).
    choose_person(page, "admin")
    page.locator("#ann-disable").click()
    expect(page.locator("#ann-status")).to_contain_text("last enabled admin")
    expect(row_of(page, "admin")).to_contain_text("active")


def test_a_request_that_fails_while_the_page_leaves_reaches_no_handler(page: Page, srv: Server) -> None:
    """Found by a loaded run: after a 401 the page navigates to the login form, the navigation aborts the
    requests still in flight (Gradio's event stream among them), and Gradio painted an Error badge for each
    before the page unloaded. Here the login page is held back so the old page lives on, a request the page
    started before the 401 is aborted, and then a control request made with the browser's own fetch is
    aborted: the control's rejection arrives, the page's request has reported nothing (it never reaches
    Gradio's error handling). The page reports through console messages: Playwright cannot evaluate in a
    frame whose navigation is held."""
    page.context.add_init_script("window.__rawFetch = window.fetch;")  # before session.js wraps it
    open_ui(page, srv.url, "ann")
    held: list[Route] = []
    control: list[Route] = []
    to_login: list[Route] = []
    reports: list[str] = []
    page.on("console", lambda msg: reports.append(msg.text) if msg.text.startswith("test:") else None)
    page.route("**/held-by-test", lambda route: held.append(route))
    page.route("**/control-by-test", lambda route: control.append(route))
    with page.expect_request("**/held-by-test"):
        page.evaluate("""() => { fetch("/held-by-test").then(
            () => console.log("test:held resolved"), () => console.log("test:held rejected")); }""")
    with page.expect_request("**/control-by-test"):
        page.evaluate("""() => { window.__rawFetch("/control-by-test").catch(
            () => console.log("test:control rejected")); }""")
    page.route("**/login?expired=1", lambda route: to_login.append(route))
    page.context.clear_cookies()
    with page.expect_request("**/login?expired=1"):
        page.evaluate("() => { fetch('/api/me'); }")  # 401: the page starts leaving
    held[0].abort()
    with page.expect_event("console", lambda msg: msg.text == "test:control rejected"):
        control[0].abort()
    assert reports == ["test:control rejected"]
    to_login[0].continue_()
    assert_sent_to_login_with_message(page)



def test_an_event_stream_that_breaks_while_the_page_leaves_reaches_no_handler(page: Page,
                                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same for a response already streaming (Gradio's event streams): the page leaves, the server's
    connections break (here: the server is killed), and the control stream, read with the browser's own
    fetch, reports the error while the page's stream reports nothing."""
    d = tmp_path_factory.mktemp("broken-stream")
    with Database(d / "s.duckdb") as db:
        annotators.add_annotator(db, "ann", "annotator", PASSWORDS["ann"])
    own = start_server(d / "s.duckdb", d / "server.log")
    try:
        page.context.add_init_script("window.__rawFetch = window.fetch;")  # before session.js wraps it
        login(page, own.url, "ann")
        expect(page.locator("#whoami")).to_contain_text("Signed in as ann")
        reports: list[str] = []
        page.on("console", lambda msg: reports.append(msg.text) if msg.text.startswith("test:") else None)
        with page.expect_event("console", lambda m: m.text == "test:both open"):
            page.evaluate("""() => {
                const open = async (get, name) => (await get("/ui/gradio_api/heartbeat/test-" + name)).body.getReader();
                const drain = async (reader, name) => {
                    try { while (!(await reader.read()).done) {} console.log("test:" + name + " ended"); }
                    catch (e) {
                        console.log("test:" + name + " error");
                        // Then, once the page has nothing else to do, a marker: the other stream broke at the
                        // same moment, so its error, had it been let through, has been handled by now.
                        if (name === "control") requestIdleCallback(() => setTimeout(() => console.log("test:idle"), 0));
                    }
                };
                Promise.all([open(fetch, "held"), open(window.__rawFetch, "control")]).then(([held, control]) => {
                    console.log("test:both open");
                    drain(held, "held");
                    drain(control, "control");
                });
            }""")
        to_login: list[Route] = []
        page.route("**/login?expired=1", lambda route: to_login.append(route))
        page.context.clear_cookies()
        with page.expect_request("**/login?expired=1"):
            page.evaluate("() => { fetch('/api/me'); }")  # 401: the page starts leaving
        with page.expect_event("console", lambda m: m.text == "test:idle"):
            own.proc.kill()  # every connection breaks mid-stream
        assert reports == ["test:both open", "test:control error", "test:idle"]
    finally:
        own.stop()
