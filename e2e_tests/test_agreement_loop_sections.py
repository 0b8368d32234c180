"""The Agreement tab's tables of the report sections self_correction, scaling and iterations, on a study with two
generation runs linked as iterations (it1 trained from it0), a critique judge with a revision, principles_critique
per-sample rows and human pairwise, correct and rating labels: each table fills, and at 800 px the page does not
scroll sideways. Screenshots at 1400 and 800 px go to $CRITLAB_SHOTS when set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, compute_agreement, review_shot, start_server
from storage import annotators, judgments, responses
from storage import model_registry as reg
from storage.db import Database
from storage.models import JudgmentIn, ModelIdentity, ResponseIn, StudyConfig
from storage.studies import create_study
from tests.builders import make_prompt, make_responses, make_run

pytestmark = pytest.mark.e2e

STUDY = "iterations"


@pytest.fixture(scope="module")
def loop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("loop")
    db = Database(d / "loop.duckdb")
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    sid = create_study(db, STUDY, config=StudyConfig(questions=["pairwise", "correct", "rating"])).id
    for m in ("it0", "it1"):
        reg.record_model(db, ModelIdentity(model_id=m, engine="scripted", name=m))
    reg.set_lineage(db, "it1", "it0", None)
    run0, run1 = make_run(db, sid, "it0"), make_run(db, sid, "it1")
    rows = []

    def rec(**kw: object) -> None:
        rows.append(JudgmentIn(study_id=sid, idempotency_key=uuid.uuid4().hex, **kw))
    for k in range(6):
        pid = make_prompt(db, sid, f"q{k}", f"Question {k}?")
        p = make_responses(db, pid, [f"parent answer {k}"], run_id=run0)[0]
        c = make_responses(db, pid, [f"child answer {k}, a little longer"], run_id=run1)[0]
        if k < 4:
            rec(prompt_id=pid, judge_kind="human", judge="ann1", method="pairwise", response_id=c, response_b_id=p,
                shown_order=[c, p], label=str(c if k % 3 else p))
        for r, ok, rating in ((p, k % 2 == 0, 2 + k % 3), (c, k % 3 != 0, 5 - k % 2)):
            rec(prompt_id=pid, judge_kind="human", judge="ann1", method="correct", response_id=r,
                label="correct" if ok else "incorrect", value=float(ok))
            rec(prompt_id=pid, judge_kind="human", judge="ann1", method="likert", response_id=r, value=float(rating))
        for judge, (sp, sc) in (("it0", (0.3 + 0.1 * k, 0.9 - 0.1 * k)), ("it1", (0.2 + 0.05 * k, 0.8 - 0.02 * k))):
            for r, s in ((p, sp), (c, sc)):
                rec(prompt_id=pid, judge_kind="model", judge=judge, method="p_true", response_id=r, prob=s, value=s)
        for r in (p, c):
            rec(prompt_id=pid, judge_kind="model", judge="it1", method="critique", response_id=r, value=0.5,
                label="split")
            for j in range(2):
                rec(prompt_id=pid, judge_kind="model", judge="it1", method="principles_critique", response_id=r,
                    variant=f"s{j}", value=float(3 + (r * 5 + j * 3 + k) % 7), shown_order=[p, c])
        fix = responses.insert_responses(db, [ResponseIn(prompt_id=pid, origin="revision", parent_id=p,
                                                         text=f"fixed {k}", model_id="it1",
                                                         metadata={"method": "critique", "variant": "s0"})])[0]
        rec(prompt_id=pid, judge_kind="human", judge="ann1", method="correct", response_id=fix, label="correct",
            value=1.0)
    judgments.record(db, rows)
    db.close()
    srv = start_server(d / "loop.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_agreement_tab_shows_the_loop_sections(page: Page, loop_server: Server) -> None:
    compute_agreement(page, loop_server.url, STUDY, "6 with human labels")
    it = page.locator("#agr-iterations")
    expect(it).to_contain_text("it0 → it1")
    expect(it).to_contain_text("ranking consistency, mean Kendall τ-b")
    expect(it).to_contain_text("it1 (child) · p_true")
    sc = page.locator("#agr-self-correction")
    expect(sc).to_contain_text("it1")
    scaling = page.locator("#agr-scaling")
    expect(scaling).to_contain_text("it1")
    assert scaling.inner_text().count("it1") == 2  # rows k = 1 and k = 2 from two samples
    expect(scaling).to_contain_text(" [")  # a Spearman mean with its interval
    page.locator("#agr-self-correction").scroll_into_view_if_needed()
    review_shot(page, "agreement-loop-1400.png")
    page.set_viewport_size({"width": 800, "height": 1000})
    expect(it).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    review_shot(page, "agreement-loop-800.png")
