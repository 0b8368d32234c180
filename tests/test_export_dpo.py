"""The per-annotator DPO pair rule on the reference builder (tests/dpo_reference.py, which
tests/test_export_policies.py holds the export to): supersede and stage rules, fixed meta schema, pseudonyms.
The files and export_run row of an export are tested on the one export path (test_export_files.py,
test_export_policies.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from storage.db import Database
from storage.export import ExportOptions, export_dataset
from storage.export.files import pseudonym_salt
from tests.builders import judge, label, make_prompt, make_responses, make_run, make_study
from tests.dpo_reference import META_TYPE, build_dpo_pairs


@pytest.fixture
def sid(db: Database) -> int:
    return make_study(db).id


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Exports go here, apart from the test database's files."""
    return tmp_path / "exports"


def three(db: Database, sid: int, ext: str = "p1", **kw: object) -> tuple[int, list[int]]:
    pid = make_prompt(db, sid, ext, f"Question {ext}?")
    return pid, make_responses(db, pid, [f"{ext} answer A", f"{ext} answer B", f"{ext} answer C"], **kw)


def test_chosen_is_pick_rejected_is_strictly_lowest(db: Database, sid: int) -> None:
    pid = make_prompt(db, sid, "p1", "Write =HYPERLINK(\"x\")", system="Be kind.")
    texts = ["  Best answer\n\twith ünïcode ✓ and =cmd|x  ", "middle", "worst\r\n"]
    a, b, c = make_responses(db, pid, texts)
    jid = label(db, sid, pid, "alice", a, {a: 6, b: 4, c: 2}, shown=[b, a, c])
    rows, skipped = build_dpo_pairs(db, sid)
    assert skipped == {}
    assert len(rows) == 1
    row = rows[0]
    assert row["prompt"] == [{"role": "system", "content": "Be kind."},
                             {"role": "user", "content": "Write =HYPERLINK(\"x\")"}]
    assert row["chosen"] == [{"role": "assistant", "content": texts[0]}]
    assert row["rejected"] == [{"role": "assistant", "content": texts[2]}]
    meta = row["meta"]
    assert meta == {
        "study": "demo", "prompt_id": "p1", "prompt_db_id": pid, "chosen_response_id": a,
        "rejected_response_id": c, "annotator": meta["annotator"], "chosen_rating": 6.0,
        "rejected_rating": 2.0,
        "ratings": [{"response_id": b, "rating": 4.0}, {"response_id": a, "rating": 6.0},
                    {"response_id": c, "rating": 2.0}],
        "shown_order": [b, a, c], "generation_run_id": None, "model_id": None, "judgment_id": jid,
    }
    assert list(meta) == [f.name for f in META_TYPE]


@pytest.mark.parametrize(("ratings", "reason"), [
    ({0: 6, 1: 2, 2: 2}, "tied_lowest"),
    ({0: 3, 1: 3, 2: 5}, "rejected_not_below_chosen"),       # lowest other equals the pick
    ({0: 2, 1: 4, 2: 5}, "rejected_not_below_chosen"),       # the pick is rated below the others
    ({0: 3, 1: 3, 2: 3}, "tied_lowest"),                     # a tie among the others is reported first
    ({1: 4, 2: 2}, "missing_ratings"),                       # the pick has no rating
    ({0: 6, 1: 4}, "missing_ratings"),                       # a shown response has no rating
])
def test_skip_reasons(db: Database, sid: int, ratings: dict[int, float], reason: str) -> None:
    pid, ids = three(db, sid)
    label(db, sid, pid, "alice", ids[0], {ids[i]: v for i, v in ratings.items()}, shown=ids)
    rows, skipped = build_dpo_pairs(db, sid)
    assert rows == []
    assert skipped == {reason: 1}


def test_no_other_response(db: Database, sid: int) -> None:
    pid = make_prompt(db, sid)
    (only,) = make_responses(db, pid, ["lonely"])
    label(db, sid, pid, "alice", only, {only: 5})
    assert build_dpo_pairs(db, sid) == ([], {"no_other_response": 1})


