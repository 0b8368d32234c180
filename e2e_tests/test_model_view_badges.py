"""The Label tab's Model's view badges of follow_up_likelihood, selfcheck_prompt and principles_critique in a
real Chromium (issue 17 walk): one study whose three responses carry these methods' rows as the methods
store them (per-response rows and principles_critique's per-sample rows with their critiques), a failed
row with a long error among them, looked at after a blind submit at 1400 and 800 px. The walk found the principles' critiques missing
from the view and failed badges drawn as pills whose round ends cut into their lines."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e_tests.conftest import PASSWORDS, login, start_server
from storage import annotators, judgments, studies
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_prompt, make_responses, make_study

pytestmark = pytest.mark.e2e

LONG_ERROR = ("unparseable reply: expected a JSON object with principles, critique and scores, got "
              "'I think both responses are fine but the first one is slightly better because' (2 of 2 samples)")


def _shot(part: Page | Locator, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    part.screenshot(path=str(out), **({"full_page": True} if isinstance(part, Page) else {}))
    if os.environ.get("CRITLAB_SHOTS"):  # for a person to look at; tests write under tmp_path only
        Path(os.environ["CRITLAB_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(os.environ["CRITLAB_SHOTS"]) / name)


def _write(db: Database, sid: int, pid: int, method: str, rid: int, **kw) -> None:
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="model", judge="qwen-it1",
                                     method=method, response_id=rid, idempotency_key=uuid.uuid4().hex,
                                     source="model", **kw)])


def _study(db: Database) -> None:
    s = make_study(db, "badges")
    studies.update_study(db, s.id, config=StudyConfig(questions=["best"], blind=True, reveal=True))
    pid = make_prompt(db, s.id, "q1", text="Name the capital of Australia and say one fact about it.")
    a, b, c = make_responses(db, pid, [
        "Canberra. It was purpose-built as the capital and chosen as a compromise between Sydney and Melbourne.",
        "Sydney. It is the largest city in Australia and home to the Opera House.",
        "The capital is Canberra; Parliament House opened there in 1988."])
    # follow_up_likelihood: value = positive - negative follow-up log-likelihood; dist as the method stores it.
    for rid, v in ((a, 0.4321), (b, -1.275), (c, 0.0)):
        _write(db, s.id, pid, "follow_up_likelihood", rid, value=v,
               dist={"positive": -2.1 + v, "negative": -2.1, "follow_ups": 4.0})
    # selfcheck_prompt: prob = value = share supported; rationale per sentence (not shown on the card).
    _write(db, s.id, pid, "selfcheck_prompt", a, value=0.875, prob=0.875,
           rationale="P(not supported) = 0.125: Canberra.", dist={"sentences": 2.0, "others": 3.0,
                                                                  "label_mass": 0.93})
    _write(db, s.id, pid, "selfcheck_prompt", b, value=0.125, prob=0.125,
           rationale="P(not supported) = 0.875: Sydney.", dist={"sentences": 2.0, "others": 3.0,
                                                                "label_mass": 0.9})
    _write(db, s.id, pid, "selfcheck_prompt", c, status="failed", error="context overflow: 4 samples of 2048 "
           "tokens do not fit the model's 4096-token context")
    # principles_critique: per response the sum over k samples, dist {k, failed, mean}; per sample (s0, s1)
    # the 1-10 score with its principles and critique as rationale.
    for rid, scores in ((a, (9.0, 8.0)), (b, (2.0,))):
        _write(db, s.id, pid, "principles_critique", rid, value=sum(scores),
               dist={"k": float(len(scores)), "failed": 2.0 - len(scores), "mean": sum(scores) / len(scores)})
        for j, v in enumerate(scores):
            _write(db, s.id, pid, "principles_critique", rid, variant=f"s{j}", value=v, shown_order=[a, b, c],
                   rationale=f"Principles: correctness, a checkable fact.\nCritique: sample {j} scores it {v:.0f}.")
    _write(db, s.id, pid, "principles_critique", c, status="failed", error=LONG_ERROR)


@pytest.mark.parametrize("width", [1400, 800])
def test_the_model_view_badges_of_three_methods(page: Page, tmp_path: Path, width: int) -> None:
    db_path = tmp_path / "badges.duckdb"
    with Database(db_path) as db:
        annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
        _study(db)
    srv = start_server(db_path, tmp_path / "server.log")
    try:
        page.set_viewport_size({"width": width, "height": 1000})
        login(page, srv.url, "admin")
        expect(page.locator("#prompt")).to_contain_text("capital of Australia", timeout=30_000)
        page.locator("#progress").click()
        page.keyboard.press("1")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#status")).to_contain_text("model's view is now shown", timeout=30_000)
        views = page.locator("div.block.model-view")
        expect(views.first).to_contain_text("Follow-up likelihood")
        text = " | ".join(views.all_inner_texts())
        for badge in ("Follow-up likelihood: +0.43", "Follow-up likelihood: -1.27", "Follow-up likelihood: +0.00",
                      "Supported by the other samples: 0.88", "Supported by the other samples: 0.12",
                      "Principles + critique: 8.5 / 10, mean of 2", "Principles + critique: 2.0 / 10, mean of 1"):
            assert badge in text, (badge, text)
        # The critiques behind principles_critique's score are shown with their samples' scores.
        expect(views.filter(has_text="sample s0, 9 / 10")).to_contain_text("Critique: sample 0 scores it 9.")
        expect(views.filter(has_text="sample s1, 8 / 10")).to_contain_text("Principles: correctness")
        # A failure's long reason sits in a box with small round corners, not a pill that cuts into its lines.
        failed = page.locator(".model-view .badge-failed").first
        expect(failed).to_be_visible()
        assert failed.evaluate("e => getComputedStyle(e).borderTopLeftRadius") == "8px"
        assert failed.get_attribute("title") in ("selfcheck_prompt", "principles_critique")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        _shot(page, tmp_path, f"model-view-badges-{width}.png")
    finally:
        srv.stop()
