"""Issue 15: each UI callback is one service call. The callbacks that made two or three (the Agreement tab's
Compute, the Live tab's Generate, ↻, Stop and Add, the settings panel's Save, the page load with the Label
tab's first item) now call one service function that returns everything they render; these tests pin what
each returns against the calls it replaces, and that no module of app/ui names a storage module but records
and error types."""

from __future__ import annotations

import ast
import tempfile
import uuid
from pathlib import Path

import pytest

from app.services import agreement, label_flow, live, overview, study_settings
from app.services.context import AppContext, PermissionDenied, ServiceError
from storage import annotators, judgments, members, studies
from storage.db import Database
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_prompt, make_responses, make_study
from tests.scripted_engine import ScriptedEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppContext:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the download copies go under tmp_path
    annotators.add_annotator(db, "root", "admin", password="root-pass-123")
    annotators.add_annotator(db, "ann", "annotator", password="ann-pass-123")
    annotators.add_annotator(db, "bob", "annotator", password="bob-pass-123")
    engine = ScriptedEngine(texts=lambda chat, j, params, schema, seed: f"Seven, says sample {seed}",
                            probs=lambda chat, prefix, cands: {c: 0.5 for c in cands})
    c = AppContext(db=db, engine_factory=lambda cfg: engine)
    yield c
    c.close()


def _labelled_study(db: Database) -> int:
    s = make_study(db, "s")
    pid = make_prompt(db, s.id, "q1", text="Name a prime.")
    rid = make_responses(db, pid, ["seven", "nine"])[0]
    for who in ("ann", "bob"):
        judgments.record(db, [JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="human", judge=who,
                                         method="best_of_n", response_id=rid, idempotency_key=uuid.uuid4().hex)])
    return s.id


def test_the_agreement_tab_gets_the_report_its_markdown_and_its_download_from_one_call(ctx: AppContext) -> None:
    _labelled_study(ctx.db)
    r = agreement.tab_report(ctx, "root", "s", stage="blind", n_boot=0)
    rep = agreement.report(ctx, "s", stage="blind", n_boot=0)
    assert r.report == rep
    assert r.markdown == agreement.render(rep, "md") and "Agreement report: s" in r.markdown
    assert r.filename == "agreement-s.html" and r.url.startswith("/api/downloads/")
    offer = ctx.downloads.take(r.url.rsplit("/", 1)[-1], annotators.get_annotator(ctx.db, "root"),
                               lambda study_id, who: True)
    assert offer.path.read_text(encoding="utf-8") == agreement.render(rep, "html")
    with pytest.raises(ServiceError, match="stage must be blind or revealed"):
        agreement.tab_report(ctx, "root", "s", stage="later", n_boot=0)


def _wait(run: live.LiveRun) -> live.LiveRun:
    assert run.session.wait(timeout=30)
    return run


def test_live_generate_records_a_picked_prompt_only_when_unedited_and_says_which_questions(ctx: AppContext) -> None:
    s = make_study(ctx.db, "s")
    studies.update_study(ctx.db, s.id, config=StudyConfig(questions=["best", "correct"]))
    make_prompt(ctx.db, s.id, "q1", text="Name a prime.")
    sessions = live.LiveSessions(ctx)

    def request(text: str, study: str | None = "s") -> live.LiveRequest:
        return live.LiveRequest(messages=[{"role": "user", "content": text}], n=1, methods=[], study=study)

    run = _wait(sessions.generate("root", request("Name a prime."), "q1"))
    assert run.session.request.source_prompt == "q1" and run.questions == ["best", "correct"]
    run = _wait(sessions.generate("root", request("Name a prime number."), "q1"))  # edited after picking
    assert run.session.request.source_prompt is None
    run = _wait(sessions.generate("root", request("Hi?", study=None), "q1"))  # no study: nothing to pick from
    assert run.session.request.source_prompt is None and run.questions == live.DEFAULT_QUESTIONS
    with pytest.raises(ServiceError, match="no prompt 'gone'"):
        sessions.generate("root", request("Name a prime."), "gone")
    with pytest.raises(PermissionDenied):  # the study does not grant ann the Live tab
        sessions.generate("ann", request("Name a prime."), "q1")

    again = _wait(sessions.regenerate("root", run.session.id, [1], "s"))  # the questions of the study chosen now
    assert again.session is run.session and again.questions == ["best", "correct"]
    assert sessions.regenerate("root", run.session.id, None, None).questions == live.DEFAULT_QUESTIONS
    run.session.wait(timeout=30)
    with pytest.raises(PermissionDenied):
        sessions.regenerate("bob", run.session.id, None, "s")


def test_live_add_and_stop_take_the_session_id(ctx: AppContext) -> None:
    make_study(ctx.db, "s")
    sessions = live.LiveSessions(ctx)
    req = live.LiveRequest(messages=[{"role": "user", "content": "Hi?"}], n=2, methods=[], study="s")
    run = _wait(sessions.generate("root", req))
    with pytest.raises(PermissionDenied):  # someone else's session, before anything about the study
        sessions.add("bob", run.session.id, None, None)
    with pytest.raises(ServiceError, match="choose the study to add to"):
        sessions.add("root", run.session.id, None, None)
    with pytest.raises(ServiceError, match="generate first"):
        sessions.add("root", None, "s", None)
    res = sessions.add("root", run.session.id, "s", live.labelling.Answers(best=2))
    assert res.responses == 2 and res.labels == 1 and not res.already_added
    assert sessions.add("root", run.session.id, "s", live.labelling.Answers(best=2)).already_added
    sessions.stop("root", run.session.id)  # finished already: stopping changes nothing
    with pytest.raises(PermissionDenied):
        sessions.stop("bob", run.session.id)


