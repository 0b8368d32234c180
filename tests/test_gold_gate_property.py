"""The gold gate as a property (it is applied when labels are read, so it is a property of exports and of the
report's consensus, not of the labelling protocol): for random studies, votes and gold answers, the export
and the report of a study with the gate equal those of the same study in which the gated people never
labelled anything but the gold items, and with no gate; and the gate deletes nothing."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storage import gold, judgments, studies
from storage.analysis.report import build_report
from storage.db import Database
from storage.export import ExportOptions, preview_dataset
from storage.models import JudgmentIn, StudyConfig
from tests.builders import make_prompt, make_responses

PEOPLE = ("p0", "p1", "p2", "p3")
N_GOLD = gold.MIN_GOLD_ANSWERS

# per person: how many of the gold items they answer and get right; per data prompt and person: a pick
# (index of the response or None: no label) and ratings
person = st.tuples(st.integers(0, N_GOLD), st.integers(0, N_GOLD))
vote = st.one_of(st.none(), st.tuples(st.integers(0, 2), st.lists(st.integers(1, 7), min_size=3, max_size=3)))
study = st.fixed_dictionaries({
    "people": st.tuples(*[person] * len(PEOPLE)),
    "votes": st.lists(st.tuples(*[vote] * len(PEOPLE)), min_size=1, max_size=4),
    "gate": st.sampled_from([0.5, 0.8, 1.0]),
})


def _record(db: Database, sid: int, pid: int, who: str, method: str, rid: int, value: float | None = None,
            shown: list[int] | None = None) -> None:
    judgments.record(db, [JudgmentIn(study_id=sid, prompt_id=pid, judge_kind="human", judge=who, method=method,
                                     response_id=rid, value=value, shown_order=shown,
                                     idempotency_key=uuid.uuid4().hex)])


def _build(path: Path, spec: dict[str, Any], gate: float | None, drop: set[str]) -> Database:
    """The study of `spec`; the people in `drop` label only the gold items."""
    db = Database(path)
    s = studies.create_study(db, "prop", config=StudyConfig(questions=["best", "rating"], gold_min_accuracy=gate))
    for i in range(N_GOLD):
        pid = make_prompt(db, s.id, f"gold{i}")
        rids = make_responses(db, pid, [f"gold{i} right", f"gold{i} wrong"])
        gold.add(db, s.id, pid, "best_of_n", rids[0], None, "admin")
        for who, (answered, right) in zip(PEOPLE, spec["people"]):
            if i < answered:
                _record(db, s.id, pid, who, "best_of_n", rids[0] if i < right else rids[1], shown=rids)
    for k, votes in enumerate(spec["votes"]):
        pid = make_prompt(db, s.id, f"d{k}")
        rids = make_responses(db, pid, [f"d{k} r{j}" for j in range(3)])
        for who, v in zip(PEOPLE, votes):
            if v is None or who in drop:
                continue
            pick, ratings = v
            _record(db, s.id, pid, who, "best_of_n", rids[pick], shown=rids)
            for rid, value in zip(rids, ratings):
                _record(db, s.id, pid, who, "likert", rid, float(value))
    return db


def _rows(db: Database) -> list[tuple[Any, ...]]:
    """The export's rows by content (ids differ between the two databases)."""
    text = dict(db.fetchall("SELECT id, text FROM response"))
    r = preview_dataset(db, "prop", ExportOptions(kind="dpo", annotator_names=True), n_rows=100)
    return [(m["prompt_id"], text[m["chosen_response_id"]], text[m["rejected_response_id"]], tuple(m["annotators"]),
             m["n_annotators"], m["agreement"], m["margin"], r.rows, tuple(sorted(r.skipped.items())))
            for m in (row["meta"] for row in r.first_rows)] or [(r.rows, tuple(sorted(r.skipped.items())))]


def _report(db: Database) -> tuple[Any, ...]:
    rep = build_report(db, db.fetchval("SELECT id FROM study"), n_boot=0, extended=False)
    return rep["counts"]["humans"], rep["best_of_n"], rep["ratings"]


@settings(max_examples=12)  # two DuckDB files and a report per example: ~2 s each
@given(spec=study)
def test_a_gated_study_reads_as_if_the_gated_never_labelled(spec: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="critlab-gate-"))
    try:
        gated_db = _build(tmp / "gated.duckdb", spec, spec["gate"], set())
        gated = gold.gated(gated_db, 1, spec["gate"])
        expected = {who for who, (answered, right) in zip(PEOPLE, spec["people"])
                    if answered >= gold.MIN_GOLD_ANSWERS and right / answered < spec["gate"]}
        assert gated == expected
        before = gated_db.fetchval("SELECT count(*) FROM judgment")
        without_db = _build(tmp / "without.duckdb", spec, None, gated)
        assert _rows(gated_db) == _rows(without_db)
        assert _report(gated_db) == _report(without_db)
        assert gated_db.fetchval("SELECT count(*) FROM judgment") == before
        gated_db.close()
        without_db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
