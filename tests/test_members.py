"""Study members (issue 13): admins open every study, an annotator only the studies they are a member of.
The migration makes every existing annotator a member of every existing study; new studies start empty.
Enforced in the label queue, the labelling service, the JSON API (403), the pickers and Live; removing a
member mid-item refuses their submit with a clear error, releases their reservations and keeps their labels.
Managed with `critlab annotators add --study`, `critlab studies members add|remove|list` and the admin ops
behind the Admin tab."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.cli import main
from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import annotators, label_queue, members, studies
from storage.db import Database
from storage.members import NotMember
from storage.migrations import migrate
from tests.builders import db_before, make_members, make_prompt, make_responses
from tests.server_process import start_serve, stop

PASSWORD = "pass-word-123"


def _study(db: Database, name: str = "s1", n: int = 3) -> tuple[int, list[int]]:
    s = studies.create_study(db, name)
    pids = [make_prompt(db, s.id, f"q{i}") for i in range(n)]
    for pid in pids:
        make_responses(db, pid, ["one", "two"])
    return s.id, pids


def _sub(item: labelling.LabelItem) -> labelling.LabelSubmission:
    order = [c.response_id for c in item.cards]
    return labelling.LabelSubmission(study=item.study, prompt_id=item.prompt_id, shown_order=order, best=order[0],
                                     idempotency_key=uuid.uuid4().hex)


def _state(db: Database) -> list[list[tuple]]:
    return [db.fetchall(f"SELECT * FROM {t} ORDER BY ALL") for t in ("judgment", "assignment", "skip", "reveal")]


# -- the migration ------------------------------------------------------------------------------------
def test_the_migration_makes_every_existing_annotator_a_member_of_every_existing_study(tmp_path: Path) -> None:
    db = db_before(tmp_path / "old.duckdb", "m021")  # a database as it was before issue 13
    with db.write() as cur:
        for name, role in (("root", "admin"), ("ann", "annotator"), ("bob", "annotator")):
            cur.execute("INSERT INTO annotator (name, role, password_hash, session_gen) VALUES (?, ?, 'x', 3)",
                        [name, role])
        cur.execute("UPDATE annotator SET disabled = true WHERE name = 'bob'")
        for name in ("a", "b"):
            cur.execute("INSERT INTO study (name) VALUES (?)", [name])
    assert migrate(db)[:2] == ["m021_login_sessions", "m022_study_members"]  # later migrations follow
    assert db.fetchall("SELECT s.name, m.annotator FROM study_member m JOIN study s ON s.id = m.study_id "
                       "ORDER BY ALL") == [("a", "ann"), ("a", "bob"), ("b", "ann"), ("b", "bob")]
    assert "session_gen" not in [r[0] for r in db.fetchall("DESCRIBE annotator")]
    assert db.fetchval("SELECT count(*) FROM login_session") == 0
    assert annotators.get_annotator(db, "ann").role == "annotator"
    # From now on a new study starts with no members.
    studies.create_study(db, "c")
    assert members.members(db, studies.get_study(db, "c").id) == []
    db.close()


# -- the service layer ----------------------------------------------------------------------------------
def test_a_non_member_reaches_nothing_of_a_study_and_an_admin_needs_no_membership(db: Database) -> None:
    ctx = AppContext(db=db)
    sid, pids = _study(db)
    annotators.add_annotator(db, "root", "admin", PASSWORD)
    make_members(db, sid, "ann")
    with db.write() as cur:
        cur.execute("INSERT INTO annotator (name, role, password_hash) VALUES ('bob', 'annotator', '!')")
    before = _state(db)
    for call in (lambda: labelling.next_item(ctx, "bob", "s1"), lambda: labelling.has_work(ctx, "bob", "s1"),
                 lambda: labelling.open_item(ctx, "bob", "s1", pids[0]),
                 lambda: labelling.previous_item(ctx, "bob", "s1", None),
                 lambda: labelling.skip(ctx, "bob", "s1", pids[0]),
                 lambda: labelling.next_item(ctx, "nobody", "s1")):  # not a person at all
        with pytest.raises(NotMember, match="is not a member of study 's1'"):
            call()
    item = labelling.next_item(ctx, "ann", "s1")
    after_ann = _state(db)
    with pytest.raises(NotMember):
        labelling.submit(ctx, "bob", _sub(item))  # bob submitting what ann was shown
    assert _state(db) == after_ann and after_ann[1] != before[1]  # only ann's reservation was added
    assert labelling.submit(ctx, "ann", _sub(item)).judgment_ids
    assert labelling.next_item(ctx, "root", "s1") is not None  # admins open every study


def test_removing_a_member_mid_item_refuses_their_submit_frees_the_item_and_keeps_their_labels(db: Database) -> None:
    ctx = AppContext(db=db)
    sid, pids = _study(db, n=2)
    studies.update_study(db, sid, config=studies.get_study(db, sid).config.model_copy(update={"overlap": 1}))
    make_members(db, sid, "ann", "bob")
    first = labelling.next_item(ctx, "ann", "s1")
    labelling.submit(ctx, "ann", _sub(first))
    second = labelling.next_item(ctx, "ann", "s1")  # open in ann's tab ...
    assert labelling.next_item(ctx, "bob", "s1") is None  # ... so bob gets nothing (overlap 1)
    run_op(ctx, "root", "remove_member", {"study": "s1", "name": "ann"})
    with pytest.raises(NotMember, match="ann is not a member of study 's1'.*labels stored before stay"):
        labelling.submit(ctx, "ann", _sub(second))
    assert db.fetchall("SELECT prompt_id FROM assignment WHERE annotator = 'ann'") == []
    assert labelling.next_item(ctx, "bob", "s1").prompt_id == second.prompt_id  # the item went back
    assert {j[0] for j in db.fetchall("SELECT prompt_id FROM judgment WHERE judge = 'ann'")} == {first.prompt_id}
    # Added back, ann finds her earlier label where she left it.
    run_op(ctx, "root", "add_member", {"study": "s1", "name": "ann"})
    assert labelling.previous_item(ctx, "ann", "s1", None).prompt_id == first.prompt_id


def test_a_removal_between_the_check_and_the_write_is_caught_inside_the_transaction(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The label loop checks membership in a query it makes anyway, before its write transaction; a removal
    that lands in between is caught inside the transaction (members.recheck), for a submit and a serve."""
    ctx = AppContext(db=db)
    sid, _ = _study(db)
    make_members(db, sid, "ann", "bob")
    item = labelling.next_item(ctx, "ann", "s1")
    validate = labelling._validate

    def removed_meanwhile(*args, **kw):  # noqa: ANN002, ANN003, ANN202 - runs between the check and the write
        members.remove(db, sid, "ann")
        return validate(*args, **kw)

    monkeypatch.setattr(labelling, "_validate", removed_meanwhile)
    with pytest.raises(NotMember):
        labelling.submit(ctx, "ann", _sub(item))
    assert db.fetchval("SELECT count(*) FROM judgment") == 0
    monkeypatch.undo()

    # The serve: removed while the queue order is looked up, before the pick is reserved.
    monkeypatch.setattr(label_queue, "_candidates",
                        lambda *a, **k: (members.remove(db, sid, "bob"), label_queue._Candidates(0.0, {}))[1])
    with pytest.raises(NotMember):
        labelling.next_item(ctx, "bob", "s1")
    assert db.fetchval("SELECT count(*) FROM assignment WHERE annotator = 'bob'") == 0