def test_rating_of_unshown_response_is_ignored(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", a, {a: 6, b: 4, c: 1}, shown=[a, b])  # c rated but not shown
    rows, _ = build_dpo_pairs(db, sid)
    assert rows[0]["meta"]["rejected_response_id"] == b
    assert [r["response_id"] for r in rows[0]["meta"]["ratings"]] == [a, b]


def test_edits_supersede(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", b, {a: 5, b: 6, c: 1})
    # alice changes her mind: picks a and re-rates a and c (b's rating stays from the first submit)
    new_pick = judge(db, sid, pid, "alice", "best_of_n", response_id=a, shown_order=[a, b, c])
    judge(db, sid, pid, "alice", "likert", response_id=a, value=7)
    judge(db, sid, pid, "alice", "likert", response_id=c, value=5)
    rows, skipped = build_dpo_pairs(db, sid)
    assert skipped == {}
    (row,) = rows
    m = row["meta"]
    assert (m["judgment_id"], m["chosen_response_id"], m["rejected_response_id"]) == (new_pick, a, c)
    assert (m["chosen_rating"], m["rejected_rating"]) == (7.0, 5.0)
    # an edit that creates a tie makes the pair disappear rather than use the old rating
    judge(db, sid, pid, "alice", "likert", response_id=c, value=6)
    assert build_dpo_pairs(db, sid) == ([], {"tied_lowest": 1})


def test_revealed_and_model_judgments_are_ignored(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", a, {a: 6, b: 4, c: 2})
    label(db, sid, pid, "alice", c, {a: 1, b: 4, c: 7}, stage="revealed")
    label(db, sid, pid, "test/model:judge", b, {a: 1, b: 7, c: 3}, judge_kind="model")
    rows, skipped = build_dpo_pairs(db, sid)
    assert skipped == {}
    assert [(r["meta"]["chosen_response_id"], r["meta"]["rejected_response_id"]) for r in rows] == [(a, c)]

    pid2, (d, e, f) = three(db, sid, "p2")
    label(db, sid, pid2, "alice", d, {d: 6, e: 4, f: 2}, stage="revealed")  # revealed only: no pair
    assert len(build_dpo_pairs(db, sid)[0]) == 1


def test_one_pair_per_prompt_and_annotator(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    label(db, sid, p1, "alice", a, {a: 6, b: 4, c: 2})
    label(db, sid, p1, "bob", b, {a: 1, b: 7, c: 3})
    label(db, sid, p2, "alice", f, {d: 3, e: 2, f: 5})
    label(db, sid, p1, "alice", a, {a: 6, b: 4, c: 2})  # a resubmit replaces, never adds
    rows, _ = build_dpo_pairs(db, sid)
    got = sorted((r["meta"]["prompt_id"], r["meta"]["annotator"], r["meta"]["chosen_response_id"],
                  r["meta"]["rejected_response_id"]) for r in rows)
    alice = next(r["meta"]["annotator"] for r in rows if r["meta"]["chosen_response_id"] == f)
    bob = next(r["meta"]["annotator"] for r in rows if r["meta"]["chosen_response_id"] == b)
    assert got == sorted([("p1", alice, a, c), ("p1", bob, b, a), ("p2", alice, f, e)])
    assert alice != bob
    assert [r["meta"]["prompt_id"] for r in rows] == ["p1", "p1", "p2"]  # prompt order


def test_other_study_is_ignored(db: Database, sid: int) -> None:
    pid, (a, b, c) = three(db, sid)
    other = make_study(db, "other").id
    label(db, other, pid, "alice", a, {a: 6, b: 4, c: 2})
    assert build_dpo_pairs(db, sid) == ([], {})


def _mixed_study(db: Database, sid: int) -> list[int]:
    """Rows with and without a run, model id, and different rating counts."""
    run = make_run(db, sid, "HuggingFaceTB/SmolLM2-135M-Instruct")
    p1, (a, b, c) = three(db, sid, "p1", run_id=run)
    p2 = make_prompt(db, sid, "p2", "Two?")
    d, e = make_responses(db, p2, ["imported one", "imported two ✓ ünïcode"], model_id="some/model")
    label(db, sid, p1, "alice", a, {a: 6, b: 4, c: 2})
    label(db, sid, p2, "alice", e, {d: 1.5, e: 2})
    label(db, sid, p1, "bob", a, {a: 6, b: 2, c: 2})  # skipped: tie
    return [run, a, c, d, e]


def test_meta_has_one_schema_in_every_row(db: Database, sid: int) -> None:
    run, a, c, d, e = _mixed_study(db, sid)
    rows, skipped = build_dpo_pairs(db, sid)
    assert skipped == {"tied_lowest": 1}
    assert [(r["meta"]["generation_run_id"], r["meta"]["model_id"]) for r in rows] == [
        (run, "HuggingFaceTB/SmolLM2-135M-Instruct"), (None, "some/model")]
    assert len({tuple(r["meta"]) for r in rows}) == 1
    for r in rows:
        m = r["meta"]
        assert isinstance(m["chosen_rating"], float) and isinstance(m["rejected_rating"], float)
        assert all(isinstance(x["rating"], float) and isinstance(x["response_id"], int) for x in m["ratings"])
    # Arrow infers a single struct type for meta without being told, and it matches the declared one.
    assert pa.Table.from_pylist(rows).schema.field("meta").type.equals(META_TYPE)


def test_pseudonyms_are_stable_per_database_and_hide_names(db: Database, sid: int, tmp_path: Path) -> None:
    pid, (a, b, c) = three(db, sid)
    label(db, sid, pid, "alice", a, {a: 6, b: 4, c: 2})
    first = build_dpo_pairs(db, sid)[0][0]["meta"]["annotator"]
    assert first.startswith("annotator-") and len(first) == len("annotator-") + 10
    assert "alice" not in first
    salt = db.fetchval("SELECT value FROM settings WHERE key = 'pseudonym_salt'")
    assert salt and bytes.fromhex(salt) == pseudonym_salt(db)
    out = export_dataset(db, "demo", tmp_path / "x.jsonl", ExportOptions(per_annotator=True, signal="best"))
    assert "alice" not in Path(out.out_path).read_text()
    assert build_dpo_pairs(db, sid)[0][0]["meta"]["annotator"] == first

    other = Database(tmp_path / "other.duckdb")
    try:
        osid = make_study(other).id
        opid, (x, y, z) = three(other, osid)
        label(other, osid, opid, "alice", x, {x: 6, y: 4, z: 2})
        assert build_dpo_pairs(other, osid)[0][0]["meta"]["annotator"] != first
    finally:
        other.close()


def test_picks_without_response_or_shown_order_are_counted(db: Database, sid: int) -> None:
    p1, (a, b, c) = three(db, sid, "p1")
    p2, (d, e, f) = three(db, sid, "p2")
    judge(db, sid, p1, "alice", "best_of_n", response_id=None, shown_order=[a, b, c])
    judge(db, sid, p2, "alice", "best_of_n", response_id=d, shown_order=None)
    assert build_dpo_pairs(db, sid) == ([], {"no_pick": 1, "no_shown_order": 1})
