"""The Agreement tab's tables of the report sections ppi, rankings, annotators, bias and planning, on a study
whose responses come from two generation runs with human and model pairwise labels: each table fills, a
name with markup shows as text, and at 800 px the page does not scroll sideways. Screenshots at 1400 and
800 px go to $CRITLAB_SHOTS when set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, compute_agreement, review_shot, start_server
from storage import annotators, judgments
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run

pytestmark = pytest.mark.e2e

STUDY = "two-runs"
ODD = "ann<b>3</b>"  # an annotator name with markup: shown as typed


@pytest.fixture(scope="module")
def runs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("runs")
    db = Database(d / "runs.duckdb")
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    sid = create_study(db, STUDY, config=StudyConfig(questions=["pairwise", "correct"])).id
    run_a, run_b = make_run(db, sid, "gen-a"), make_run(db, sid, "gen-b")
    rows = []

    def rec(**kw: object) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    for k in range(8):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        a = make_responses(db, pid, ["a" * (20 + 7 * k)], run_id=run_a)[0]
        b = make_responses(db, pid, ["b" * (60 - 5 * k)], run_id=run_b)[0]
        for n, ann in enumerate(("ann1", "ann2", ODD)):
            shown = (a, b) if (k + n) % 2 else (b, a)
            win = a if (k + n) % 3 else b
            rec(prompt_id=pid, judge_kind="human", judge=ann, method="pairwise", response_id=shown[0],
                response_b_id=shown[1], shown_order=list(shown), label=str(win), duration_ms=2000 + 500 * k)
            if k < 4:
                for r, ok in ((a, (k + n) % 4 != 0), (b, k % 2 == 0)):
                    rec(prompt_id=pid, judge_kind="human", judge=ann, method="correct", response_id=r,
                        label="correct" if ok else "incorrect", value=float(ok), duration_ms=2000 + 500 * k)
        for first, second in ((a, b), (b, a)):
            rec(prompt_id=pid, judge_kind="model", judge="gen-a", method="pairwise", variant=f"order:{first}-{second}",
                response_id=first, response_b_id=second, shown_order=[first, second],
                label=str(a if k % 3 else first))
        for r, p in ((a, 0.2 + 0.08 * k), (b, 0.7 - 0.05 * k)):
            rec(prompt_id=pid, judge_kind="model", judge="gen-a", method="p_true", response_id=r, prob=p, value=p)
    judgments.record(db, rows)
    db.close()
    srv = start_server(d / "runs.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_agreement_tab_shows_the_new_sections(page: Page, runs_server: Server) -> None:
    compute_agreement(page, runs_server.url, STUDY, "8 with human labels", annotator_models=True)
    expect(page.locator("#agr-ppi")).to_contain_text("p_true")
    expect(page.locator("#agr-ext-note")).to_contain_text("not established")
    rankings = page.locator("#agr-rankings")
    expect(rankings).to_contain_text("gen-b")
    expect(rankings).to_contain_text("run 2")
    annot = page.locator("#agr-annotators")
    expect(annot).to_contain_text(ODD)  # the markup as text, no element made of it
    assert annot.locator("b").count() == 0
    expect(page.locator("#agr-bias")).to_contain_text("self-preference")
    expect(page.locator("#agr-planning")).to_contain_text("PPI++")
    page.locator("#agr-ppi").scroll_into_view_if_needed()
    review_shot(page, "agreement-sections-1400.png")
    page.set_viewport_size({"width": 800, "height": 1000})
    expect(rankings).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    review_shot(page, "agreement-sections-800.png")
