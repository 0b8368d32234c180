"""FastChat / MT-Bench judgments: the sample imports into a study whose agreement report gives the
numbers FastChat's compute_agreement.py conventions give by hand, and every malformed record stops the
import with file:line:field and leaves the database as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.formats_helpers import SAMPLES, dump, figure, report, write_lines

from app.cli import main
from storage.db import Database
from storage.import_judgments import JudgmentFileError, import_judgments
from storage.studies import create_study

SAMPLE = SAMPLES / "fastchat_mtbench.jsonl"


def test_sample_imports_with_turns_orders_and_a_summary(db: Database) -> None:
    sid = create_study(db, "mt").id
    s = import_judgments(db, sid, SAMPLE, fmt="fastchat")
    assert (s.items, s.responses, s.judgments) == (3, 7, 14)
    assert s.tally == {
        "mapped": {"question records (texts)": 1, "answer records (texts)": 1, "human votes": 7,
                   "model verdicts (one per shown order)": 7},
        "kept_aside": {"earlier turns of a multi-turn answer (response metadata)": 2,
                       "judge template names (prompt metadata)": 3, "judgment timestamps (prompt metadata)": 4},
        "ignored": {"pair judgments of answers this file has no text for": 1,
                    "games whose judge call failed (winner 'error')": 1}}
    assert "ignored: 1 pair judgments" in s.message

    prompts = {r[0]: r[1:] for r in db.fetchall("SELECT external_id, messages, category, metadata FROM prompt")}
    assert set(prompts) == {"81#t1", "101#t1", "81#t2"}
    t2_messages, _, t2_meta = prompts["81#t2"]
    assert json.loads(t2_messages)[0]["content"].startswith("Now rewrite it")
    assert json.loads(t2_meta)["earlier_user_turns"][0].startswith("Write a short blog post")
    assert prompts["81#t1"][1] == "writing"  # from the question record
    earlier = db.fetchall("""SELECT r.external_id, r.metadata FROM response r JOIN prompt p ON p.id = r.prompt_id
                             WHERE p.external_id = '81#t2' ORDER BY r.external_id""")
    assert [e[0] for e in earlier] == ["alpaca-13b", "gpt-3.5-turbo"]
    turns = json.loads(earlier[0][1])["earlier_turns"]
    assert [m["role"] for m in turns] == ["user", "assistant"] and turns[1]["content"].startswith("Lisbon was great")

    # One gen_judgment record = two shown orders, each with its own explanation.
    orders = db.fetchall("""SELECT ra.external_id, rb.external_id, j.label, j.variant, j.rationale FROM judgment j
                            JOIN prompt p ON p.id = j.prompt_id JOIN response ra ON ra.id = j.response_id
                            JOIN response rb ON rb.id = j.response_b_id
                            WHERE p.external_id = '101#t1' AND j.judge = 'gpt-4' ORDER BY j.id""")
    assert [(a, b) for a, b, *_ in orders] == [("gpt-3.5-turbo", "vicuna-13b-v1.2"), ("vicuna-13b-v1.2", "gpt-3.5-turbo")]
    assert all(v.startswith("order:") and r for *_, v, r in orders)


def test_report_follows_compute_agreement_by_hand(db: Database) -> None:
    """FastChat's conventions: a vote is keyed by (question, turn, the two models in name order), the
    winner turned round when model_a sorts after model_b; 'tie' and 'tie (bothbad)' are both ties; a GPT-4
    pair judgment whose two games disagree is a tie; GPT-4 vs humans counts every human vote against the
    one GPT-4 vote, humans vs humans every pair of human votes; without ties drops every comparison with one.

    Turn 1, q81 (alpaca vs gpt-3.5): humans gpt-3.5, gpt-3.5, tie; GPT-4 gpt-3.5 (both games).
      GPT-4: 3 comparisons, 2 agree; without ties 2 / 2.   humans: 3 pairs, 1 agrees; without ties 1 / 1.
    Turn 1, q101 (gpt-3.5 vs vicuna): humans tie (bothbad), vicuna; GPT-4 games disagree -> tie.
      GPT-4: 2 comparisons, 1 agrees (tie = tie); without ties none. humans: 1 pair, 0; without ties none.
    Turn 2, q81: humans alpaca, gpt-3.5; GPT-4 tie vs alpaca -> tie.
      GPT-4: 2 comparisons, 0 agree; without ties none. humans: 1 pair, 0; without ties 0 / 1.
    All turns: GPT-4 3/7 with ties, 2/2 without; humans 1/5 with, 1/2 without. (The vicuna vs gpt-3.5
    game on q81 has no human vote, and the one with winner 'error' is not imported.)
    """
    sid = create_study(db, "mt").id
    import_judgments(db, sid, SAMPLE, fmt="fastchat")
    rep = report(db, sid)
    s1, s2 = (figure(rep, "pairwise", ["gpt-4", "humans"], w) for w in ("s1", "s2"))
    assert (s1["agree"], s1["n"], s2["agree"], s2["n"]) == (3, 7, 2, 2)
    h1, h2 = (figure(rep, "pairwise", ["humans", "humans"], w, order=None) for w in ("s1", "s2"))
    assert (h1["agree"], h1["n"], h2["agree"], h2["n"]) == (1, 5, 1, 2)
    row = rep["headline"]["rows"][0]
    assert (row["judge"], row["method"], row["main"]["value"]) == ("gpt-4", "pairwise", pytest.approx(3 / 7))


HUMAN = {"question_id": 7, "model_a": "m1", "model_b": "m2", "winner": "model_a", "judge": "expert_0", "turn": 1,
         "conversation_a": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A1"}],
         "conversation_b": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A2"}]}
GAME = {"question_id": 7, "model_1": "m1", "model_2": "m2", "g1_winner": "model_1", "g2_winner": "tie",
        "judge": ["gpt-4", "pair-v2"], "turn": 1}


@pytest.mark.parametrize(("bad", "where", "detail"), [
    ({**HUMAN, "winner": "model_c"}, "winner", "expected one of model_a, model_b, tie, tie (bothbad)"),
    ({**HUMAN, "turn": 2}, "conversation_a", "turn 2 is judged but the conversation has 2 messages"),
    ({**HUMAN, "conversation_b": [{"role": "assistant", "content": "x"}]}, "conversation_b[0].role", "expected 'user'"),
    ({**HUMAN, "turn": "1"}, "turn", "expected the judged turn, 1 or more, got text"),
    ({**HUMAN, "judge": 3}, "judge", "expected a person's name"),
    ({**GAME, "g2_winner": "B"}, "g2_winner", "expected one of model_1, model_2, tie, error"),
    ({**GAME, "judge": "gpt-4"}, "judge", "expected a [model, template] list"),
    ({"question_id": 7, "foo": 1}, None, "not a FastChat record"),
    ('{"question_id": 7,', None, "invalid JSON"),
])
def test_a_malformed_record_stops_everything(db: Database, tmp_path: Path, bad: object, where: str | None,
                                             detail: str) -> None:
    sid = create_study(db, "mt").id
    before = dump(db)
    path = write_lines(tmp_path / "mt.jsonl", [HUMAN, GAME, bad])
    with pytest.raises(JudgmentFileError) as e:
        import_judgments(db, sid, path, fmt="fastchat")
    assert (e.value.line, e.value.field) == (3, where)
    assert detail in e.value.detail and str(e.value).startswith(f"{path}:3: ")
    assert dump(db) == before


def test_cli_from_fastchat_and_help_lists_formats(tmp_path: Path) -> None:
    db = str(tmp_path / "c.duckdb")
    r = CliRunner().invoke(main, ["import", "judgments", str(SAMPLE), "--study", "mt", "--from", "fastchat",
                                  "--db", db], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "imported 3 items, 7 responses and 14 judgments" in r.output and "kept aside in metadata" in r.output
    help_text = CliRunner().invoke(main, ["import", "judgments", "--help"]).output
    assert "fastchat" in help_text and "critlab" in help_text


def test_gpt4_pair_split_votes_are_one_model_order(db: Database, tmp_path: Path) -> None:
    """The dataset's gpt4_pair split: the judge is a [model, template] list and the winner already combines
    both games, so it is one model verdict in the order shown (model_a first)."""
    rec = {**HUMAN, "judge": ["gpt-4", "pair-v2"], "winner": "tie (bothbad)"}
    sid = create_study(db, "mt").id
    s = import_judgments(db, sid, write_lines(tmp_path / "g.jsonl", [HUMAN, rec]), fmt="fastchat")
    assert s.tally["mapped"] == {"human votes": 1, "model verdicts (both orders combined)": 1}
    (kind, label, variant), = db.fetchall("SELECT judge_kind, label, variant FROM judgment WHERE judge = 'gpt-4'")
    assert (kind, label) == ("model", "tie") and variant.startswith("order:")


def test_agreement_per_turn_as_compute_agreement_prints_it(db: Database, tmp_path: Path) -> None:
    """The same hand counts as above, split by turn: GPT-4 turn 1 3/5 with ties (q81 2/3, q101 1/2), 2/2
    without; turn 2 0/2 with, 0/0 without. Humans turn 1 1/4 (q81 1/3, q101 0/1), 1/1 without; turn 2 0/1
    and 0/1."""
    from storage.analysis.report.turns import by_turn_text, pairwise_by_turn

    sid = create_study(db, "mt").id
    import_judgments(db, sid, SAMPLE, fmt="fastchat")
    rows = {(r["judges"][0], r["turn"]): tuple(r[c] for c in ("s1_agree", "s1_n", "s2_agree", "s2_n"))
            for r in pairwise_by_turn(db, sid)}
    assert rows == {("gpt-4", 1): (3, 5, 2, 2), ("gpt-4", 2): (0, 2, 0, 0),
                    ("humans", 1): (1, 4, 1, 1), ("humans", 2): (0, 1, 0, 1)}
    text = by_turn_text(pairwise_by_turn(db, sid))
    assert "gpt-4 vs humans, turn 1 with tie. #total: 5, #agree: 3, ratio: 0.60" in text
    assert "gpt-4 vs humans, turn 2 without tie. #total: 0, #agree: 0, ratio: n/a" in text
    cli = CliRunner().invoke(main, ["import", "judgments", str(SAMPLE), "--study", "mt", "--from", "fastchat",
                                    "--db", str(tmp_path / "c.duckdb")], catch_exceptions=False)
    assert cli.exit_code == 0
    cli = CliRunner().invoke(main, ["agreement", "--study", "mt", "--by-turn", "--db", str(tmp_path / "c.duckdb")],
                             catch_exceptions=False)
    assert cli.exit_code == 0 and "humans vs humans, turn 2 with tie. #total: 1, #agree: 0, ratio: 0.00" in cli.output


def test_the_report_holds_the_per_turn_counts(db: Database) -> None:
    """The agreement report carries the same per-turn counts (pairwise.by_turn) and prints them in Markdown; a
    study without turns gets an empty list."""
    from storage.analysis.report import build_report, report_markdown

    sid = create_study(db, "mt").id
    import_judgments(db, sid, SAMPLE, fmt="fastchat")
    rep = build_report(db, sid, n_boot=0)
    got = {(r["judges"][0], r["turn"]): (r["s1_agree"], r["s1_n"], r["s2_agree"], r["s2_n"])
           for r in rep["pairwise"]["by_turn"]}
    assert got == {("gpt-4", 1): (3, 5, 2, 2), ("gpt-4", 2): (0, 2, 0, 0),
                   ("humans", 1): (1, 4, 1, 1), ("humans", 2): (0, 1, 0, 1)}
    md = report_markdown(rep)
    assert "| gpt-4 vs humans | 1 | 3 / 5 | 2 / 2 |" in md
    with db.write() as w:
        w.execute("UPDATE prompt SET metadata = '{}' WHERE study_id = ?", [sid])
    assert build_report(db, sid, n_boot=0)["pairwise"]["by_turn"] == []


def test_the_label_tab_shows_a_turn_2_answers_earlier_turns(db: Database) -> None:
    """A person labelling 81#t2 sees, above each model's answer, that model's own turn 1 (its metadata)."""
    from app.render import earlier_turns_html
    from app.services import labelling
    from app.services.context import AppContext
    from tests.builders import make_members

    sid = create_study(db, "mt").id
    import_judgments(db, sid, SAMPLE, fmt="fastchat")
    make_members(db, sid, "ann")
    pid = db.fetchall("SELECT id FROM prompt WHERE external_id = '81#t2'")[0][0]
    item = labelling.open_item(AppContext(db=db), "ann", "mt", pid)
    turns = {c.text[:20]: [(m.role, m.content[:16]) for m in c.earlier_turns] for c in item.cards}
    assert len(turns) == 2 and all(len(t) == 2 and t[0][0] == "user" and t[1][0] == "assistant"
                                   for t in turns.values())
    assert any(t[1][1] == "Lisbon was great"[:16] for t in turns.values())
    html = earlier_turns_html([{"role": "user", "content": "<script>x</script> hi"},
                               {"role": "assistant", "content": "![t](http://evil/x.png) <b>ok</b>"}])
    assert "Earlier in this conversation" in html and "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<b>" not in html
    # The earlier turns in a box of their own, the response under its own heading after it.
    assert html.startswith('<blockquote class="earlier-turns">')
    assert html.index("</blockquote>") < html.index("This response (turn 2)")
    assert earlier_turns_html([]) == ""
