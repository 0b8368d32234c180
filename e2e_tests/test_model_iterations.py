"""The Studies tab's Models table shows a model family's iterations (issue 17 §3) in a real Chromium against
a real server: three runs of one study, sampled by iteration 0, 1 and 2, linked as `--parent-model` /
`--trained-on-export` record them."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, critlab, kept_shot, login, start_server
from storage import annotators, model_registry
from storage.db import Database
from storage.models import ModelIdentity
from tests.builders import make_prompt, make_run, make_study

pytestmark = pytest.mark.e2e


def test_the_models_table_shows_iterations_0_1_2(page: Page, tmp_path: Path) -> None:
    db_path = tmp_path / "it.duckdb"
    with Database(db_path) as db:
        annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
        s = make_study(db, "family")
        make_prompt(db, s.id)
        for m in ("qwen-it0", "qwen-it1", "qwen-it2"):
            model_registry.record_model(db, ModelIdentity(model_id=m, engine="sglang", name=m))
            make_run(db, s.id, model_id=m)
        with db.write() as cur:
            export = cur.execute("INSERT INTO export_run (kind, study_id, out_path, content_hash) "
                                 "VALUES ('dpo', ?, '/p.jsonl', 'h') RETURNING id", [s.id]).fetchall()[0][0]
        model_registry.set_lineage(db, "qwen-it1", "qwen-it0", export)
        model_registry.set_lineage(db, "qwen-it2", "qwen-it1", None)
    assert "iteration 2 · trained from qwen-it1" in critlab("models", db=db_path).stdout
    srv = start_server(db_path, tmp_path / "server.log")
    try:
        login(page, srv.url, "admin")
        page.get_by_role("tab", name="Studies").click()
        models = page.locator("#models-table")
        expect(models).to_contain_text("iteration")
        expect(models).to_contain_text(f"1 · from qwen-it0 · export #{export}")
        expect(models).to_contain_text("2 · from qwen-it1")
        kept_shot(page.locator("#models-table"), tmp_path, "models-iterations-1400.png")
        page.set_viewport_size({"width": 800, "height": 1000})
        expect(models).to_contain_text("2 · from qwen-it1")
        kept_shot(page.locator("#models-table"), tmp_path, "models-iterations-800.png")
    finally:
        srv.stop()