def test_membership_operations_refuse_bad_input_and_change_nothing(db: Database) -> None:
    ctx = AppContext(db=db)
    sid, _ = _study(db)
    annotators.add_annotator(db, "root", "admin", PASSWORD)
    annotators.add_annotator(db, "ann", "annotator", PASSWORD)
    before = db.fetchall("SELECT * FROM study_member")
    for op, payload, msg in [("add_member", {"study": "zz", "name": "ann"}, "no study 'zz'"),
                             ("add_member", {"study": "s1", "name": "zz"}, "no annotator 'zz'"),
                             ("add_member", {"study": "s1", "name": "root"}, "admins open every study"),
                             ("remove_member", {"study": "s1", "name": "ann"}, "ann is not a member"),
                             ("remove_member", {"study": "s1", "name": "zz"}, "no annotator 'zz'"),
                             ("set_studies", {"name": "ann", "studies": ["s1", "zz"]}, "no study 'zz'"),
                             ("set_studies", {"name": "root", "studies": []}, "admins open every study"),
                             ("add_annotator", {"name": "cy", "password": PASSWORD, "studies": ["s1", "zz"]},
                              "no study 'zz'"),
                             ("add_annotator", {"name": "dee", "role": "admin", "studies": ["s1"]}, "for annotators")]:
        with pytest.raises((ValueError, LookupError), match=msg):
            run_op(ctx, "root", op, payload)
    assert db.fetchall("SELECT * FROM study_member") == before
    assert annotators.get_annotator(db, "cy") is None and annotators.get_annotator(db, "dee") is None

    assert run_op(ctx, "root", "add_member", {"study": "s1", "name": "ann"})["added"] is True
    assert run_op(ctx, "root", "add_member", {"study": "s1", "name": "ann"})["added"] is False
    listed = run_op(ctx, "root", "study_members", {"study": "s1"})["members"]
    assert [(m["name"], m["added_by"], m["disabled"]) for m in listed] == [("ann", "root", False)]
    studies.create_study(db, "s2")
    r = run_op(ctx, "root", "set_studies", {"name": "ann", "studies": ["s2"]})
    assert (r["member_of"], r["added"], r["removed"]) == (["s2"], ["s2"], ["s1"])
    assert run_op(ctx, "root", "person_studies", {"name": "root"})["member_of"] is None
    people = {a["name"]: a["studies"] for a in run_op(ctx, "root", "list_annotators", {})["annotators"]}
    assert people == {"root": None, "ann": ["s2"]}
    r = run_op(ctx, "root", "add_annotator", {"name": "cy", "password": PASSWORD, "studies": ["s1", "s2"]})
    assert r["studies"] == ["s1", "s2"] and members.studies_of(db, "cy") == {sid, studies.get_study(db, "s2").id}
    with pytest.raises(ServiceError, match="not a member"):
        run_op(ctx, "root", "remove_member", {"study": "s1", "name": "ann"})


