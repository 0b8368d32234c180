"""The Studies tab's Generate and Score forms take the model lineage (issue 17 §3) as `critlab generate/score
--parent-model / --trained-on-export` do: the form's inputs become the same `generate` / `score` payload
fields (studies_tab.lineage_fields), so a bad link is refused by the same check, names what was wrong, starts
no job and records nothing."""

from __future__ import annotations

import pytest

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from app.ui.studies_tab import lineage_fields
from storage import annotators
from storage import model_registry as reg
from storage.db import Database
from storage.models import ModelIdentity
from tests.builders import make_prompt, make_study
from tests.scripted_engine import ScriptedEngine


@pytest.fixture
def ctx(db: Database) -> AppContext:
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    engine = ScriptedEngine(texts=lambda chat, j, params, schema, seed: "Seven.",
                            probs=lambda chat, prefix, cands: {c: 0.5 for c in cands}, model_id="it1")
    c = AppContext(db=db, engine_factory=lambda cfg: engine)
    yield c
    c.close()


def _setup(db: Database) -> int:
    s = make_study(db, "s")
    make_prompt(db, s.id, "q1", text="Name a prime.")
    for m in ("it0", "other"):
        reg.record_model(db, ModelIdentity(model_id=m, engine="scripted", name=m))
    with db.write() as cur:
        return cur.execute("INSERT INTO export_run (kind, study_id, out_path, content_hash) "
                           "VALUES ('dpo', ?, '/x.jsonl', 'h') RETURNING id", [s.id]).fetchall()[0][0]


def _state(db: Database) -> tuple:
    return (db.fetchval("SELECT count(*) FROM job"),
            db.fetchall("SELECT model_id, parent_model_id, trained_on_export_id FROM model ORDER BY model_id"))


def _payload(op: str, parent: str | None, export: str) -> dict:
    base = {"study": "s", **lineage_fields(parent, export)}
    return {**base, "settings": {"n": 1, "max_tokens": 8}} if op == "generate" else {**base, "methods": "p_true"}


@pytest.mark.parametrize(("parent", "export"), [("", "x"), (None, "0"), ("", "-2"), ("", "1.5")])
def test_an_export_run_that_is_no_number_is_refused_by_the_form(parent: str | None, export: str) -> None:
    with pytest.raises(ServiceError, match=r"export run \(--trained-on-export\) must be an export run's number"):
        lineage_fields(parent, export)


def test_blank_inputs_send_no_lineage_and_a_hash_is_allowed() -> None:
    assert lineage_fields("", "") == lineage_fields(None, None) == {}
    assert lineage_fields("  it0 ", "#4") == {"parent_model": "it0", "trained_on_export": 4}


@pytest.mark.parametrize("op", ["generate", "score"])
@pytest.mark.parametrize(("parent", "export", "message"), [
    ("nobody", "", "unknown parent model 'nobody' (--parent-model)"),
    ("", "99", "no export run #99 in this database (--trained-on-export)"),
    ("it1", "", "model 'it1' cannot be its own parent"),
])
def test_a_bad_link_from_the_form_names_what_is_wrong_and_changes_nothing(
        ctx: AppContext, op: str, parent: str, export: str, message: str) -> None:
    _setup(ctx.db)
    ctx.engine()  # the engine's model is registered, as on a server that has used it
    before = _state(ctx.db)
    with pytest.raises(ServiceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_op(ctx, "root", op, _payload(op, parent, export))
    assert _state(ctx.db) == before


@pytest.mark.parametrize("op", ["generate", "score"])
def test_the_form_links_the_model_and_refuses_a_cycle_and_a_changed_lineage(ctx: AppContext, op: str) -> None:
    export = _setup(ctx.db)
    r = run_op(ctx, "root", op, _payload(op, "it0", str(export)))
    assert r["status"] != "failed", r
    ctx.wait_jobs(timeout=60)
    got = reg.get_model(ctx.db, "it1")
    assert (got.parent_model_id, got.trained_on_export_id, got.iteration) == ("it0", export, 1)
    before = _state(ctx.db)
    with pytest.raises(ServiceError, match="already recorded as trained from 'it0', not 'other'"):
        run_op(ctx, "root", op, _payload(op, "other", ""))
    with pytest.raises(ServiceError, match=f"already recorded as trained on export run #{export}, not #"):
        with ctx.db.write() as cur:
            second = cur.execute("INSERT INTO export_run (kind, study_id, out_path, content_hash) VALUES "
                                 "('dpo', 1, '/y.jsonl', 'h') RETURNING id").fetchall()[0][0]
        run_op(ctx, "root", op, _payload(op, "", str(second)))
    assert _state(ctx.db) == before


@pytest.mark.parametrize("op", ["generate", "score"])
def test_a_parent_that_descends_from_the_engines_model_is_refused_as_a_cycle(ctx: AppContext, op: str) -> None:
    _setup(ctx.db)
    ctx.engine()
    reg.record_model(ctx.db, ModelIdentity(model_id="it2", engine="scripted", name="it2"))
    reg.set_lineage(ctx.db, "it2", "it1", None)
    before = _state(ctx.db)
    with pytest.raises(ServiceError, match="model 'it1' is an ancestor of 'it2'"):
        run_op(ctx, "root", op, _payload(op, "it2", ""))
    assert _state(ctx.db) == before
