"""The gold gate in the browser: the Agreement tab's status line says how many gold items were left out and
whose labels the gate left out (with their gold accuracy); the Studies tab's progress table marks them
"gated". Screenshots at 1400 and 800 px go to $CRITLAB_SHOTS when set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, login, start_server, wait_idle
from storage import annotators
from storage.db import Database
from tests.test_gold_gate import _study

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("gate")
    db = Database(d / "gate.duckdb")
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    _study(db, 0.8)  # study "gg": spam1 and spam2 wrong on all five gold items, gated at 80%
    db.close()
    srv = start_server(d / "gate.duckdb", d / "server.log")
    yield srv
    srv.stop()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("CRITLAB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_agreement_tab_names_the_gated(page: Page, gate_server: Server) -> None:
    login(page, gate_server.url, "admin")
    page.get_by_role("tab", name="Agreement").click()
    page.locator("#agr-study input").click()
    page.get_by_role("option", name="gg", exact=True).click()
    page.locator("#agr-boot input").fill("0")
    page.locator("#agr-compute").click()
    status = page.locator("#agr-status")
    expect(status).to_contain_text("3 prompts, 3 with human labels", timeout=90_000)
    expect(status).to_contain_text("5 gold items left out; gold gate: the labels of spam1 (0% of 5 gold answers), "
                                   "spam2 (0% of 5 gold answers) are left out.")
    wait_idle(page)
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        status.scroll_into_view_if_needed()
        _shot(page, f"gold-gate-agreement-{width}.png")
    page.set_viewport_size({"width": 1400, "height": 1000})
