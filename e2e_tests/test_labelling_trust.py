"""The labelling issue's browser findings on one server: study settings that open filled and never wipe
a study (1), going back to a revealed item (2), keyboard labelling that lands where the person meant (3),
the Label tab's small promises (8) and a fast typist in the Live tab (9)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from app.ui.study_settings import QUESTION_LABELS
from e2e_tests.conftest import PASSWORDS, Server, critlab, login, start_server, wait_idle, wait_until

pytestmark = pytest.mark.e2e
GUIDE = "Pick the answer a careful teacher would give."


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("trust")
    db = d / "trust.duckdb"
    items = [{"item_id": f"k{i}", "prompt": f"Question {i}: what is {i} + 1?",
              "responses": [{"id": f"k{i}{c}", "text": f"Answer {c} to question {i}."} for c in "abc"],
              "judgments": [{"judge": "gpt-x", "judge_kind": "model", "type": "p_true", "response": f"k{i}a",
                             "prob": 0.9}]} for i in range(6)]
    f = d / "items.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    critlab("import", "judgments", str(f), "--study", "trust", db=db)
    long_item = {"item_id": "long-1", "prompt": "Read this and answer. " + "A long prompt sentence. " * 150,
                 "responses": [{"id": f"long-r{c}", "text": "\n\n".join(f"Paragraph {k} of a long answer."
                                                                         for k in range(60))} for c in "ab"]}
    g = d / "long.jsonl"
    g.write_text(json.dumps(long_item) + "\n")
    critlab("import", "judgments", str(g), "--study", "long", db=db)
    for i, name in enumerate(("other", "fresh")):
        g = d / f"{name}.jsonl"
        g.write_text(json.dumps({"id": f"{name}-1", "prompt": f"A {name} prompt, never labelled."}) + "\n")
        critlab("import", "prompts", str(g), "--study", name, db=db)
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    for who in ("ann", "bob"):
        critlab("annotators", "add", who, "--study", "trust", "--study", "long", "--study", "other", "--study", "fresh",
                "--password-stdin", db=db, stdin=PASSWORDS[who])
    server = start_server(db, d / "server.log")
    admin = server.login("admin")
    r = admin.post("/api/admin/op/configure", json={"study": "trust", "guidelines": GUIDE, "config": {
        "questions": ["best", "rating", "comment"], "blind": True, "reveal": True}})
    assert r.status_code == 200, r.text
    yield server
    server.stop()


def _settings(server: Server, study: str) -> dict:
    r = server.login("admin").post("/api/admin/op/study_settings", json={"study": study})
    assert r.status_code == 200, r.text
    return r.json()


def _question(page: Page, q: str):  # noqa: ANN202
    return page.locator("#cfg-questions").get_by_label(QUESTION_LABELS[q], exact=True)


def _open_settings(page: Page, server: Server, study: str) -> None:
    if "/ui/" not in page.url:
        login(page, server.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    picker = page.locator("#cfg-study input")
    if picker.input_value() != study:
        picker.click()
        page.get_by_role("option", name=study, exact=True).click()
    expect(page.locator("#cfg-study input")).to_have_value(study)
    wait_idle(page)


def test_settings_open_filled_and_a_save_changes_only_what_was_ticked(page: Page, srv: Server) -> None:
    login(page, srv.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    # On page load the form shows the selected study's stored settings, not empty controls.
    first = page.locator("#cfg-study input").input_value()
    assert first, "a study is selected on load"
    stored = _settings(srv, first)
    expect(page.locator("#cfg-blind input")).to_be_checked(checked=stored["config"]["blind"])
    expect(page.locator("#cfg-guidelines textarea")).to_have_value(stored["guidelines"])
    for q in stored["config"]["questions"]:
        expect(_question(page, q)).to_be_checked()

    _open_settings(page, srv, "trust")
    expect(page.locator("#cfg-blind input")).to_be_checked()
    expect(page.locator("#cfg-reveal input")).to_be_checked()
    expect(page.locator("#cfg-guidelines textarea")).to_have_value(GUIDE)
    _question(page, "correct").check()
    page.locator("#cfg-save").click()
    expect(page.locator("#cfg-status")).to_contain_text("questions: + correct / incorrect per response")
    s = _settings(srv, "trust")
    assert s["config"]["blind"] and s["config"]["reveal"] and s["guidelines"] == GUIDE
    assert s["config"]["questions"] == ["best", "rating", "comment", "correct"]


def test_a_stale_form_is_refused_and_weakening_a_labelled_study_needs_confirmation(
        browser: Browser, page: Page, srv: Server) -> None:
    ann = srv.login("ann")
    item = ann.get("/api/studies/trust/next").json()["item"]
    order = [c["response_id"] for c in item["cards"]]
    ann.post("/api/studies/trust/judgments", json={"prompt_id": item["prompt_id"], "shown_order": order,
                                                   "best": order[0], "idempotency_key": "settings-e2e-1"})
    _open_settings(page, srv, "trust")
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    page2 = other.new_page()
    _open_settings(page2, srv, "trust")  # a second admin tab, loaded at the same version

    _question(page, "correct").uncheck()  # removes a question: weakens
    page.locator("#cfg-save").click()
    expect(page.locator("#cfg-status")).to_contain_text("remove the question 'correct / incorrect per response'")
    expect(page.locator("#cfg-confirm")).to_be_visible()
    assert "correct" in _settings(srv, "trust")["config"]["questions"]  # not saved yet
    page.locator("#cfg-confirm").click()
    expect(page.locator("#cfg-status")).to_contain_text("questions: − correct / incorrect per response")
    expect(page.locator("#cfg-confirm")).to_be_hidden()
    assert "correct" not in _settings(srv, "trust")["config"]["questions"]

    page2.locator("#cfg-overlap input").fill("2")
    page2.locator("#cfg-save").click()
    expect(page2.locator("#cfg-status")).to_contain_text("changed since this form was loaded")
    assert _settings(srv, "trust")["config"]["overlap"] is None
    page2.locator("#cfg-reload").click()  # the stale form reloads in place, and the change saves then
    expect(_question(page2, "correct")).not_to_be_checked()
    page2.locator("#cfg-overlap input").fill("2")
    page2.locator("#cfg-save").click()
    expect(page2.locator("#cfg-status")).to_contain_text("annotators per prompt: everyone → 2")
    assert _settings(srv, "trust")["config"]["overlap"] == 2
    other.close()


def _choose_study(page: Page, name: str) -> None:
    """Pick the study in the Label tab and wait until its item is rendered (the page load may have shown
    the same item already; answers typed before the re-render would be replaced)."""
    page.locator("#study-select input").click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def _rate_all(page: Page, ratings: list[int]) -> None:
    """Shift+digit on each card in turn (J moves the highlight), then back to card 1."""
    for i, rating in enumerate(ratings):
        page.keyboard.press(f"Shift+Digit{rating}")
        expect(page.locator(f"#rating-{i + 1} input[value='{rating}']")).to_be_checked()
        page.keyboard.press("j")


def _submit_and_wait(page: Page, text: str) -> None:
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text(text)
    wait_idle(page)


def test_back_to_a_revealed_item_shows_the_revealed_stage_with_the_revision(page: Page, srv: Server) -> None:
    login(page, srv.url, "bob")
    expect(page.locator("#prompt")).to_contain_text("Prompt k")
    wait_idle(page)  # while an event runs, Gradio's progress text sits inside the block too
    prompt = page.locator("#prompt [data-testid='markdown']").inner_text().split("\n")[0]
    page.locator("#progress").click()
    page.keyboard.press("1")
    _rate_all(page, [6, 3, 2])
    _submit_and_wait(page, "model's view is now shown")
    expect(page.locator("#view-1")).to_be_visible()
    page.locator("#rating-1 input[value='5']").check()  # the revision after reveal
    page.locator("#progress").click()
    _submit_and_wait(page, "revised label after reveal")
    expect(page.locator("#prompt")).not_to_contain_text(prompt)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#status")).to_contain_text("stored as a revised label")
    expect(page.locator("#prompt")).to_contain_text(prompt.removeprefix("Prompt ").split(" ")[0])
    expect(page.locator("#prompt")).to_contain_text("the model's view is shown")
    expect(page.locator("#view-1")).to_be_visible()
    expect(page.locator("#rating-1 input[value='5']")).to_be_checked()  # the latest answers, not the blind 6


def test_a_prompt_typed_right_after_picking_one_is_kept(page: Page, srv: Server) -> None:
    """Finding 9: the picked prompt's text arrives after the person has typed their own; theirs stays."""
    login(page, srv.url, "admin")
    page.get_by_role("tab", name="Live").click()
    config = page.request.get(f"{srv.url}/ui/config").json()
    pick_id = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "live-pick")
    held: list[Route] = []

    def hold_pick(route: Route) -> None:
        body = route.request.post_data_json or {}
        if body.get("trigger_id") == pick_id:
            held.append(route)  # answered only once the person has typed
        else:
            route.continue_()

    page.route("**/gradio_api/queue/join*", hold_pick)
    study = page.locator("#live-study input")
    study.click()
    page.get_by_role("option", name="other", exact=True).click()
    wait_idle(page)
    page.locator("#live-pick input").click()
    with page.expect_request(lambda r: "queue/join" in r.url and (r.post_data_json or {}).get("trigger_id") == pick_id):
        page.get_by_role("option", name="other-1").click()
    page.locator("#live-prompt textarea").fill("My own question, typed at once.")
    assert held, "the pick's request is held until the person has typed"
    for route in held:  # Gradio's dropdown may send its input event twice (select, then blur)
        route.continue_()
    page.unroute("**/gradio_api/queue/join*")
    wait_idle(page)
    expect(page.locator("#live-prompt textarea")).to_have_value("My own question, typed at once.")
    # Picking again without typing fills the box as before.
    page.locator("#live-pick input").click()
    page.get_by_role("option", name="other-1").click()
    expect(page.locator("#live-prompt textarea")).to_have_value("A other prompt, never labelled.")


