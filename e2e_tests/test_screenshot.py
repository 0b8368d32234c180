"""The README's screenshot: the Label tab with 4 real responses of the embedded model (written to
docs/ only by `make screenshots`; a test run keeps it under tmp_path).

Also covers `critlab import prompts` and `critlab generate` run locally (no server yet)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, critlab, login, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.model]


def test_label_tab_screenshot(page: Page, tmp_path: Path, shot_dir: Path) -> None:
    db = tmp_path / "shot.duckdb"
    src = Path(__file__).resolve().parents[1] / "app" / "data"
    first = json.loads((src / "sample_prompts.jsonl").read_text().splitlines()[0])
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(first) + "\n")
    critlab("import", "prompts", str(f), "--study", "sample", "--guidelines", str(src / "sample_guidelines.md"), db=db)
    r = critlab("generate", "--study", "sample", "--n", "4", "--max-tokens", "64", "--seed", "1", db=db)
    assert "4 / 4 responses" in r.stdout
    critlab("annotators", "add", "ann", "--study", "sample", "--password-stdin", db=db, stdin=PASSWORDS["ann"])
    srv = start_server(db, tmp_path / "server.log")
    try:
        login(page, srv.url, "ann")
        for k in range(1, 5):
            expect(page.locator(f"#resp-{k}")).to_be_visible(timeout=30_000)
        expect(page.locator("#card-5")).to_be_hidden()
        page.locator("#progress").click()
        page.keyboard.press("2")
        page.keyboard.press("j")
        page.keyboard.press("Shift+Digit6")
        expect(page.locator("#rating-2 input[value='6']")).to_be_checked()
        expect(page.locator("#card-2")).to_have_class(re.compile("active-card"))
        page.screenshot(path=str(shot_dir / "label-tab.png"))  # the window as a person sees it
    finally:
        srv.stop()
