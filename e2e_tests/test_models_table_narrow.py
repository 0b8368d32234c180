"""The Studies tab's Models table at 1400 and 800 px, and the demo banner, in a real Chromium against a real
server running the bundled model: the SHA-256 column shows a prefix with the full value in the cell's
title, so the quant, size and SHA-256 columns stay readable at 800 px (each header and each cell's text in
its own column, no word broken inside), and the banner names the study the bundled model sampled but not
the imported one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e_tests.conftest import PASSWORDS, login, start_server, wait_idle
from storage import annotators, model_registry
from storage.db import Database
from storage.migrations import BUNDLED_ID, BUNDLED_SHA256
from storage.models import ModelIdentity
from tests.builders import make_prompt, make_responses, make_run, make_study

pytestmark = pytest.mark.e2e

OWN_SHA = "0123456789abcdef" * 4
OWN_ID = f"Qwen2.5-7B-Instruct-Q4_K_M@{OWN_SHA[:12]}"


def _shot(page: Page, tmp_path: Path, name: str, part: Locator | None = None) -> None:
    out = tmp_path / name
    (part or page).screenshot(path=str(out))
    if os.environ.get("CRITLAB_SHOTS"):  # for a person to look at; tests write under tmp_path only
        Path(os.environ["CRITLAB_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(os.environ["CRITLAB_SHOTS"]) / name)


# What is unreadable in a table: a cell whose text overflows it, or a word wider than its cell (broken
# inside; a line may end after a hyphen, as in a model id).
UNREADABLE = """t => {
    const out = [];
    for (const c of t.querySelectorAll('th, .body-cell')) {  // Gradio's body rows are divs, not td
        const r = c.getBoundingClientRect();
        if (r.width === 0 || getComputedStyle(c).visibility === 'hidden' || !c.innerText.trim()) continue;
        if (c.scrollWidth > c.clientWidth + 1) out.push(['overflows', c.innerText.trim(), r.width]);
        for (const w of c.innerText.trim().split(/\\s+|(?<=-)/).filter(w => w.length > 0)) {
            const probe = document.createElement('span');
            probe.textContent = w; probe.style.whiteSpace = 'nowrap'; probe.style.visibility = 'hidden';
            probe.style.position = 'absolute'; c.appendChild(probe);
            const need = probe.getBoundingClientRect().width; probe.remove();
            // The text's own box: Gradio pads a wrapper inside the cell, not the cell.
            const box = c.querySelector('.header-content, .cell-wrap') || c;
            const st = getComputedStyle(box);
            const room = box.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
            if (need > room + 0.5) out.push(['word wider than its cell', w, need, room]);
        }
    }
    return out; }"""


# The header widths, unchanged over five polls 100 ms apart: Gradio sets a table's column widths after
# measuring it (again after a resize), so a check made earlier sees a layout that is about to change.
SETTLED = """() => {
    const w = [...document.querySelectorAll('#models-table thead th')]
        .map(h => Math.round(h.getBoundingClientRect().width)).join(',');
    const s = window.__widthsSeen || (window.__widthsSeen = {w: '', n: 0});
    if (w && w === s.w) s.n += 1; else { s.w = w; s.n = 0; }
    return s.n >= 5; }"""


def _columns_readable(page: Page, table: Locator) -> None:
    """Each header and body cell's text fits its cell (nothing runs into the next column) and no cell is
    narrower than its longest word, so no word is broken inside. Gradio sizes the columns once the table is
    in view, as a person scrolling to it sees it."""
    table.scroll_into_view_if_needed()
    page.evaluate("() => { window.__widthsSeen = null; }")
    page.wait_for_function(SETTLED, polling=100)
    assert table.evaluate(UNREADABLE) == [], page.viewport_size


def test_the_models_table_stays_readable_at_800_px_and_the_banner_names_the_demo_study(
        page: Page, tmp_path: Path) -> None:
    db_path = tmp_path / "models.duckdb"
    with Database(db_path) as db:
        annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
        model_registry.record_model(db, ModelIdentity(model_id=BUNDLED_ID, engine="embedded", name="Smollm2",
                                                      quantisation="Q4_1", size_bytes=98_362_432,
                                                      sha256=BUNDLED_SHA256, bundled=True))
        model_registry.record_model(db, ModelIdentity(model_id=OWN_ID, engine="embedded", name="Qwen2.5 7B",
                                                      quantisation="Q4_K_M", size_bytes=4_683_074_240,
                                                      sha256=OWN_SHA))
        demo = make_study(db, "sampled-by-demo")
        make_responses(db, make_prompt(db, demo.id), ["hi"], run_id=make_run(db, demo.id, model_id=BUNDLED_ID),
                       model_id=BUNDLED_ID)
        own = make_study(db, "imported-study")
        make_responses(db, make_prompt(db, own.id), ["a", "b"], model_id="gpt-x")
        make_run(db, own.id, model_id=OWN_ID)
    srv = start_server(db_path, tmp_path / "server.log")  # the bundled model, as `critlab serve` defaults to
    try:
        login(page, srv.url, "admin")
        banner = page.locator("#demo-note")
        expect(banner).to_contain_text("Demo model", timeout=30_000)
        expect(banner).to_contain_text("Studies concerned: sampled-by-demo.")
        expect(banner).not_to_contain_text("imported-study")
        _shot(page, tmp_path, "banner-1400.png", page.locator(".topbar").locator("..").locator(".."))
        page.get_by_role("tab", name="Studies").click()
        models = page.locator("#models-table")
        expect(models).to_contain_text("Q4_K_M")
        # The SHA-256 column: a prefix, the whole digest in the cell's title (hover) for copying by hand.
        expect(models).to_contain_text(f"{BUNDLED_SHA256[:12]}…")
        for sha in (BUNDLED_SHA256, OWN_SHA):  # (Gradio also renders a hidden row for measuring widths)
            expect(models.locator(f"[title='{sha}']").first).to_be_attached()
        assert BUNDLED_SHA256 not in models.inner_text()
        wait_idle(page)
        _columns_readable(page, models)
        _shot(page, tmp_path, "models-table-1400.png", models)
        page.set_viewport_size({"width": 800, "height": 1000})
        expect(models).to_contain_text("Q4_K_M")
        wait_idle(page)
        _columns_readable(page, models)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        _shot(page, tmp_path, "models-table-800.png", models)
        page.get_by_role("tab", name="Label").click()
        expect(banner).to_be_visible()
        _shot(page, tmp_path, "banner-800.png", page.locator("#demo-note"))
    finally:
        srv.stop()
