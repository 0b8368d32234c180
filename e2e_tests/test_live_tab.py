"""The Live tab in a real Chromium with the embedded model: type a prompt, watch two samples stream in and
their scores arrive, label them, add them to a study, and find the prompt in an annotator's Label tab."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e_tests.conftest import Server, critlab, logged_in, login, settled, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.model]

QUESTION = "Name one colour of the rainbow."

# Records every text the first card and the status line show, to prove the samples arrived in pieces.
RECORDER = """() => {
  window.seen = {card: [], status: []};
  const grab = (sel, key) => {
    const t = document.querySelector(sel)?.innerText ?? "";
    if (t && window.seen[key].at(-1) !== t) window.seen[key].push(t);
  };
  // The cards are not in the DOM until shown, so watch the whole page.
  new MutationObserver(() => { grab("#live-resp-1", "card"); grab("#live-status", "status"); })
    .observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def test_live_sample_score_label_and_add(page: Page, browser: Browser, server: Server, tmp_path: Path,
                                        shot_dir: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"id": "seed", "prompt": "A prompt that has no responses yet."}) + "\n")
    critlab("import", "prompts", str(f), "--study", "live", db=server.db)
    critlab("studies", "members", "add", "live", "ann", db=server.db)

    login(page, server.url, "admin")
    page.get_by_role("tab", name="Live").click()
    study = page.locator("#live-study input")
    study.click()
    page.get_by_role("option", name="live").click()
    wait_idle(page)
    pick = page.locator("#live-pick input")
    pick.click()
    page.get_by_role("option", name="seed").click()  # a study prompt fills the prompt box
    expect(page.locator("#live-prompt textarea")).to_have_value("A prompt that has no responses yet.")
    page.locator("#live-prompt textarea").fill(QUESTION)
    page.locator("#live-n input[type=range]").fill("2")
    page.locator("#live-max-tokens input").fill("32")
    page.locator("#live-max-tokens input").press("Tab")
    page.evaluate(RECORDER)
    page.locator("#live-generate").click()

    expect(page.locator("#live-status")).to_contain_text("done", timeout=180_000)
    expect(page.locator("#live-status")).to_contain_text("Samples: 2 / 2 complete")
    for k in (1, 2):
        expect(page.locator(f"#live-resp-{k}")).not_to_be_empty()
        expect(page.locator(f"#live-view-md-{k}")).to_contain_text("P(True)")
        expect(page.locator(f"#live-view-md-{k}")).to_contain_text("Judge score")
    expect(page.locator("#live-card-3")).to_be_hidden()
    seen = page.evaluate("window.seen")
    # Streamed: the status showed an unfinished state, and card 1 grew through more than one text.
    assert any("Samples: 0 / 2" in s or "Samples: 1 / 2" in s for s in seen["status"]), seen["status"]
    assert len(seen["card"]) >= 2, seen["card"]

    page.locator("#live-pick-2").click()
    expect(page.locator("#live-best input[value='2']")).to_be_checked()
    page.locator("#live-rating-1 input[value='3']").check()
    page.locator("#live-rating-2 input[value='6']").check()
    page.locator("#live-comment textarea").fill("the second names a colour")
    expect(page.locator("#live-comment textarea")).to_have_value("the second names a colour")
    settled(page)  # the picks and ratings are painted before the screenshot
    page.screenshot(path=str(shot_dir / "live-tab.png"), full_page=True)  # docs/ with `make screenshots`
    page.locator("#live-add").click()
    expect(page.locator("#live-add-status")).to_contain_text("Added to live as prompt", timeout=30_000)
    expect(page.locator("#live-add-status")).to_contain_text("2 responses")
    expect(page.locator("#live-add-status")).to_contain_text("4 labels")
    page.locator("#live-add").click()  # a second click stores nothing new
    expect(page.locator("#live-add-status")).to_contain_text("Already added")

    admin = server.login("admin")
    rows = admin.get("/api/studies/live/judgments").json()["judgments"]
    human = [j for j in rows if j["judge_kind"] == "human"]
    assert {(j["method"], j["stage"], j["source"]) for j in human} == {
        ("best_of_n", "revealed", "live"), ("likert", "revealed", "live"), ("comment", "revealed", "live")}
    assert {j["method"] for j in rows if j["judge_kind"] == "model"} >= {"p_true", "judge_score", "self_certainty"}

    # An annotator finds the live prompt in the Label tab (the imported one has no responses yet) and
    # has no Live tab: the study does not grant it.
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = ctx.new_page()
    login(other, server.url, "ann")
    expect(other.locator("#prompt")).to_contain_text("Prompt live-", timeout=30_000)
    expect(other.locator("#prompt")).to_contain_text(QUESTION)
    expect(other.locator("#card-2")).to_be_visible()
    expect(other.locator("#card-3")).to_be_hidden()
    expect(other.get_by_role("tab", name="Live")).to_have_count(0)
    ctx.close()


def _ask(page: Page, n: str, max_tokens: str) -> None:
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-prompt textarea").fill("Count from 1 to 1000, one number per line.")
    page.locator("#live-n input[type=range]").fill(n)
    page.locator("#live-max-tokens input").fill(max_tokens)
    page.locator("#live-max-tokens input").press("Tab")


def test_one_live_generation_per_person_and_the_token_cap(page: Page, browser: Browser, server: Server,
                                                          tmp_path: Path) -> None:
    """Finding 7: a person's second Generate (from another tab) while theirs runs is refused, saying why; an
    over-cap request is refused naming the numbers; after Stop the person may generate again. (In the
    same tab Gradio ignores Generate while its event runs, so the second one comes from another tab.)"""
    login(page, server.url, "admin")
    with logged_in(browser, server.url, "admin") as other:
        _ask(other, "8", "4096")
        other.locator("#live-generate").click()
        expect(other.locator("#live-status")).to_contain_text(
            "too much for one Live generation: 8 samples × 4,096 max tokens = 32,768 tokens, and this server "
            "allows at most 4,096 (critlab serve --live-token-cap)", timeout=30_000)
        _ask(other, "1", "16")

        _ask(page, "8", "512")  # 4,096 tokens, the default cap: then the scores, on this CPU
        page.locator("#live-generate").click()
        expect(page.locator("#live-status")).to_contain_text(re.compile(r"Samples: \d / 8"), timeout=60_000)
        other.locator("#live-generate").click()
        expect(other.locator("#live-status")).to_contain_text("you already have a Live generation running",
                                                              timeout=30_000)
        expect(page.locator("#live-status")).not_to_contain_text("done")  # it was still running
        for width in (1400, 800):
            other.set_viewport_size({"width": width, "height": 1000})
            other.screenshot(path=str(tmp_path / f"live-refused-{width}.png"))
        page.locator("#live-stop").click()
        expect(page.locator("#live-status")).to_contain_text(re.compile("done|stopped"), timeout=120_000)
        other.locator("#live-generate").click()
        expect(other.locator("#live-status")).to_contain_text("done", timeout=120_000)
        expect(other.locator("#live-status")).to_contain_text("Samples: 1 / 1 complete")