def test_add_to_study_before_generating_says_generate_first(page: Page, srv: Server) -> None:
    login(page, srv.url, "admin")
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-study input").click()
    page.get_by_role("option", name="other", exact=True).click()
    page.locator("#live-add").click()
    expect(page.locator("#live-add-status")).to_contain_text("generate first")


def _held_submits(page: Page, srv: Server) -> list[Route]:
    """Hold the Label tab's submit requests (answered when the test releases them)."""
    config = page.request.get(f"{srv.url}/ui/config").json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "submit-btn")
    held: list[Route] = []

    def hold(route: Route) -> None:
        body = route.request.post_data_json or {}
        held.append(route) if body.get("trigger_id") == button else route.continue_()
    page.route("**/gradio_api/queue/join*", hold)
    return held


def test_digits_pick_without_moving_the_rating_highlight_and_a_pick_rated_below_asks_twice(
        page: Page, srv: Server) -> None:
    """Finding 3: intended ratings 5/3/6 with best 2 land on cards 1/2/3; the contradiction needs Ctrl+Enter twice."""
    login(page, srv.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("Prompt k")
    page.locator("#progress").click()
    page.keyboard.press("2")  # best: card 2; the highlight stays on card 1
    expect(page.locator("#best input[value='2']")).to_be_checked()
    expect(page.locator("#card-1")).to_have_class(re.compile("active-card"))
    for key, card, rating in (("", 1, 5), ("j", 2, 3), ("j", 3, 6)):
        if key:
            page.keyboard.press(key)
        page.keyboard.press(f"Shift+Digit{rating}")
        expect(page.locator(f"#rating-{card} input[value='{rating}']")).to_be_checked()
    expect(page.locator("#card-3")).to_have_class(re.compile("active-card"))
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("response 2, is rated 3, below response 3 (rated 6)")
    wait_idle(page)
    page.keyboard.press("Control+Enter")  # the second press submits it as it is
    expect(page.locator("#status")).to_contain_text("model's view is now shown")
    page.locator("#resp-2").click()  # a click highlights that card
    expect(page.locator("#card-2")).to_have_class(re.compile("active-card"))
    expect(page.locator("#card-2")).to_have_class(re.compile("best-card"))  # the pick is marked on its card
    wait_idle(page)
    page.locator("#progress").click()
    page.keyboard.press("Control+Enter")  # the reveal step as it is: answers already confirmed, no second warning
    expect(page.locator("#status")).to_contain_text("revised label after reveal")


def test_submitting_shows_on_the_button_and_a_second_ctrl_enter_says_so(page: Page, srv: Server) -> None:
    login(page, srv.url, "admin")
    expect(page.locator("#prompt")).to_contain_text("Prompt")
    _choose_study(page, "trust")
    expect(page.locator("#prompt")).to_contain_text("Prompt k")
    page.locator("#progress").click()
    page.keyboard.press("1")
    _rate_all(page, [6, 3, 2])
    held = _held_submits(page, srv)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#submit-btn")).to_have_text("Submitting…")
    wait_until(page, lambda: held, "the first submit to reach the network")  # the button changes first
    page.keyboard.press("Control+Enter")
    expect(page.locator("#submit-note")).to_contain_text("Still submitting")
    assert len(held) == 1, "the second Ctrl+Enter sent a second submit"
    held[0].continue_()
    page.unroute("**/gradio_api/queue/join*")
    expect(page.locator("#status")).to_contain_text("Saved prompt")
    expect(page.locator("#submit-btn")).to_have_text("Submit (Ctrl+Enter)")
    expect(page.locator("#submit-note")).to_be_hidden()


@pytest.mark.parametrize("width", [1400, 800])
def test_a_long_prompt_is_collapsed_and_a_cut_response_shows_a_scroll_cue(browser: Browser, srv: Server,
                                                                           width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    login(page, srv.url, "bob")
    _choose_study(page, "long")
    expect(page.locator("#prompt")).to_contain_text("Prompt long-1")
    expect(page.locator("#prompt")).to_have_class(re.compile("prompt-long"))
    box = page.locator("#prompt .prompt-box")  # the prose inside the block holds the text
    shown, full = box.evaluate("e => [e.clientHeight, e.scrollHeight]")
    assert shown < full / 3, (shown, full)
    page.locator("#prompt-toggle").click()
    expect(page.locator("#prompt-toggle")).to_have_text("Show less")
    shown, full = box.evaluate("e => [e.clientHeight, e.scrollHeight]")
    assert shown >= full - 2
    expect(page.locator("#card-2 .scroll-cue")).to_be_visible()
    page.locator("#card-2 .scroll-cue").scroll_into_view_if_needed()
    assert page.locator("#card-2 .scroll-cue").evaluate(  # on top, not clipped by the scrolling box
        "e => { const r = e.getBoundingClientRect(); return document.elementFromPoint(r.x + r.width / 2,"
        " r.y + r.height / 2) === e; }")
    cue = page.locator("#card-1 .scroll-cue")
    expect(cue).to_be_visible()
    page.locator("#resp-1 .resp-text").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    expect(cue).to_be_hidden()
    page.locator("#card-1").scroll_into_view_if_needed()
    page.locator("#progress").click()
    for _ in range(2):  # J moves the highlight and brings the card into view
        page.keyboard.press("j")
    assert page.locator("#card-1").evaluate("e => e.classList.contains('active-card')")  # wrapped round
    page.keyboard.press("j")
    card = page.locator("#card-2").bounding_box()
    assert card and card["y"] < 900 and card["y"] + min(card["height"], 900) > 0, card
    page.screenshot(path=str(Path(tempfile.gettempdir()) / f"critlab-long-{width}.png"), full_page=False)
    context.close()


def test_unfinished_answers_warn_in_view_and_leaving_them_needs_a_second_press(browser: Browser, srv: Server) -> None:
    """A missing rating is pointed out where the person is looking; ← and S do not drop typed answers silently;
    the comment box follows the study's questions."""
    context = browser.new_context(viewport={"width": 800, "height": 700})
    page = context.new_page()
    login(page, srv.url, "admin")
    _choose_study(page, "trust")
    expect(page.locator("#prompt")).to_contain_text("Prompt k")
    first = page.locator("#prompt").inner_text().split("\n")[0]
    page.locator("#progress").click()
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    status = page.locator("#status")
    expect(status).to_contain_text("No response is rated")
    box = status.bounding_box()
    assert box and 0 <= box["y"] and box["y"] + box["height"] <= 700, f"the warning is out of view: {box}"
    page.keyboard.press("s")  # a pick is an answer: leaving needs a second press
    expect(page.locator("#submit-note")).to_contain_text("press S (Skip) again")
    expect(page.locator("#prompt")).to_contain_text(first)
    page.keyboard.press("s")
    expect(status).to_contain_text("Skipped prompt")
    expect(page.locator("#prompt")).not_to_contain_text(first)
    page.locator("#comment textarea").fill("half a thought")
    page.locator("#progress").click()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#submit-note")).to_contain_text("press ← (Back) again")
    expect(page.locator("#comment textarea")).to_have_value("half a thought")
    context.close()
    r = srv.login("admin").post("/api/admin/op/configure", json={"study": "long", "config": {"questions": ["best"]}})
    assert r.status_code == 200, r.text
    page = browser.new_page()
    login(page, srv.url, "admin")
    _choose_study(page, "long")
    expect(page.locator("#prompt")).to_contain_text("Prompt long-1")
    expect(page.locator("#comment")).to_be_hidden()
    page.close()