def test_the_cli_manages_members(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")

    def run(*args: str, code: int = 0) -> str:
        r = CliRunner().invoke(main, [*args, "--db", db], catch_exceptions=False)
        assert r.exit_code == code, r.output
        return r.output

    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "Hi"}\n')
    run("import", "prompts", str(f), "--study", "s1")
    assert "Added alice (annotator; member of s1)." in run("annotators", "add", "alice", "--study", "s1")
    run("annotators", "add", "bob")
    assert "Error: no study 'nope'" in run("annotators", "add", "cy", "--study", "nope", code=1)
    assert "cy" not in run("annotators", "list")
    assert "has no members" not in run("studies", "members", "list", "s1")
    assert "bob is now a member of 's1'" in run("studies", "members", "add", "s1", "bob")
    assert "bob was already a member of 's1'" in run("studies", "members", "add", "s1", "bob")
    listed = run("studies", "members", "list", "s1")
    assert "alice" in listed and "bob" in listed and "by cli" in listed
    assert "alice is no longer a member of 's1'; their labels stay." in run("studies", "members", "remove", "s1",
                                                                            "alice")
    assert "Error: alice is not a member of study 's1'" in run("studies", "members", "remove", "s1", "alice", code=1)
    people = run("annotators", "list")
    assert "alice                    annotator  no study" in people and "bob                      annotator  s1" in people
    assert "s1" in run("studies") and "s1" in run("studies", "list")
    for sub in (["studies", "members"], ["studies", "members", "add"], ["annotators", "add"]):
        assert CliRunner().invoke(main, [*sub, "--help"]).exit_code == 0


