"""The labelling protocol, proven by a model: Hypothesis drives the real service layer (app.services.labelling,
label_queue, the configure and membership operations) with random sequences of next, submit, edit, back,
skip, reveal, retry, re-queue, settings changes and members added or removed by three annotators with two
browser tabs each, and after every step checks that the database equals the reference model
(tests/protocol_model.py) and that the invariants hold: no blind label after a reveal; exactly one current
label per person, question, target and stage; nothing lost or stored twice; overlap and reservations
respected; a non-member is refused everything (a removed member's open item included) and changes nothing,
holds no reservation, and keeps the labels stored before. The settings changes include the label set
(label_runs: two runs, one of them missing a sample of the last prompt, and the imported responses), the queue
order and the gold rate: every item shows exactly the model's mix of cards, only prompts whose listed runs hold
all their samples are served, a submit about cards no longer in the set is refused, the one gold item leaves the
routine queue while the gold rate is above 0 (served first at rate 1, whatever the overlap), and the `serving`
table equals the model's record of how each (person, prompt) was last served afresh.

Profiles (tests/conftest.py): `ci`, the default (30 examples of up to 25 steps, no deadline, no example
database), and `long` (CRITLAB_HYPOTHESIS=long: 300 examples of up to 60 steps).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from app.services import labelling
from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import gold, judgments, label_queue, members, serving, studies
from storage.db import Database
from storage.members import NotMember
from storage.models import HumanMethod, JudgmentIn, StudyConfig
from storage.label_sources import IMPORTED
from tests.builders import make_members, make_prompt, make_responses, make_run
from tests.protocol_model import Answer, ProtocolModel, Settings

PEOPLE = ("a", "b", "c")
N_PROMPTS = 4
STUDY = "proto"


@dataclass
class Tab:
    """What one browser tab of a person shows: an item at a stage, in their card order."""

    pid: int
    stage: str
    order: list[int]


def _answers(best: int | None, ratings: dict[int, int], comment: str) -> frozenset[Answer]:
    """Answers by response id."""
    out: set[Answer] = {("likert", rid, float(v)) for rid, v in ratings.items()}
    if best is not None:
        out.add(("best_of_n", best, None))
    if comment.strip():
        out.add(("comment", None, comment.strip()))
    return frozenset(out)


class LabellingProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="critlab-protocol-")
        self.db = Database(f"{self.dir}/p.duckdb")
        self.ctx = AppContext(db=self.db)
        s = studies.create_study(self.db, STUDY, config=StudyConfig(questions=["best", "rating", "comment"]))
        self.study_id = s.id
        pids = [make_prompt(self.db, s.id, f"q{i}") for i in range(N_PROMPTS)]
        self.runs = (make_run(self.db, s.id, "m/a"), make_run(self.db, s.id, "m/b"))  # n = 3 each
        groups: dict[int, dict[int | str, list[int]]] = {}
        for pid in pids:
            groups[pid] = {IMPORTED: make_responses(self.db, pid, ["one", "two", "three"])}
            groups[pid][self.runs[0]] = make_responses(self.db, pid, ["a0", "a1", "a2"], run_id=self.runs[0])
            # The last prompt lacks a sample of run b: not ready while run b is a source.
            texts = ["b0", "b1"] if pid == pids[-1] else ["b0", "b1", "b2"]
            groups[pid][self.runs[1]] = make_responses(self.db, pid, texts, run_id=self.runs[1])
            judgments.record(self.db, [JudgmentIn(study_id=s.id, prompt_id=pid, judge_kind="model", judge="m",
                                                  method="p_true", prob=0.5, idempotency_key=uuid.uuid4().hex)])
        make_members(self.db, s.id, *PEOPLE)
        members.remove(self.db, s.id, PEOPLE[-1])  # one person starts outside the study
        self.model = ProtocolModel(prompts=pids, members=set(PEOPLE[:-1]), study_id=s.id, responses=groups,
                                   run_n={r: 3 for r in self.runs}, latest_run=self.runs[1])
        # One gold item: served on its own while the gold rate is above 0.
        gold.add(self.db, s.id, pids[1], HumanMethod.BEST, groups[pids[1]][IMPORTED][0], None, "admin")
        self.model.gold = {pids[1]}
        self.tabs: dict[tuple[str, int], Tab] = {}
        self.last: dict[str, tuple[labelling.LabelSubmission, list[int]]] = {}

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------------
    def _dump(self) -> list[tuple]:
        return (self.db.fetchall("SELECT id, stage, superseded_at FROM judgment ORDER BY id")
                + self.db.fetchall("SELECT prompt_id, annotator FROM reveal ORDER BY ALL")
                + self.db.fetchall("SELECT prompt_id, annotator FROM assignment ORDER BY ALL"))

    def _refused(self, call: Callable[[], object]) -> None:
        """A non-member's call: refused with the membership error, and nothing changes."""
        before = self._dump()
        with pytest.raises(NotMember, match="is not a member of study 'proto'"):
            call()
        assert self._dump() == before, "a refused call changed the database"

    def _show(self, who: str, tab: int, item: labelling.LabelItem | None, reserve: bool) -> None:
        if item is None:
            self.tabs.pop((who, tab), None)
            return
        m = self.model
        stage = m.latest_stage(who, item.prompt_id)
        assert item.stage == stage, (who, item.prompt_id, item.stage, stage)
        assert item.show_model_view == (stage == "revealed")
        order = [c.response_id for c in item.cards]
        assert sorted(order) == sorted(m.cards(item.prompt_id)), "the cards are the label set's mix"
        shown = _answers(item.answers.best, item.answers.ratings, item.answers.comment)
        assert shown == m.prefill(who, item.prompt_id, stage), "an item opens with the latest answers of its stage"
        m.serve(who, item.prompt_id, stage, reserve)
        self.tabs[(who, tab)] = Tab(item.prompt_id, stage, order)

    # -- rules ----------------------------------------------------------------------------------------
    @rule(who=st.sampled_from(PEOPLE), tab=st.integers(0, 1), after_current=st.booleans())
    def next_item(self, who: str, tab: int, after_current: bool) -> None:
        m = self.model
        open_tab = self.tabs.get((who, tab))
        exclude = open_tab.pid if open_tab and after_current else None
        if who not in m.members:
            self._refused(lambda: labelling.next_item(self.ctx, who, STUDY, after=exclude))
            return
        own = m.own_reservation(who, exclude)
        eligible = m.eligible(who, exclude)
        gold_open = m.gold_open(who, exclude) if m.settings.gold_rate > 0 else []
        needed = {p: m.needed(p) for p in eligible}
        busy = {p: m.others_busy(who, p) for p in eligible}
        item = labelling.next_item(self.ctx, who, STUDY, after=exclude)
        if own is not None:
            assert item is not None and item.prompt_id == own, "a person's open reservation comes first"
        elif not eligible and not gold_open:
            assert item is None, f"{who} was served {item and item.prompt_id}, but nothing is open to them"
        elif item is not None and item.prompt_id in gold_open:
            assert item.prompt_id == gold_open[0], "gold items come in their order"
            m.served[(who, item.prompt_id)] = m.policy(who, item.prompt_id)
        else:
            assert item is not None, f"{who} got nothing, but {eligible or gold_open} are open to them"
            pid = item.prompt_id
            assert m.settings.gold_rate < 1 or not gold_open, "at gold rate 1 an open gold item comes first"
            assert pid in eligible, f"{who} was served {pid}: not open to them (overlap, labelled or gold)"
            assert needed[pid] is None or busy[pid] < needed[pid], "the overlap holds"
            skipped = m.skipped.get(who, {})
            fresh = [p for p in eligible if p not in skipped]
            if fresh:
                assert pid in fresh, "a skipped prompt comes after every other one"
            else:
                assert skipped[pid] == min(skipped[p] for p in eligible), "the oldest skip comes back first"
            m.served[(who, pid)] = m.policy(who, pid)  # recorded before the item is reserved
        self._show(who, tab, item, reserve=True)

    def _tab(self, data: st.DataObject) -> tuple[str, int, Tab]:
        who, tab = data.draw(st.sampled_from(sorted(self.tabs)), label="tab")
        return who, tab, self.tabs[(who, tab)]

    @precondition(lambda self: self.tabs)
    @rule(data=st.data(), best=st.one_of(st.none(), st.integers(0, 2)),
          ratings=st.lists(st.one_of(st.none(), st.integers(1, 7)), min_size=3, max_size=3),
          comment=st.sampled_from(["", "fine", "too long"]))
    def submit(self, data: st.DataObject, best: int | None, ratings: list[int | None], comment: str) -> None:
        who, _, t = self._tab(data)
        n = len(t.order)
        self._submit(who, t, t.order[best % n] if best is not None else None,
                     {t.order[i % n]: v for i, v in enumerate(ratings) if v is not None}, comment)

    @precondition(lambda self: self.last)
    @rule(data=st.data(), drop=st.integers(0, 10))
    def edit(self, data: st.DataObject, drop: int) -> None:
        """← back to the last labelled item, clear one answer (a rating, the comment) and submit again."""
        who = data.draw(st.sampled_from(sorted(self.last)), label="who")
        if who not in self.model.members:
            self._refused(lambda: labelling.previous_item(self.ctx, who, STUDY, None))
            return
        item = labelling.previous_item(self.ctx, who, STUDY, None)
        self._show(who, 0, item, reserve=False)
        t = self.tabs[(who, 0)]
        best = item.answers.best
        ratings = dict(item.answers.ratings)
        comment = item.answers.comment
        answers = [("best", None)] * (best is not None) + [("rating", i) for i in sorted(ratings)] + \
            [("comment", None)] * bool(comment)
        kind, i = answers[drop % len(answers)]
        if kind == "best":
            best = None
        elif kind == "rating":
            del ratings[i]
        else:
            comment = ""
        self._submit(who, t, best, ratings, comment)

    def _submit(self, who: str, t: Tab, best: int | None, ratings: dict[int, int], comment: str) -> None:
        """A submit of answers by response id (from an item opened earlier: its cards may be stale)."""
        if best is None and not ratings:
            best = t.order[0]
        m = self.model
        sub = labelling.LabelSubmission(
            study=STUDY, prompt_id=t.pid, shown_order=t.order, stage=t.stage, best=best, ratings=ratings,
            comment=comment, idempotency_key=uuid.uuid4().hex)
        if who not in m.members:  # e.g. removed from the study with this item open
            self._refused(lambda: labelling.submit(self.ctx, who, sub))
            return
        stage = "revealed" if not m.settings.blind else t.stage
        cards = set(m.cards(t.pid))
        # Answers about responses outside the label set (the set changed since the item opened): refused.
        stale = set(t.order) != cards or not ({best, *ratings} - {None}) <= cards
        refused = stale or (m.settings.blind and stage == "blind" and m.has_seen(who, t.pid))
        before = self._dump()
        try:
            result = labelling.submit(self.ctx, who, sub)
        except ServiceError as e:
            assert refused, f"refused without reason: {e}"
            assert ("no longer match" in str(e) or "not one of this prompt's responses" in str(e)) if stale \
                else "seen the model's view" in str(e)
            assert self._dump() == before, "a refused submit changes nothing"
            return
        assert not refused, f"{who} stored a blind label of prompt {t.pid} after seeing the model's view"
        m.submit(who, t.pid, stage, _answers(best, ratings, comment))
        assert result.reveal == (stage == "blind" and m.settings.reveal)
        self.last[who] = (sub, result.judgment_ids)

    @precondition(lambda self: self.last)
    @rule(data=st.data())
    def retry_last_submit(self, data: st.DataObject) -> None:
        """The same submit again (a lost answer, a double click): nothing new, the same ids."""
        who = data.draw(st.sampled_from(sorted(self.last)), label="who")
        sub, ids = self.last[who]
        if who not in self.model.members:
            self._refused(lambda: labelling.submit(self.ctx, who, sub))
            return
        before = self._dump()
        assert labelling.submit(self.ctx, who, sub).judgment_ids == ids
        assert self._dump() == before

    @precondition(lambda self: self.tabs)
    @rule(data=st.data())
    def skip(self, data: st.DataObject) -> None:
        who, _, t = self._tab(data)
        if who not in self.model.members:
            self._refused(lambda: labelling.skip(self.ctx, who, STUDY, t.pid))
            return
        labelling.skip(self.ctx, who, STUDY, t.pid)
        self.model.skip(who, t.pid)

    @rule(who=st.sampled_from(PEOPLE), tab=st.integers(0, 1), from_current=st.booleans())
    def back(self, who: str, tab: int, from_current: bool) -> None:
        t = self.tabs.get((who, tab))
        current = t.pid if t and from_current else None
        if who not in self.model.members:
            self._refused(lambda: labelling.previous_item(self.ctx, who, STUDY, current))
            return
        history = self.model.history(who)
        if current in history:
            history = history[: history.index(current)]
        item = labelling.previous_item(self.ctx, who, STUDY, current)
        assert (item.prompt_id if item else None) == (history[-1] if history else None)
        if item is not None:
            self._show(who, tab, item, reserve=False)

    @precondition(lambda self: self.tabs)
    @rule(data=st.data())
    def reveal(self, data: st.DataObject) -> None:
        """The reveal step: the model's view of the tab's item."""
        who, tab, t = self._tab(data)
        m = self.model
        if who not in m.members:
            self._refused(lambda: labelling.open_item(self.ctx, who, STUDY, t.pid, stage="revealed"))
            return
        allowed = not m.settings.blind or m.has_seen(who, t.pid) or (who, t.pid, "blind") in m.current
        try:
            item = labelling.open_item(self.ctx, who, STUDY, t.pid, stage="revealed")
        except ServiceError:
            assert not allowed
            return
        assert allowed, "the model's view was shown before a blind label"
        m.seen.add((who, t.pid))
        self.tabs[(who, tab)] = Tab(t.pid, "revealed", [c.response_id for c in item.cards])

    @rule(i=st.integers(0, N_PROMPTS - 1))
    def requeue(self, i: int) -> None:
        pid = self.model.prompts[i]
        label_queue.requeue(self.db, pid, "admin")
        self.model.requeues[pid] = self.model.requeues.get(pid, 0) + 1

    @rule(who=st.sampled_from(PEOPLE))
    def add_member(self, who: str) -> None:
        r = run_op(self.ctx, "admin", "add_member", {"study": STUDY, "name": who})
        assert r["added"] == (who not in self.model.members)
        self.model.add_member(who)

    @rule(who=st.sampled_from(PEOPLE))
    def remove_member(self, who: str) -> None:
        """An admin removes a person, maybe while they have an item open (their tabs stay as they were)."""
        if who not in self.model.members:
            with pytest.raises(ServiceError, match="is not a member"):
                run_op(self.ctx, "admin", "remove_member", {"study": STUDY, "name": who})
            return
        assert run_op(self.ctx, "admin", "remove_member", {"study": STUDY, "name": who})["removed"]
        self.model.remove_member(who)

    @rule(blind=st.booleans(), reveal=st.booleans(), overlap=st.sampled_from([None, 1, 2]), extra=st.integers(0, 1),
          sources=st.sampled_from([(), (0,), (0, 1), (1, IMPORTED), (IMPORTED,), (0, 1, IMPORTED)]),
          order=st.sampled_from(serving.ORDERS), gold_rate=st.sampled_from([0.0, 0.5, 1.0]))
    def change_settings(self, blind: bool, reveal: bool, overlap: int | None, extra: int,
                        sources: tuple[int | str, ...], order: str, gold_rate: float) -> None:
        label_runs = [self.runs[s] if isinstance(s, int) else s for s in sources]
        run_op(self.ctx, "admin", "configure", {"study": STUDY, "confirm": True, "config": {
            "blind": blind, "reveal": reveal, "overlap": overlap, "extra_on_disagreement": extra,
            "label_runs": label_runs, "queue_order": order, "gold_rate": gold_rate}})
        self.model.settings = Settings(blind=blind, reveal=reveal, overlap=overlap, extra=extra,
                                       label_runs=label_runs, queue_order=order, gold_rate=gold_rate)

    # -- invariants -----------------------------------------------------------------------------------
    @invariant()
    def database_equals_model(self) -> None:
        rows = self.db.fetchall(
            """SELECT judge, prompt_id, stage, method, response_id, value, rationale FROM judgment
               WHERE judge_kind = 'human' AND superseded_at IS NULL""")
        stored: dict[tuple, set] = {}
        for who, pid, stage, method, rid, value, text in rows:
            stored.setdefault((who, pid, stage), set()).add(
                (method, rid, text if method == "comment" else value))
        assert {k: frozenset(v) for k, v in stored.items()} == {k: v for k, (v, _) in self.model.current.items()}
        n = self.db.fetchval("SELECT count(*) FROM judgment WHERE judge_kind = 'human'")
        assert n == self.model.stored_rows, "every acknowledged answer is stored exactly once"

    @invariant()
    def one_current_label_per_slot(self) -> None:
        assert not self.db.fetchall(
            """SELECT judge, method, stage, target_key FROM judgment WHERE superseded_at IS NULL
               GROUP BY ALL HAVING count(*) > 1""")

    @invariant()
    def no_blind_label_after_a_reveal(self) -> None:
        assert not self.db.fetchall(
            """SELECT j.id FROM judgment j JOIN reveal r ON r.prompt_id = j.prompt_id AND r.annotator = j.judge
               WHERE j.judge_kind = 'human' AND j.stage = 'blind' AND j.created_at > r.revealed_at""")
        seen = {(w, p) for p, w in self.db.fetchall("SELECT prompt_id, annotator FROM reveal")}
        seen |= {(w, p) for w, p in self.db.fetchall(
            "SELECT judge, prompt_id FROM judgment WHERE judge_kind = 'human' AND stage = 'revealed'")}
        assert seen == self.model.seen

    @invariant()
    def only_members_hold_items(self) -> None:
        holders = {w for (w,) in self.db.fetchall("SELECT DISTINCT annotator FROM assignment")}
        assert holders <= self.model.members, f"{holders - self.model.members} hold items outside their studies"

    @invariant()
    def servings_match(self) -> None:
        """Each fresh serving is recorded with the policy it was served by; only members' servings exist."""
        rows = self.db.fetchall("SELECT annotator, prompt_id, policy FROM serving")
        assert {(w, p): pol for w, p, pol in rows} == self.model.served

    @invariant()
    def reservations_match(self) -> None:
        held = {(w, p) for p, w in self.db.fetchall("SELECT prompt_id, annotator FROM assignment")}
        assert held == {(w, p) for w, ps in self.model.held.items() for p in ps}


TestLabellingProtocol = LabellingProtocol.TestCase
