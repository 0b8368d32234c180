"""Roles are checked in every Gradio handler: an annotator speaking Gradio's queue protocol by hand
reaches no admin event (hidden ones included), the same calls work for an admin, and nobody reads
another person's labels (JSON API and Label tab). A real server in the test process (tests/security_server.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from storage import annotators
from tests.security_server import (
    ADMIN, ADMIN_ACTIONS, ANN, BOB, BOB_COMMENT, MARK, PROMPTS_FILE, STUDY, Live, action, answer, concrete_path,
    denied, dump, failed, inputs_for, queue_call, seeded_server, ui_events, upload, walk_routes,
)


@pytest.fixture(scope="module")
def queue_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server of its own: the admin half of the queue test changes its database a lot."""
    with seeded_server(tmp_path_factory.mktemp("queue")) as srv:
        yield srv


def test_annotator_cannot_run_any_admin_event_through_the_gradio_queue(queue_live: Live) -> None:
    """Logged in as an annotator, call every event of the hidden tabs through the raw queue protocol with
    the inputs an admin would send: none shows study data or changes the database, and each admin action
    is refused on role."""
    ann = queue_live.login(ANN)
    events, comps = ui_events(ann)
    hidden = [e for e in events if e.admin]
    assert ADMIN_ACTIONS <= {e.trigger_elem for e in hidden}, "an admin action is no longer in a hidden tab"
    session = uuid.uuid4().hex
    on_load = next(e for e in events if e.name == "on_load")
    assert queue_call(ann, on_load, [], session)["success"]  # what the annotator's page does first
    prompts_file = upload(ann, "prompts.jsonl", PROMPTS_FILE)
    before = dump(queue_live.db)
    problems = []
    for event in hidden:
        data = inputs_for(event, comps, prompts_file)
        msg = queue_call(ann, event, data, session)
        if "not in the list of choices" in answer(msg):
            # Gradio refused a study the annotator's page never listed; again with none chosen, so that
            # the handler itself runs and must refuse.
            data = [None if comps[c]["type"] == "dropdown" else v for c, v in zip(event.inputs, data)]
            msg = queue_call(ann, event, data, session)
        if MARK in answer(msg):
            problems.append(f"{event.name} (#{event.trigger_elem}) showed data to an annotator: {answer(msg)[:300]}")
        if event.trigger_elem in ADMIN_ACTIONS and event.inputs and not denied(msg):
            problems.append(f"{event.name} (#{event.trigger_elem}) did not refuse on role: {answer(msg)[:300]}")
        after = dump(queue_live.db)
        if after != before:
            changed = [t for t in after if after[t] != before.get(t)]
            problems.append(f"{event.name} (#{event.trigger_elem}) changed {changed} for an annotator")
            before = after
    assert not problems, "\n".join(problems)


def test_the_same_queue_calls_do_work_for_an_admin(queue_live: Live) -> None:
    """The control for the test above: with the same inputs every admin action succeeds for an admin,
    so the annotator's refusals come from the role checks and not from implausible inputs."""
    admin = queue_live.login(ADMIN)
    events, comps = ui_events(admin)
    session = uuid.uuid4().hex
    for e in events:  # the admin's page load and the study pickers' refreshes fill the dropdowns
        if not e.inputs and (e.name == "on_load" or e.admin):
            assert queue_call(admin, e, [], session)["success"], e.name
    prompts_file = upload(admin, "prompts.jsonl", PROMPTS_FILE)
    failures = []
    # Settings first, then the actions that start jobs, so every action finds what it needs; the Live
    # tab is left out: it is not admin-only, and the Live tests cover it.
    # The study has labels, so turning blind off takes the confirming button (cfg-save, the same handler
    # without confirmation, would ask for it); the settings form is loaded first, as the page does.
    order = ["cfg-confirm", "cfg-requeue", "create-study-btn", "import-btn", "gen-start", "score-start", "ann-add",
             "ann-disable", "ann-enable", "ann-reset", "agr-compute", "agr-open", "export-preview", "export-write"]
    assert set(order) == ADMIN_ACTIONS - {"live-generate", "cfg-save"}
    load_settings = action(events, "cfg-study")
    assert queue_call(admin, load_settings, [STUDY], session)["success"]
    for elem_id in order:
        event = action(events, elem_id)
        before = dump(queue_live.db)
        msg = queue_call(admin, event, inputs_for(event, comps, prompts_file), session)
        if failed(msg) or denied(msg):
            failures.append(f"#{elem_id} failed for an admin: {answer(msg)[:400]}")
        elif elem_id not in ("agr-compute", "agr-open", "export-preview") and dump(queue_live.db) == before:
            failures.append(f"#{elem_id} changed nothing for an admin")
        if elem_id == "gen-start":
            queue_live.ctx.wait_jobs(timeout=60)  # scoring needs the samples
    assert not failures, "\n".join(failures)
    mallory = annotators.get_annotator(queue_live.db, "mallory")
    assert mallory.role == "admin" and not mallory.disabled  # disabled, enabled, reset: each changed the database


# -- nobody reads another person's labels ----------------------------------------------------------
def test_annotator_reads_only_own_judgments_through_the_json_api(live: Live) -> None:
    ann, admin = live.login(ANN), live.login(ADMIN)
    assert {j["judge"] for j in admin.get(f"/api/studies/{STUDY}/judgments").json()["judgments"]} == {BOB}
    for params in ({}, {"include_superseded": "true"}):
        r = ann.get(f"/api/studies/{STUDY}/judgments", params=params)
        assert r.status_code == 200 and r.json()["judgments"] == []
    for judge in (BOB, "", "%", f"{BOB}' OR '1'='1"):
        r = ann.get(f"/api/studies/{STUDY}/judgments", params={"judge": judge, "include_superseded": "true"})
        assert r.status_code == 403, (judge, r.text)
    # Whatever else the JSON API serves about a study (its label queue ...) carries none of bob's labels.
    for path, methods, _ in walk_routes(live.app.routes):
        if path.startswith("/api/studies/{study}") and "GET" in methods:
            r = ann.get(concrete_path(path, live.db.path))
            assert BOB_COMMENT not in r.text and BOB not in r.text, (path, r.text[:300])


def test_annotator_sees_none_of_anothers_labels_in_the_label_tab(live: Live) -> None:
    """ann walks through every item of the blind study (bob labelled p1 with a comment) via the Label tab's
    own events; bob's answers never show. The control: bob going back to p1 sees his comment, so the
    prefill path does show a person's own labels."""
    ann = live.login(ANN)
    events, _ = ui_events(ann)
    by_name = {e.name: e for e in events}
    session = uuid.uuid4().hex
    assert queue_call(ann, by_name["on_load"], [], session)["success"]  # fills the study picker
    pick_study = next(e for e in events if e.trigger_elem == "study-select")
    shown = [answer(queue_call(ann, pick_study, [STUDY], session))]
    for _ in range(3):
        shown.append(answer(queue_call(ann, by_name["do_skip"], [None], session)))
    assert any("Prompt p1" in s for s in shown) and any("Prompt p2" in s for s in shown)
    assert not [s for s in shown if BOB_COMMENT in s or BOB in s]

    bob, bob_session = live.login(BOB), uuid.uuid4().hex
    assert queue_call(bob, by_name["on_load"], [], bob_session)["success"]
    back = queue_call(bob, by_name["do_back"], [None, STUDY], bob_session)
    assert BOB_COMMENT in answer(back)


