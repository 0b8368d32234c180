"""Model iterations (issue 17 §3): m027's lineage columns, set_lineage's checks, the iteration depth, and
`critlab generate` / `critlab score` with --parent-model / --trained-on-export on real GGUFs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.services.overview import ModelUse
from app.ui.studies_tab import model_rows
from storage import model_registry as reg
from storage.db import Database
from storage.migrations import migrate
from storage.models import ModelIdentity
from tests.builders import db_before, make_study
from tests.tiny_gguf import CHATML_TEMPLATE


def _model(db: Database, model_id: str) -> None:
    reg.record_model(db, ModelIdentity(model_id=model_id, engine="scripted", name=model_id))


def _export_run(db: Database, study_id: int) -> int:
    with db.write() as cur:
        return cur.execute("INSERT INTO export_run (kind, study_id, out_path, content_hash) "
                           "VALUES ('dpo', ?, '/x.jsonl', 'h') RETURNING id", [study_id]).fetchall()[0][0]


def _lineage(db: Database) -> list[tuple]:
    return db.fetchall("SELECT model_id, parent_model_id, trained_on_export_id FROM model ORDER BY model_id")


def test_m027_adds_empty_lineage_to_models_stored_before_it(tmp_path: Path) -> None:
    db = db_before(tmp_path / "old.duckdb", "m027")
    with db.write() as cur:
        cur.execute("INSERT INTO model (model_id, engine, name) VALUES ('old', 'sglang', 'old')")
    assert "m027_model_lineage" in migrate(db)
    m = reg.get_model(db, "old")
    assert (m.parent_model_id, m.trained_on_export_id, m.iteration) == (None, None, 0)
    db.close()


def test_three_iterations_of_one_family_get_depths_0_1_2(db: Database) -> None:
    s = make_study(db)
    for m in ("it0", "it1", "it2", "other"):
        _model(db, m)
    e1, e2 = _export_run(db, s.id), _export_run(db, s.id)
    reg.set_lineage(db, "it1", "it0", e1)
    got = reg.set_lineage(db, "it2", "it1", e2)
    assert (got.parent_model_id, got.trained_on_export_id, got.iteration) == ("it1", e2, 2)
    assert {m.model_id: m.iteration for m in reg.list_models(db)} == {"it0": 0, "it1": 1, "it2": 2, "other": 0}
    # record_model (an engine loaded again) refreshes the identity and never erases the lineage.
    _model(db, "it2")
    assert reg.get_model(db, "it2").parent_model_id == "it1"
    # The same link again is a no-op; an export alone is added to a model without one.
    reg.set_lineage(db, "it2", "it1", e2)
    assert reg.set_lineage(db, "other", None, e1).trained_on_export_id == e1


@pytest.mark.parametrize(("model", "parent", "export", "message"), [
    ("it1", "nobody", None, "unknown parent model 'nobody'"),
    ("it1", None, 99, "no export run #99"),
    ("it1", "it1", None, "cannot be its own parent"),
    ("it0", "it2", None, "'it0' is an ancestor of 'it2'"),
    ("it2", "it0", None, "already recorded as trained from 'it1'"),
    ("it1", None, 2, "already recorded as trained on export run #1"),
    ("ghost", "it0", None, "model 'ghost' is not in this database's model registry"),
])
def test_a_bad_link_is_refused_by_name_and_changes_nothing(db: Database, model: str, parent: str | None,
                                                           export: int | None, message: str) -> None:
    s = make_study(db)
    for m in ("it0", "it1", "it2"):
        _model(db, m)
    e1, _ = _export_run(db, s.id), _export_run(db, s.id)
    reg.set_lineage(db, "it1", "it0", e1)
    reg.set_lineage(db, "it2", "it1", None)
    before = _lineage(db)
    with pytest.raises(reg.LineageError, match=message):
        reg.set_lineage(db, model, parent, export)
    assert _lineage(db) == before


def test_the_studies_tab_models_table_shows_the_iteration(db: Database) -> None:
    rows = model_rows([ModelUse(study="s", role="run #2 (batch, embedded)", model_id="b", parent_model_id="a",
                                trained_on_export_id=4, iteration=1),
                       ModelUse(study="s", role="judge of 1 method(s)", model_id="imported")])
    assert [r[3] for r in rows] == ["1 · from a · export #4", ""]


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_generate_and_score_link_three_ggufs_as_iterations(tmp_path: Path, tiny_ggufs: dict[str, Path]) -> None:
    db = str(tmp_path / "c.duckdb")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Say hi"}\n')
    assert run("import", "prompts", str(prompts), "--study", "s", "--db", db).exit_code == 0
    gen = ("generate", "--study", "s", "--n", "1", "--max-tokens", "4", "--seed", "1", "--db", db)
    assert run(*gen, "--model", str(tiny_ggufs["chatml"])).exit_code == 0
    with Database(db) as d:
        root = d.fetchval("SELECT model_id FROM model")
        export = _export_run(d, 1)
        jobs = d.fetchval("SELECT count(*) FROM job")

    # Refused links name the flag and the value, start no job and record nothing.
    r = run(*gen, "--new-run", "--model", str(tiny_ggufs["llama3"]), "--parent-model", "no/such")
    assert r.exit_code != 0 and "unknown parent model 'no/such' (--parent-model)" in r.output
    r = run(*gen, "--new-run", "--model", str(tiny_ggufs["llama3"]), "--trained-on-export", "7")
    assert r.exit_code != 0 and "no export run #7 in this database (--trained-on-export)" in r.output
    with Database(db) as d:
        assert d.fetchval("SELECT count(*) FROM job") == jobs
        assert d.fetchall("SELECT parent_model_id, trained_on_export_id FROM model WHERE parent_model_id IS NOT "
                          "NULL OR trained_on_export_id IS NOT NULL") == []

    r = run(*gen, "--new-run", "--model", str(tiny_ggufs["llama3"]), "--parent-model", root,
            "--trained-on-export", str(export))
    assert r.exit_code == 0, r.output
    with Database(db) as d:
        it1 = d.fetchval("SELECT model_id FROM model WHERE parent_model_id = ?", [root])
    template = tmp_path / "t.j2"
    template.write_text(CHATML_TEMPLATE)
    r = run("score", "--study", "s", "--methods", "neg_perplexity", "--model", str(tiny_ggufs["bare"]),
            "--chat-template", str(template), "--parent-model", it1, "--db", db)
    assert r.exit_code == 0, r.output
    # The root cannot become a child of its own grandchild.
    with Database(db) as d:
        it2 = d.fetchval("SELECT model_id FROM model WHERE parent_model_id = ?", [it1])
    r = run(*gen, "--model", str(tiny_ggufs["chatml"]), "--parent-model", it2)
    assert r.exit_code != 0 and "ancestor" in r.output

    out = run("models", "--db", db).output
    assert f"iteration 1 · trained from {root} · on export run #{export}" in out
    assert f"iteration 2 · trained from {it1}" in out
    assert out.count("iteration ") == 2  # the root shows no lineage line