# -- the JSON API of a real server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("members")
    with Database(d / "m.duckdb") as db:
        sid, _ = _study(db, "open", n=3)
        _study(db, "closed", n=2)
        for name in ("ann", "bob"):
            annotators.add_annotator(db, name, "annotator", PASSWORD)
        members.add(db, sid, "ann", "test")
    proc, url = start_serve(d / "m.duckdb", d / "server.log")
    yield url, d / "m.duckdb"
    stop(proc)


def _login(url: str, name: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30, headers={"origin": url})
    assert c.post("/api/login", json={"name": name, "password": PASSWORD}).status_code == 200
    return c


def test_the_json_api_answers_403_to_a_non_member(served: tuple[str, Path]) -> None:
    url, _ = served
    ann, bob = _login(url, "ann"), _login(url, "bob")
    try:
        item = ann.get("/api/studies/open/next").json()["item"]
        pid = item["prompt_id"]
        body = {"prompt_id": pid, "shown_order": [c["response_id"] for c in item["cards"]],
                "best": item["cards"][0]["response_id"], "idempotency_key": uuid.uuid4().hex}
        for method, path, payload in [("GET", "/api/studies/open/next", None),
                                      ("GET", f"/api/studies/open/items/{pid}", None),
                                      ("POST", "/api/studies/open/judgments", body),
                                      ("GET", "/api/studies/open/judgments", None),
                                      ("GET", "/api/studies/closed/next", None)]:
            r = bob.request(method, path, json=payload)
            assert r.status_code == 403, (path, r.text)
            assert "bob is not a member of study" in r.json()["error"]
            assert "Question" not in r.text and "one" not in r.text
        assert ann.get("/api/studies/closed/next").status_code == 403  # a member of one study only
        assert ann.post("/api/studies/open/judgments", json=body).status_code == 200
    finally:
        ann.close()
        bob.close()


def test_a_member_removed_through_the_running_server_is_refused_at_once(served: tuple[str, Path]) -> None:
    url, db_path = served
    ann = _login(url, "ann")

    def body(item: dict) -> dict:
        return {"prompt_id": item["prompt_id"], "shown_order": [c["response_id"] for c in item["cards"]],
                "best": item["cards"][0]["response_id"], "idempotency_key": uuid.uuid4().hex}

    try:
        done = ann.get("/api/studies/open/next").json()["item"]
        assert ann.post("/api/studies/open/judgments", json=body(done)).status_code == 200
        item = ann.get("/api/studies/open/next").json()["item"]  # the next item, open when ann is removed
        r = CliRunner().invoke(main, ["studies", "members", "remove", "open", "ann", "--db", str(db_path)])
        assert r.exit_code == 0 and "no longer a member" in r.output, r.output
        assert "sent to the critlab server" in r.output  # through the running server: in effect at once
        r = ann.post("/api/studies/open/judgments", json=body(item))
        assert r.status_code == 403 and "ann is not a member of study 'open'" in r.json()["error"]
        assert ann.get("/api/studies/open/next").status_code == 403
        r = CliRunner().invoke(main, ["studies", "members", "add", "open", "ann", "--db", str(db_path)])
        assert r.exit_code == 0, r.output
        mine = ann.get("/api/studies/open/judgments").json()["judgments"]
        assert done["prompt_id"] in {j["prompt_id"] for j in mine}  # what ann stored before the removal stayed
        assert item["prompt_id"] not in {j["prompt_id"] for j in mine}  # the refused submit stored nothing
    finally:
        ann.close()
