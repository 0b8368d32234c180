"""Chatbot Arena battles: prompts by first-turn text, votes as human pairwise judgments with the
report's counts worked out by hand; the same battles as a JSON array import the same; malformed battles
stop the import with file:line:field; large files are read a record at a time."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from tests.formats_helpers import SAMPLES, dump, figure, report, write_lines

from storage.db import Database
from storage.formats.common import Source, json_records
from storage.import_judgments import JudgmentFileError, import_judgments
from storage.studies import create_study

SAMPLE = SAMPLES / "arena_battles.jsonl"


def test_sample_imports_and_report_matches_hand_counts(db: Database) -> None:
    """Capital of Australia, gpt-4 ("Canberra.") vs llama-2 ("Sydney."): user_1 gpt-4, user_2 gpt-4 (sides
    swapped), user_3 tie -> 3 pairs of votes, 1 agreeing; without ties 1 / 1. user_1's second vote on the
    same pair is a repeat (ignored). The joke prompt, claude vs alpaca (one battle has a second turn, kept in
    metadata): user_5 claude, user_6 alpaca -> 1 pair, 0 agreeing, also without ties. gpt-4 vs vicuna and the
    Spanish prompt have one vote each. Humans: S1 1/4, S2 1/2."""
    sid = create_study(db, "arena").id
    s = import_judgments(db, sid, SAMPLE, fmt="arena")
    assert (s.items, s.responses, s.judgments) == (3, 7, 7)
    assert s.tally["ignored"] == {"repeat votes of one voter on one pair (the first is kept)": 1}
    assert s.tally["kept_aside"]["later turns of a multi-turn battle (response metadata)"] == 2
    rep = report(db, sid)
    h1, h2 = (figure(rep, "pairwise", ["humans", "humans"], w, order=None) for w in ("s1", "s2"))
    assert (h1["agree"], h1["n"], h2["agree"], h2["n"]) == (1, 4, 1, 2)

    meta = json.loads(db.fetchall("SELECT metadata FROM prompt WHERE messages::VARCHAR LIKE '%capital of Australia?%'"
                                  )[0][0])
    battles = meta["battles"]
    assert [b["judge"] for b in battles] == ["arena_user_1", "arena_user_2", "arena_user_3", "arena_user_4"]
    assert battles[0]["question_id"] == "58210e39b3fd4441a2bd4a518bb44c2d" and battles[0]["anony"] is True
    assert battles[0]["language"] == "English" and battles[0]["openai_moderation"]["flagged"] is False
    later = db.fetchall("SELECT metadata FROM response WHERE model_id = 'claude-v1'")
    assert json.loads(later[0][0])["later_turns"][0] == {"role": "user", "content": "Another one, please."}


def test_a_json_array_of_battles_imports_the_same(db: Database, tmp_path: Path) -> None:
    battles = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    pretty = tmp_path / "battles.json"
    pretty.write_text(json.dumps(battles, indent=2, ensure_ascii=False))
    a, b = create_study(db, "lines").id, create_study(db, "array").id
    import_judgments(db, a, SAMPLE, fmt="arena")
    import_judgments(db, b, pretty, fmt="arena")
    q = "SELECT p.external_id, p.metadata, r.text, r.metadata FROM prompt p JOIN response r ON r.prompt_id = p.id " \
        "WHERE p.study_id = ? ORDER BY r.id"
    assert db.fetchall(q, [a]) == db.fetchall(q, [b])


BATTLE = {"question_id": "q1", "model_a": "m1", "model_b": "m2", "winner": "model_a", "judge": "arena_user_9",
          "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
          "conversation_b": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}],
          "turn": 1, "anony": True, "language": "English", "tstamp": 1.0}


@pytest.mark.parametrize(("bad", "where", "detail"), [
    ({**BATTLE, "winner": "a"}, "winner", "expected one of model_a, model_b"),
    ({**BATTLE, "model_b": None}, "model_b", "missing"),
    ({**BATTLE, "conversation_b": [{"role": "user", "content": "Other"}, {"role": "assistant", "content": "x"}]},
     "conversation_b[0].content", "start with different user messages"),
    ({**BATTLE, "conversation_a": [{"role": "user", "content": "Hi"}]}, "conversation_a", "has 1 messages"),
    ({**BATTLE, "turn": 0}, "turn", "expected 1 or more"),
    ({**BATTLE, "judge": ""}, "judge", "expected the voter's id"),
])
@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_a_malformed_battle_stops_everything(db: Database, tmp_path: Path, bad: dict, where: str, detail: str,
                                             layout: str) -> None:
    sid = create_study(db, "arena").id
    before = dump(db)
    records = [BATTLE, {**BATTLE, "judge": "arena_user_10"}, bad]
    if layout == "jsonl":
        path, line = write_lines(tmp_path / "b.jsonl", records), 3
    else:  # pretty-printed: each battle starts further down; the error names the line it starts on
        path = tmp_path / "b.json"
        path.write_text(json.dumps(records, indent=1))
        line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t == " {" and i > 1
                    and sum(1 for x in path.read_text().splitlines()[:i] if x == " {") == 3)
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, sid, path, fmt="arena")
    assert (e.value.line, e.value.field) == (line, where) and detail in e.value.detail
    assert dump(db) == before


@pytest.mark.parametrize(("text", "line", "detail"), [
    ('[{"a": 1},\n {"a": 2}\n', 2, "not closed"),
    ('[{"a": 1},\n 3]\n', 2, "expected an object"),
    ('[{"a": 1},\n {"a": }]\n', 2, "invalid JSON"),
    ('[{"a": 1}]\n[{"a": 2}]\n', 2, "after the end"),
])
def test_json_array_errors_name_the_line(tmp_path: Path, text: str, line: int, detail: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(JudgmentFileError) as e:
        list(json_records(Source(path)))
    assert e.value.line == line and detail in e.value.detail


@pytest.mark.parametrize("layout", ["jsonl", "array", "one-line array"])
def test_records_are_read_one_at_a_time(tmp_path: Path, layout: str) -> None:
    """A ~24 MB file is read with far less memory than its size (a record, a line, at a time)."""
    record = {"text": "x" * 2000, "n": 1}
    path = tmp_path / "big.json"
    with open(path, "w") as f:
        if layout == "jsonl":
            f.writelines(json.dumps(record) + "\n" for _ in range(12_000))
        else:
            sep = ", " if layout == "one-line array" else ",\n"
            f.write("[" + sep.join(json.dumps(record) for _ in range(12_000)) + "]\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        n = sum(1 for _ in json_records(Source(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 12_000
    if layout != "one-line array":  # a single line is read whole (up to the 64 MiB line limit)
        assert peak < size / 20, (peak, size)
