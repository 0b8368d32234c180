"""The Agreement tab's judge × generator table and PRE table on a study scored by two judge models
(tests/test_report_judges.py's study): both fill, the self-judging diagonal is marked, and at 800 px the page
does not scroll sideways. Screenshots at 1400 and 800 px go to $CRITLAB_SHOTS when set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, compute_agreement, review_shot, start_server
from storage import annotators
from storage.db import Database
from tests.test_report_judges import two_judge_study

pytestmark = pytest.mark.e2e

STUDY = "two-judges"


@pytest.fixture(scope="module")
def judges_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("judges")
    db = Database(d / "judges.duckdb")
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    two_judge_study(db, STUDY)
    db.close()
    srv = start_server(d / "judges.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_agreement_tab_shows_judges_side_by_side(page: Page, judges_server: Server) -> None:
    compute_agreement(page, judges_server.url, STUDY, "6 with human labels", judges=True)
    table = page.locator("#agr-judges")
    expect(table).to_contain_text("◆ self")
    expect(table).to_contain_text("◇ same family")
    expect(table).to_contain_text("judge-b")
    pre = page.locator("#agr-pre")
    expect(pre.get_by_role("gridcell", name="pre", exact=True).first).to_be_visible()  # the weighted vote's row
    expect(pre).to_contain_text("yes")  # the app's exam seed is the study id: which judge qualifies is its draw
    expect(page.locator("#agr-judges-note")).to_contain_text("PRE: exam = 30%")
    table.scroll_into_view_if_needed()
    review_shot(page, "agreement-judges-1400.png")
    page.set_viewport_size({"width": 800, "height": 1000})
    expect(table).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    table.scroll_into_view_if_needed()
    review_shot(page, "agreement-judges-800.png")


def test_pre_seed_and_threshold_inputs_come_with_the_judges_box(page: Page, judges_server: Server) -> None:
    """Seed 7 and threshold 0.75, as tests/test_report_judges.py works them by hand: judge-b's exam score 0.5
    no longer qualifies. The inputs show only while the judges box is ticked."""
    compute_agreement(page, judges_server.url, STUDY, "6 with human labels", judges=True, pre=(7, 0.75))
    expect(page.locator("#agr-judges-note")).to_contain_text("(seed 7)")
    expect(page.locator("#agr-judges-note")).to_contain_text("≥ 0.75")
    rows = page.locator("#agr-pre").get_by_role("row").filter(has_text="judge-b")
    pairwise = rows.filter(has=page.get_by_role("gridcell", name="pairwise", exact=True))
    expect(pairwise.get_by_role("gridcell", name="no", exact=True)).to_be_visible()  # 0.5 < 0.75
    scores = rows.filter(has=page.get_by_role("gridcell", name="judge_score", exact=True))
    expect(scores.get_by_role("gridcell", name="yes", exact=True)).to_be_visible()  # Spearman 0.8 ≥ 0.75
    page.locator("#agr-judges-on input").scroll_into_view_if_needed()
    review_shot(page, "agreement-pre-inputs-1400.png")
    page.set_viewport_size({"width": 800, "height": 1000})
    expect(page.locator("#agr-pre-threshold")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.locator("#agr-judges-on input").scroll_into_view_if_needed()
    review_shot(page, "agreement-pre-inputs-800.png")
    page.locator("#agr-judges-on input").uncheck()
    expect(page.locator("#agr-pre-seed")).to_be_hidden()
    expect(page.locator("#agr-pre-threshold")).to_be_hidden()
