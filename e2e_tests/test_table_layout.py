"""Wide tables fit their box: at 1400 px the Agreement tab's headline table and the Export tab's preview show
every column (each header cell inside the table's visible box) with a header row of normal height, and at
800 px they still do not push the page sideways. Screenshots of both widths go to $CRITLAB_SHOTS when set."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e_tests.conftest import PASSWORDS, Server, critlab, login, review_shot, start_server, wait_idle
from storage import annotators
from storage.db import Database

pytestmark = pytest.mark.e2e

STUDY = "wide"
MAX_HEADER_PX = 80
LONG = ("A long answer that goes on and on, with several clauses, so that the cell has to wrap over a few "
        "lines instead of stretching its column across the page. ") * 3


def _items() -> list[dict]:
    """Six prompts, two responses each: two annotators' picks, ratings and correct labels, and a model's
    P(True), scores and pairwise verdicts in both orders, so the headline has several rows."""
    items = []
    for i in range(6):
        good, bad = f"w{i}a", f"w{i}b"
        js: list[dict] = []
        for who, flip in (("ann1", False), ("ann2", i == 5)):
            win, lose = (bad, good) if flip else (good, bad)
            js += [{"judge": who, "judge_kind": "human", "type": "best_of_n", "shown": [good, bad], "winner": win},
                   {"judge": who, "judge_kind": "human", "type": "likert", "response": win, "score": 6,
                    "scale": [1, 7]},
                   {"judge": who, "judge_kind": "human", "type": "likert", "response": lose, "score": 2,
                    "scale": [1, 7]},
                   {"judge": who, "judge_kind": "human", "type": "pairwise", "shown": [good, bad], "winner": win},
                   {"judge": who, "judge_kind": "human", "type": "correct", "response": good, "value": not flip},
                   {"judge": who, "judge_kind": "human", "type": "correct", "response": bad, "value": flip}]
        model = "a-rather-long-model-name/Instruct-v0.3-GGUF"
        js += [{"judge": model, "judge_kind": "model", "type": "p_true", "response": good, "prob": 0.9 - i * 0.05},
               {"judge": model, "judge_kind": "model", "type": "p_true", "response": bad, "prob": 0.2 + i * 0.05},
               {"judge": model, "judge_kind": "model", "type": "judge_score", "response": good, "score": 8},
               {"judge": model, "judge_kind": "model", "type": "judge_score", "response": bad, "score": 3 + i % 3},
               {"judge": model, "judge_kind": "model", "type": "pairwise", "shown": [good, bad], "winner": good,
                "prob": {good: 0.7, bad: 0.2, "tie": 0.1}},
               {"judge": model, "judge_kind": "model", "type": "pairwise", "shown": [bad, good],
                "winner": good if i % 2 else bad, "prob": {good: 0.6, bad: 0.3, "tie": 0.1}}]
        items.append({"item_id": f"w{i}", "prompt": f"Question {i}: explain it. {LONG}",
                      "responses": [{"id": good, "text": f"Good {i}. {LONG}"}, {"id": bad, "text": f"Bad {i}. {LONG}"}],
                      "judgments": js})
    return items


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("wide")
    db_path = d / "wide.duckdb"
    f = d / "judgments.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in _items()) + "\n")
    critlab("import", "judgments", str(f), "--study", STUDY, db=db_path)
    db = Database(db_path)
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    db.close()
    srv = start_server(db_path, d / "server.log")
    yield srv
    srv.stop()


def _check_headers_fit(table: Locator) -> None:
    """Every header cell lies inside the table's visible (scroll) box, and the header row is short."""
    grid = table.get_by_role("grid")
    headers = grid.locator("thead th")
    expect(headers.first).to_be_visible()
    box = table.locator(".table-wrap, [role=grid]").first.evaluate(
        "e => { const w = e.closest('.table-wrap') || e; const r = w.getBoundingClientRect();"
        " return {left: r.left, right: r.left + w.clientWidth, top: r.top}; }")
    cells = headers.evaluate_all("hs => hs.map(h => { const r = h.getBoundingClientRect();"
                                 " return {text: h.innerText.trim(), left: r.left, right: r.right, height: r.height}; })")
    assert cells, "no header cells"
    outside = [c["text"] for c in cells if c["left"] < box["left"] - 1 or c["right"] > box["right"] + 1]
    assert not outside, (outside, box, cells)
    tallest = max(c["height"] for c in cells)
    assert tallest < MAX_HEADER_PX, (tallest, cells)


def _narrow_window(page: Page, table: Locator, name: str) -> None:
    """At 800 px the page does not scroll sideways; the table may, inside its own box, so its last column is
    still reachable."""
    page.set_viewport_size({"width": 800, "height": 1000})
    headers = table.locator("thead th")
    expect(headers.first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    review_shot(page, f"{name}-800.png")
    # Scroll the box that scrolls sideways (the nearest one around the last header) to its end.
    right = headers.last.evaluate("""h => {
        for (let e = h.parentElement; e; e = e.parentElement) {
            const o = getComputedStyle(e).overflowX;
            if ((o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth) {
                e.scrollLeft = e.scrollWidth;
                return e.getBoundingClientRect().left + e.clientWidth;
            }
        }
        return null; }""")
    assert right is not None, "the table is wider than its box but nothing scrolls"
    last = headers.last.bounding_box()
    assert last is not None and last["x"] + last["width"] <= right + 1, (last, right)
    review_shot(page, f"{name}-800-scrolled.png")


def _compute_agreement(page: Page) -> Locator:
    page.get_by_role("tab", name="Agreement").click()
    page.locator("#agr-study input").click()
    page.get_by_role("option", name=STUDY, exact=True).click()
    page.locator("#agr-boot input").fill("0")
    page.locator("#agr-compute").click()
    expect(page.locator("#agr-status")).to_contain_text("6 with human labels", timeout=60_000)
    table = page.locator("#agr-headline")
    expect(table).to_contain_text("p_true")
    wait_idle(page)
    return table


def _preview_export(page: Page) -> Locator:
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-study input").click()
    page.get_by_role("option", name=STUDY, exact=True).click()
    expect(page.locator("#export-study input")).to_have_value(STUDY)
    page.get_by_test_id("rm-radio-label").click()  # margin filled in too
    page.locator("#export-preview").click()
    expect(page.locator("#export-counts")).to_contain_text("kind rm", timeout=30_000)
    table = page.locator("#export-preview-table")
    expect(table).to_contain_text("Good 0.")
    wait_idle(page)
    return table


def test_agreement_headline_shows_every_column(page: Page, wide_server: Server) -> None:
    login(page, wide_server.url, "admin")
    table = _compute_agreement(page)
    assert table.locator("thead th").count() == 10
    review_shot(page, "agreement-1400.png")
    _check_headers_fit(table)
    _narrow_window(page, table, "agreement")


def test_export_preview_shows_every_column(page: Page, wide_server: Server) -> None:
    login(page, wide_server.url, "admin")
    table = _preview_export(page)
    assert table.locator("thead th").count() == 7
    review_shot(page, "export-1400.png")
    _check_headers_fit(table)
    _narrow_window(page, table, "export")