def test_a_settings_save_returns_the_panel_after_it(ctx: AppContext) -> None:
    sid = _labelled_study(ctx.db)
    form = study_settings.load_form(ctx, "s")
    nothing = study_settings.save_panel(ctx, "root", form.model_dump(), dict(form.values))
    assert nothing.panel is None and nothing.changed == {}
    saved = study_settings.save_panel(ctx, "root", form.model_dump(), {**form.values, "overlap": 2,
                                                                       "guidelines": "Be brief."})
    assert saved.changed == {"overlap": [None, 2], "guidelines": ["", "Be brief."]}
    assert saved.described == "guidelines: edited; annotators per prompt: everyone → 2" and saved.notes == []
    assert saved.panel == study_settings.load_panel(ctx, "s")
    assert saved.panel.form.values["overlap"] == 2 and saved.panel.form.values["guidelines"] == "Be brief."
    before = studies.get_study(ctx.db, sid)
    with pytest.raises(ServiceError, match="changed since this form was loaded"):  # the old form, saved again
        study_settings.save_panel(ctx, "root", form.model_dump(), {**form.values, "overlap": 3})
    with pytest.raises(study_settings.NeedsConfirmation):  # labels exist: turning blind off needs confirming
        study_settings.save_panel(ctx, "root", saved.panel.form, {**saved.panel.form.values, "blind": False})
    assert studies.get_study(ctx.db, sid) == before


def test_the_page_load_carries_the_label_tabs_first_item(ctx: AppContext) -> None:
    s = make_study(ctx.db, "s")
    make_responses(ctx.db, make_prompt(ctx.db, s.id, "q1"), ["a", "b"])
    members.add(ctx.db, s.id, "ann", "root")
    page = overview.page_load(ctx, "ann", admin=False)
    assert page.first == "s" and page.label_refused is None
    assert page.label == label_flow.open_study(ctx, "ann", "s")  # the reservation it made: the same item
    assert page.label.item is not None and page.label.item.prompt_external_id == "q1"
    nobody = overview.page_load(ctx, "bob", admin=False)  # a member of no study
    assert nobody.first is None and nobody.label == label_flow.Step(event="no_study")


def test_app_ui_imports_from_storage_only_records_and_error_types() -> None:
    """The UI reaches storage through app/services; the records (storage.models) and the two error types a
    callback shows as a status line are the only storage names it imports."""
    allowed = {"storage.models", "storage.members:NotMember", "storage.fileio:StorageWriteError"}
    found = set()
    for path in sorted((ROOT / "app" / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "storage":
                for alias in node.names:
                    name = node.module if node.module == "storage.models" else f"{node.module}:{alias.name}"
                    found.add((path.name, name))
            elif isinstance(node, ast.Import):
                found |= {(path.name, a.name) for a in node.names if a.name.split(".")[0] in ("storage", "duckdb")}
    assert {(f, n) for f, n in found if n not in allowed} == set()


# Calls into app/services that touch nothing: request models are built with their classes; these format or
# validate in memory.
PURE = {"labelling.submission", "labelling.progress_text", "web_paths"}


def _service_calls(path: Path) -> dict[str, list[str]]:
    """Per function of a UI module (its own body, nested functions apart): the calls it makes into app/services
    (module functions, imported functions, and methods of service objects such as LiveSessions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()  # modules and functions imported from app.services
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("app.services"):
            names |= {a.asname or a.name for a in node.names if not a.name[0].isupper()}
    for node in ast.walk(tree):  # sessions = live.LiveSessions(ctx): a service object
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute) and isinstance(node.value.func.value, ast.Name)
                and node.value.func.value.id in names and node.value.func.attr[0].isupper()):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    def own(fn: ast.AST) -> list[ast.AST]:
        out, todo = [], list(ast.iter_child_nodes(fn))
        while todo:
            n = todo.pop()
            if not isinstance(n, (ast.FunctionDef, ast.Lambda)):
                out.append(n)
                todo += list(ast.iter_child_nodes(n))
        return out

    calls: dict[str, list[str]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            found = []
            for n in own(fn):
                if isinstance(n, ast.Call):
                    f = n.func
                    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in names \
                            and not f.attr[0].isupper():
                        found.append(f"{f.value.id}.{f.attr}")
                    elif isinstance(f, ast.Name) and f.id in names:
                        found.append(f.id)
            calls[fn.name] = [c for c in found if c not in PURE]
    return calls


def test_every_ui_callback_makes_at_most_one_service_call() -> None:
    over = {(path.name, fn): calls for path in sorted((ROOT / "app" / "ui").glob("*.py"))
            if not path.name.startswith("test") for fn, calls in _service_calls(path).items()
            if len(calls) > 1 and fn not in ("build", "build_ui", "wire")}  # set-up code wires callbacks
    assert over == {}
    agreement_tab = _service_calls(ROOT / "app" / "ui" / "agreement_tab.py")
    assert agreement_tab["do_compute"] == ["agreement.tab_report"]  # the scan sees the calls it counts
