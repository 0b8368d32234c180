"""The Studies tab's Generate and Score forms record a model's lineage (issue 17 §3) as `critlab generate/score
--parent-model / --trained-on-export` do, in a real Chromium against a real server whose engine is an SGLang
stand-in: bad links are refused with the reason and start no job; a good one shows in the Models table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, choose, kept_shot, login, wait_idle
from storage import annotators, model_registry
from storage.db import Database
from storage.models import ModelIdentity
from tests.builders import make_prompt, make_run, make_study
from tests.server_process import start_serve

pytestmark = pytest.mark.e2e

STANDIN_MODEL = "standin/toy-chatml"  # what the stand-in reports as its model id


@pytest.fixture
def standin_url() -> Iterator[str]:
    from tests.standin_sglang import start_standin

    url, stop = start_standin()
    yield url
    stop()


def _type_parent(page: Page, text: str) -> None:
    box = page.locator("#gen-parent-model input")
    box.click()
    box.fill(text)
    page.locator("#gen-lineage-help").click()  # leaving the picker keeps a typed value
    expect(box).to_have_value(text)
    wait_idle(page)


def _status_after(page: Page, button: str, text: str) -> None:
    status = page.locator("#job-start-status")
    page.locator(f"#{button}").click()
    expect(status).to_contain_text(text, timeout=30_000)


def test_generate_and_score_forms_link_the_model_and_refuse_bad_links(page: Page, tmp_path: Path,
                                                                      standin_url: str) -> None:
    db_path = tmp_path / "lin.duckdb"
    with Database(db_path) as db:
        annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
        s = make_study(db, "family")
        make_prompt(db, s.id, "q1", text="Name a prime.")
        for m in ("qwen-it0", "qwen-other"):
            model_registry.record_model(db, ModelIdentity(model_id=m, engine="sglang", name=m))
            make_run(db, s.id, model_id=m)
        with db.write() as cur:
            export = cur.execute("INSERT INTO export_run (kind, study_id, out_path, content_hash) "
                                 "VALUES ('dpo', ?, '/p.jsonl', 'h') RETURNING id", [s.id]).fetchall()[0][0]
    proc, url = start_serve(db_path, tmp_path / "server.log", "--engine", "sglang", "--sglang-url", standin_url)
    srv = Server(url, db_path, proc, tmp_path / "server.log")
    try:
        login(page, srv.url, "admin")
        page.get_by_role("tab", name="Studies").click()
        choose(page, "gen-study", "family")
        expect(page.locator("#gen-parent-model")).to_be_visible()
        expect(page.locator("#gen-trained-on-export")).to_be_visible()

        _type_parent(page, "nobody")
        _status_after(page, "gen-start", "unknown parent model 'nobody' (--parent-model)")
        _type_parent(page, "")
        page.locator("#gen-trained-on-export textarea, #gen-trained-on-export input").fill("abc")
        _status_after(page, "score-start", "must be an export run's number such as 3, not 'abc'")
        page.locator("#gen-trained-on-export textarea, #gen-trained-on-export input").fill("99")
        _status_after(page, "gen-start", "no export run #99 in this database (--trained-on-export)")
        _type_parent(page, STANDIN_MODEL)
        page.locator("#gen-trained-on-export textarea, #gen-trained-on-export input").fill("")
        _status_after(page, "gen-start", f"model '{STANDIN_MODEL}' cannot be its own parent")
        kept_shot(page.locator("#studies-panel"), tmp_path, "lineage-error-1400.png")

        # The parent picker offers the Models table's ids.
        choose(page, "gen-parent-model", "qwen-it0")
        page.locator("#gen-trained-on-export textarea, #gen-trained-on-export input").fill(f"#{export}")
        page.locator("#gen-n input[type=range]").fill("1")
        page.locator("#gen-new-run input").check()
        _status_after(page, "gen-start", "(generate)")
        models = page.locator("#models-table")
        expect(models).to_contain_text(f"1 · from qwen-it0 · export #{export}", timeout=30_000)

        # A lineage once recorded is kept: Score with another parent is refused.
        choose(page, "gen-parent-model", "qwen-other")
        page.locator("#gen-trained-on-export textarea, #gen-trained-on-export input").fill("")
        _status_after(page, "score-start", "already recorded as trained from 'qwen-it0', not 'qwen-other'")
        kept_shot(page.locator("#studies-panel"), tmp_path, "lineage-form-1400.png")
        page.set_viewport_size({"width": 800, "height": 1000})
        expect(page.locator("#gen-parent-model")).to_be_visible()
        kept_shot(page.locator("#studies-panel"), tmp_path, "lineage-form-800.png")
    finally:
        srv.stop()
    with Database(db_path) as db:
        got = model_registry.get_model(db, STANDIN_MODEL)
        assert (got.parent_model_id, got.trained_on_export_id) == ("qwen-it0", export)
        assert db.fetchval("SELECT count(*) FROM job WHERE kind = 'score'") == 0  # every Score was refused
