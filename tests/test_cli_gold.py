"""`critlab gold add` / `critlab gold list` against a database file: responses to pick from, answers stored,
bad answers refused with nothing stored, accuracy and the gate shown."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from app.cli import main
from storage import gold, studies
from storage.db import Database
from storage.models import StudyConfig
from tests.builders import label, make_prompt, make_responses


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _build(path: Path) -> list[list[int]]:
    with Database(path) as db:
        s = studies.create_study(db, "g", config=StudyConfig(questions=["best", "correct"], gold_min_accuracy=0.8))
        rids = []
        for i in range(6):
            pid = make_prompt(db, s.id, f"q{i}", f"Question {i}?")
            rids.append(make_responses(db, pid, [f"q{i} first\x1b[31m answer", f"q{i} second answer"]))
        return rids


def test_gold_help_teaches() -> None:
    r = run("gold", "--help")
    assert r.exit_code == 0 and "critlab gold add s1 --prompt q17 --answer best:412" in r.output
    assert f"at least {gold.MIN_GOLD_ANSWERS} gold items" in r.output
    for sub in ("add", "list"):
        r = run("gold", sub, "--help")
        assert r.exit_code == 0 and "--db" in r.output and "--prompt" in r.output


def test_gold_add_and_list(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    rids = _build(path)
    db = str(path)
    r = run("gold", "list", "g", "--prompt", "q0", "--db", db)
    assert r.exit_code == 0, r.output
    assert f"{rids[0][0]:>8}  imported" in r.output and "q0 first [31m answer" in r.output  # no raw escape
    assert "\x1b" not in r.output and "has no gold items" in r.output
    r = run("gold", "add", "g", "--prompt", "q0", "--answer", f"best:{rids[0][1]}", "--db", db)
    assert r.exit_code == 0 and f"response {rids[0][1]} is the best" in r.output
    r = run("gold", "add", "g", "--prompt", "q1", "--answer", f"incorrect:r{rids[1][0]}", "--db", db)
    assert r.exit_code == 0 and f"response {rids[1][0]} is incorrect" in r.output
    r = run("gold", "list", "g", "--db", db)
    assert f"gold  q0                       response {rids[0][1]:>8}  best" in r.output
    assert f"gold  q1                       response {rids[1][0]:>8}  incorrect" in r.output
    assert "gate: below 80% over at least 5 gold answers" in r.output


def test_bad_answers_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    rids = _build(path)
    db = str(path)
    r = CliRunner().invoke(main, ["gold", "add", "g", "--prompt", "q0", "--answer", "winner:3", "--db", db])
    assert r.exit_code == 2 and "is not a gold answer: give best:RESPONSE_ID" in r.output
    r = run("gold", "add", "g", "--prompt", "q0", "--answer", f"best:{rids[1][0]}", "--db", db)
    assert r.exit_code == 1 and f"response {rids[1][0]} is not a response of prompt" in r.output
    r = run("gold", "add", "g", "--prompt", "nope", "--answer", f"best:{rids[0][0]}", "--db", db)
    assert r.exit_code == 1 and "no prompt 'nope'" in r.output
    r = run("gold", "list", "g", "--prompt", "nope", "--db", db)
    assert r.exit_code == 1 and "no prompt 'nope'" in r.output
    with Database(path) as d:
        assert gold.list_gold(d, d.fetchval("SELECT id FROM study WHERE name = 'g'")) == []


def test_list_shows_accuracy_and_who_is_gated(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    rids = _build(path)
    db = str(path)
    for i in range(5):
        assert run("gold", "add", "g", "--prompt", f"q{i}", "--answer", f"best:{rids[i][0]}", "--db", db).exit_code == 0
    with Database(path) as d:
        sid = d.fetchval("SELECT id FROM study WHERE name = 'g'")
        pids = [d.fetchval("SELECT prompt_id FROM response WHERE id = ?", [r[0]]) for r in rids]
        for i in range(5):
            label(d, sid, pids[i], "ann", rids[i][0], {})
            label(d, sid, pids[i], "spam", rids[i][1], {})
        label(d, sid, pids[0], "late", rids[0][1], {})
    r = run("gold", "list", "g", "--db", db)
    lines = r.output.splitlines()
    assert "  ann                         5 / 5    (100%)" in lines
    assert "  spam                        0 / 5    (0%)  gated" in lines
    assert "  late                        0 / 1    (0%)" in lines, "one answer is too few to gate"
