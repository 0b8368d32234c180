"""A multi-turn answer imported from FastChat / MT-Bench in the Label tab of a real Chromium: on the turn-2
item each card shows that model's own turn 1 in a box above its answer, the answer under a heading of its
own, nothing wider than the page at 800 px; a turn-1 item shows no such box. The sticky action bar stays
above the cards' field labels when a tall card slides under it. Screenshots go to tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, critlab, login, start_server, wait_idle

pytestmark = [pytest.mark.e2e]

SAMPLE = Path(__file__).parent.parent / "tests" / "data" / "formats" / "fastchat_mtbench.jsonl"
TURN_1 = "Write a short blog post about a weekend trip to Lisbon"
# Each model's own turn-1 reply (the sample's conversation_a / conversation_b), keyed by its turn-2 answer.
OWN_TURN_1 = {"Lisbon was lovely.": "Lisbon was great. We ate pastel de nata",
              "Lisbon greeted us": "My weekend in Lisbon began with warm custard tarts"}


@pytest.fixture(scope="module")
def mt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("mt")
    db = d / "mt.duckdb"
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    critlab("import", "judgments", str(SAMPLE), "--study", "mt", "--from", "fastchat", db=db)
    critlab("annotators", "add", "ann", "--study", "mt", "--password-stdin", db=db, stdin=PASSWORDS["ann"])
    srv = start_server(db, d / "server.log")
    yield srv
    srv.stop()


def _shots(page: Page, folder: Path, name: str) -> None:
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.locator("#card-1").scroll_into_view_if_needed()
        page.screenshot(path=str(folder / f"{name}-{width}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _check_turn_2(page: Page, tmp_path: Path) -> None:
    for k in (1, 2):
        text = page.locator(f"#resp-{k}")
        box = text.locator("blockquote.earlier-turns")
        expect(box).to_be_visible()
        expect(box).to_contain_text("Earlier in this conversation")
        expect(box).to_contain_text(TURN_1)
        expect(text.locator(".this-turn")).to_have_text("This response (turn 2)")
        answer = text.locator(".this-turn ~ p").first.inner_text()
        mine = next(v for a, v in OWN_TURN_1.items() if answer.startswith(a))
        expect(box).to_contain_text(mine)  # this card's model's own turn 1, not the other one's
        assert answer not in box.inner_text()
        assert box.bounding_box()["y"] + box.bounding_box()["height"] <= text.locator(".this-turn").bounding_box()["y"]
    _shots(page, tmp_path, "turn-2")
    page.set_viewport_size({"width": 800, "height": 1000})
    widths = page.evaluate("""() => [document.documentElement.scrollWidth,
        ...[...document.querySelectorAll('.earlier-turns')].map(b => b.scrollWidth - b.clientWidth)]""")
    assert widths[0] <= 800 and all(w <= 0 for w in widths[1:]), widths
    page.set_viewport_size({"width": 1400, "height": 1000})

    # The rating's label (Gradio puts its block labels at z-index 40) slid over the action bar before. A
    # shorter window puts the label below the bar, and the page scrolls it up to under the bar.
    page.set_viewport_size({"width": 1400, "height": 700})
    hit = page.evaluate("""() => {
        window.scrollTo(0, 0);
        const bar = document.querySelector('#label-actions');
        const label = document.querySelector('#rating-1 [data-testid=block-info]');
        const l = label.getBoundingClientRect(), b = bar.getBoundingClientRect();
        window.scrollBy(0, (l.top + l.height / 2) - (b.top + b.height / 2));
        const l2 = label.getBoundingClientRect(), b2 = bar.getBoundingClientRect();
        const y = b2.top + b2.height / 2, x = l2.left + l2.width / 2;
        if (!(l2.top <= y && y <= l2.bottom)) return 'label not under the bar: ' + JSON.stringify([l2, b2]);
        return bar.contains(document.elementFromPoint(x, y)) ? 'bar' : document.elementFromPoint(x, y).outerHTML;
    }""")
    assert hit == "bar", hit
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_turn_2_cards_show_their_own_earlier_turns(page: Page, mt_server: Server, tmp_path: Path) -> None:
    login(page, mt_server.url, "ann")
    prompt = page.locator("#prompt")
    seen: list[str] = []
    for _ in range(3):  # three items in the study, in this person's own order
        expect(prompt).to_contain_text("Prompt ", timeout=30_000)
        wait_idle(page)
        expect(page.locator("#resp-1")).not_to_be_empty()
        item = prompt.inner_text().split("\n")[0].removeprefix("Prompt ").strip()
        seen.append(item)
        if item == "81#t2":
            _check_turn_2(page, tmp_path)
        else:
            expect(page.locator("#resp-1 .earlier-turns")).to_have_count(0)
            expect(page.locator("#resp-2 .earlier-turns")).to_have_count(0)
            expect(page.locator("#card-1")).not_to_contain_text("Earlier in this conversation")
            _shots(page, tmp_path, f"turn-1-{item.replace('#', '-')}")
        page.locator("#progress").click()  # focus the page, not a field
        page.locator("#skip-btn").click()
        expect(page.locator("#status")).to_contain_text(f"Skipped prompt {item}")
    assert sorted(seen) == ["101#t1", "81#t1", "81#t2"]
