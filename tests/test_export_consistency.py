"""`critlab export dpo --consistent-with JUDGE` (issue 17 §3, CREAM's consistency filter) on a hand-built
study: the pairs kept and dropped are worked out by hand below, from scores of two judges of one method."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.services.exports import export_methods
from storage.db import Database
from storage.export import ExportOptions
from storage.export import export_dataset as _export_dataset, preview_dataset as _preview_dataset
from tests.builders import judge, label, make_prompt, make_responses, make_study

export_dataset = partial(_export_dataset, methods=export_methods())
preview_dataset = partial(_preview_dataset, methods=export_methods())

# judge_score of three responses per prompt by the current judge (it1) and the previous one (it0).
# it1 makes chosen = its highest, rejected = its lowest; it0 must score chosen strictly higher:
#   p1: it1 9/5/1 -> (r0, r2); it0 8 vs 2            -> kept
#   p2: it1 9/5/1 -> (r0, r2); it0 2 vs 7            -> consistency_disagrees
#   p3: it1 9/5/1 -> (r0, r2); it0 4 vs 4            -> consistency_tie
#   p4: it1 9/5/1 -> (r0, r2); it0 has no score of r2 -> consistency_no_score
#   p5: it1 3/3/1 -> a shared top: tied_best (dropped before the filter, never counted by it)
#   p6: it1 2/6/4 -> (r1, r0); it0 1 vs 0.5           -> kept (chosen is not the first response)
CURRENT = {"p1": [9, 5, 1], "p2": [9, 5, 1], "p3": [9, 5, 1], "p4": [9, 5, 1], "p5": [3, 3, 1], "p6": [2, 6, 4]}
PREVIOUS = {"p1": [8, 6, 2], "p2": [2, 5, 7], "p3": [4, 9, 4], "p4": [6, 5, None], "p5": [1, 2, 3],
            "p6": [0.5, 1, 0]}
KEPT = {"p1": (0, 2), "p6": (1, 0)}  # prompt -> (chosen, rejected) response index


def _study(db: Database) -> tuple[int, dict[str, list[int]]]:
    sid = make_study(db).id
    ids: dict[str, list[int]] = {}
    for ext in CURRENT:
        pid = make_prompt(db, sid, ext, f"Question {ext}?")
        ids[ext] = make_responses(db, pid, [f"{ext} answer {i}" for i in range(3)])
        for judge_id, scores in (("it1", CURRENT[ext]), ("it0", PREVIOUS[ext])):
            for rid, v in zip(ids[ext], scores):
                if v is not None:
                    judge(db, sid, pid, judge_id, "judge_score", response_id=rid, value=v, judge_kind="model")
    return sid, ids


def test_only_pairs_the_previous_judge_ranks_the_same_way_are_kept(db: Database, tmp_path: Path) -> None:
    _, ids = _study(db)
    plain = preview_dataset(db, "demo", ExportOptions(source="model:judge_score@it1"))
    assert (plain.rows, plain.skipped) == (5, {"tied_best": 1})
    out = tmp_path / "cream.jsonl"
    r = export_dataset(db, "demo", out, ExportOptions(source="model:judge_score@it1", consistent_with="it0"))
    assert r.rows == 2
    assert r.skipped == {"tied_best": 1, "consistency_disagrees": 1, "consistency_tie": 1, "consistency_no_score": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = {row["meta"]["prompt_id"]: (row["meta"]["chosen_response_id"], row["meta"]["rejected_response_id"])
           for row in rows}
    assert got == {ext: (ids[ext][c], ids[ext][rj]) for ext, (c, rj) in KEPT.items()}
    card = out.with_name("cream.card.md").read_text()
    assert "`judge_score` by `it0`" in card and "consistency_tie" in card
    params = json.loads(db.fetchval("SELECT params FROM export_run WHERE id = ?", [r.export_run_id]))
    assert params["consistent_with"] == "it0"
    # The judges swapped: it0's pairs (p1 r0/r2, p2 r2/r0, p3 tied lowest 4/4, p4 r0/r1 as r2 is unscored,
    # p5 r2/r0, p6 r1/r2) checked against it1 (9>1 kept, 1<9 no, -, 9>5 kept, 1<3 no, 6>4 kept).
    swapped = preview_dataset(db, "demo", ExportOptions(source="model:judge_score@it0", consistent_with="it1"))
    assert (swapped.rows, swapped.skipped) == (3, {"consistency_disagrees": 2, "tied_lowest": 1})


def test_a_consensus_source_is_filtered_after_the_model_agrees(db: Database) -> None:
    sid, ids = _study(db)
    p1 = db.fetchval("SELECT id FROM prompt WHERE external_id = 'p1'")
    p2 = db.fetchval("SELECT id FROM prompt WHERE external_id = 'p2'")
    # The human picks r0 and rates r2 lowest on p1 and p2: it1 agrees on both, it0 only on p1.
    for pid, rs in ((p1, ids["p1"]), (p2, ids["p2"])):
        label(db, sid, pid, "alice", rs[0], {rs[0]: 6, rs[1]: 4, rs[2]: 1})
    r = preview_dataset(db, "demo", ExportOptions(source="consensus:judge_score@it1", consistent_with="it0"))
    assert r.rows == 1 and r.skipped.get("consistency_disagrees") == 1


@pytest.mark.parametrize(("opts", "message"), [
    ({"consistent_with": "it0"}, "compares two model judges' scores of one method"),
    ({"source": "model:judge_score@it1", "consistent_with": "it0", "kind": "sft"}, "use it with dpo or rm"),
    ({"source": "model:judge_score@it1", "consistent_with": "  "}, "needs a model judge id"),
])
def test_options_that_cannot_be_filtered_are_refused(opts: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExportOptions(**opts)


@pytest.mark.parametrize(("source", "judge_id", "message"), [
    ("model:judge_score@it1", "it1", "the source's own judge"),
    ("model:judge_score@it1", "it9", "no current judge_score verdicts by 'it9'.*judges: "),
])
def test_an_unusable_judge_is_refused_and_writes_nothing(db: Database, tmp_path: Path, source: str, judge_id: str,
                                                          message: str) -> None:
    _study(db)
    out = tmp_path / "x.jsonl"
    with pytest.raises(ValueError, match=message):
        export_dataset(db, "demo", out, ExportOptions(source=source, consistent_with=judge_id))
    assert not out.exists() and db.fetchval("SELECT count(*) FROM export_run") == 0


def test_cli_flag_and_help(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with Database(path) as db:
        _study(db)
    run = CliRunner()
    out = tmp_path / "cli.jsonl"
    r = run.invoke(main, ["export", "dpo", "--study", "demo", "--out", str(out), "--source", "model:judge_score@it1",
                          "--consistent-with", "it0", "--db", str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["rows"] == 2 and summary["skipped"]["consistency_no_score"] == 1
    r = run.invoke(main, ["export", "dpo", "--study", "demo", "--out", str(tmp_path / "y.jsonl"),
                          "--consistent-with", "it0", "--db", str(path)], catch_exceptions=False)
    assert r.exit_code != 0 and "--consistent-with compares two model judges" in r.output
    helptext = run.invoke(main, ["export", "dpo", "--help"]).output
    assert "--consistent-with JUDGE" in helptext and "consistency_tie" in helptext
