"""FastChat / MT-Bench judgments (read).

Record kinds, told apart by their keys, in any order in one JSON Lines file:

- pairwise votes with both conversations (the `mt_bench_human_judgments` dataset): `question_id,
  model_a, model_b, winner (model_a | model_b | tie | tie (bothbad)), judge, conversation_a,
  conversation_b, turn`; a text `judge` (`expert_3`, `author_1`) is a person, a list judge
  (`["gpt-4", "pair-v2"]`) a model verdict already combined over both orders (stored as one order);
- `gen_judgment.py` pair judgments: `question_id, model_1, model_2, g1_winner, g2_winner
  (model_1 | model_2 | tie | error), judge [model, template], g1_judgment, g2_judgment, turn, tstamp`:
  game 1 showed model_1 first, game 2 model_2 first, so they become the two shown orders;
- questions (`question_id, category, turns`) and model answers (`question_id, model_id, choices[0].turns`),
  which supply the texts the pair judgments do not carry.

One prompt per (question, turn), id `<question_id>#t<turn>`; the judged turn's user message is the prompt,
each model's reply to it a response, and the turns before it go to the response's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storage.formats.common import ItemBuilder, Source, Tally, json_records, need

HUMAN_WINNERS = {"model_a": 0, "model_b": 1, "tie": "tie", "tie (bothbad)": "both_bad"}
GAME_WINNERS = {"model_1": 0, "model_2": 1, "tie": "tie"}


def _conversation(rec: dict[str, Any], key: str, turn: int, src: Source, line: int) -> list[dict[str, str]]:
    conv = need(rec, key, list, src, line, "a list of {role, content} messages")
    for i, m in enumerate(conv):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise src.err(line, f"{key}[{i}]", "expected {role, content} with text content")
        want = "user" if i % 2 == 0 else "assistant"
        if m.get("role") != want:
            raise src.err(line, f"{key}[{i}].role", f"expected {want!r} (turns alternate, the user first), "
                          f"got {m.get('role')!r}")
    if len(conv) < 2 * turn:
        raise src.err(line, key, f"turn {turn} is judged but the conversation has {len(conv)} messages "
                      f"(needs {2 * turn})")
    return [{"role": m["role"], "content": m["content"]} for m in conv]


def _turn(rec: dict[str, Any], src: Source, line: int) -> int:
    turn = need(rec, "turn", int, src, line, "the judged turn, 1 or more")
    if turn < 1:
        raise src.err(line, "turn", f"expected 1 or more, got {turn}")
    return turn


def _qid(rec: dict[str, Any], src: Source, line: int) -> str:
    return str(need(rec, "question_id", (int, str), src, line, "the MT-Bench question id"))


GAME_KEYS = ("question_id", "turn", "model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_judgment",
             "g2_judgment", "tstamp")  # what a pair judgment needs; its two judge prompts (long) are not kept


def read(src: Source, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    questions: dict[str, dict[str, Any]] = {}
    answers: dict[tuple[str, str], list[str]] = {}
    conversations: dict[tuple[str, str], list[dict[str, str]]] = {}  # (qid, model) -> a conversation seen
    games: list[tuple[int, dict[str, Any]]] = []  # pair judgments wait for texts that may come later
    b = ItemBuilder()
    kept_turns: set[tuple[str, str]] = set()

    def chat(qid: str, model: str, turn: int) -> tuple[str, str, list[dict[str, str]]] | None:
        """(user message, answer, earlier turns) of `model` at `turn`, from a conversation or the
        question and answer records; None when the file has neither."""
        conv = conversations.get((qid, model))
        if conv is not None and len(conv) >= 2 * turn:
            return conv[2 * turn - 2]["content"], conv[2 * turn - 1]["content"], conv[:2 * turn - 2]
        q, a = questions.get(qid), answers.get((qid, model))
        if q and a and len(q["turns"]) >= turn and len(a) >= turn:
            before = [{"role": r, "content": t} for i in range(turn - 1)
                      for r, t in (("user", q["turns"][i]), ("assistant", a[i]))]
            return q["turns"][turn - 1], a[turn - 1], before
        return None

    def pair(line: int, qid: str, turn: int, models: tuple[str, str]) -> tuple[str, list[str]] | None:
        got = [chat(qid, m, turn) for m in models]
        if got[0] is None or got[1] is None:
            return None
        item_id = f"{qid}#t{turn}"
        meta: dict[str, Any] = {"question_id": int(qid) if qid.isdigit() else qid, "turn": turn}
        if turn > 1:
            meta["earlier_user_turns"] = [m["content"] for m in got[0][2] if m["role"] == "user"]
        category = questions.get(qid, {}).get("category")
        b.item(line, item_id, prompt=got[0][0], metadata=meta,
               category=category if isinstance(category, str) else None)
        ids = []
        for m, (_, answer, before) in zip(models, got):
            if before and (item_id, m) not in kept_turns:
                kept_turns.add((item_id, m))
                tally.kept["earlier turns of a multi-turn answer (response metadata)"] += 1
            ids.append(b.response(item_id, answer, m, {"earlier_turns": before} if before else None))
        return item_id, ids

    def vote(line: int, rec: dict[str, Any]) -> None:
        qid, turn = _qid(rec, src, line), _turn(rec, src, line)
        models = (need(rec, "model_a", str, src, line, "a model name"), need(rec, "model_b", str, src, line,
                                                                              "a model name"))
        for side, m in zip("ab", models):
            conv = _conversation(rec, f"conversation_{side}", turn, src, line)
            if len(conv) > len(conversations.get((qid, m), [])):  # the longest seen holds every turn
                conversations[(qid, m)] = conv
        winner = rec.get("winner")
        if winner not in HUMAN_WINNERS:
            raise src.err(line, "winner", f"expected one of {', '.join(HUMAN_WINNERS)}, got {winner!r}")
        judge_raw = rec.get("judge")
        if isinstance(judge_raw, list) and judge_raw and all(isinstance(x, str) for x in judge_raw):
            judge, judge_kind, template = judge_raw[0], "model", judge_raw[1:]
        elif isinstance(judge_raw, str) and judge_raw.strip():
            judge, judge_kind, template = judge_raw, "human", []
        else:
            raise src.err(line, "judge", "expected a person's name or a [model, template] list")
        got = pair(line, qid, turn, models)
        assert got is not None  # this record's own conversations hold the turn
        item_id, ids = got
        w = HUMAN_WINNERS[winner]
        j = {"judge": judge, "judge_kind": judge_kind, "type": "pairwise", "shown": ids,
             "winner": ids[w] if isinstance(w, int) else w}
        if judge_kind == "model" and w == "both_bad":
            j["winner"] = "tie"
        if b.judgment(item_id, j):
            tally.mapped["human votes" if judge_kind == "human" else "model verdicts (both orders combined)"] += 1
            _note_template(b, item_id, judge, template, tally)
        else:
            tally.ignored["repeat votes of one judge on one pair (the first is kept)"] += 1

    for line, rec in json_records(src):
        if not isinstance(rec, dict):
            raise src.err(line, None, "expected a JSON object (one FastChat record per line)")
        if "g1_winner" in rec or "model_1" in rec:
            _qid(rec, src, line), _turn(rec, src, line)
            games.append((line, {k: rec[k] for k in GAME_KEYS if k in rec}))
        elif "winner" in rec or "model_a" in rec:
            vote(line, rec)
        elif "choices" in rec:
            qid = _qid(rec, src, line)
            model = need(rec, "model_id", str, src, line, "the answering model")
            choices = need(rec, "choices", list, src, line, "a list of {index, turns}")
            turns = choices[0].get("turns") if choices and isinstance(choices[0], dict) else None
            if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                raise src.err(line, "choices[0].turns", "expected a list of answer texts, one per turn")
            answers[(qid, model)] = turns
            tally.mapped["answer records (texts)"] += 1
        elif "turns" in rec:
            qid = _qid(rec, src, line)
            turns = need(rec, "turns", list, src, line, "the question's user turns")
            if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
                raise src.err(line, "turns", "expected a non-empty list of question texts")
            questions[qid] = {"turns": turns, "category": rec.get("category")}
            tally.mapped["question records (texts)"] += 1
        else:
            raise src.err(line, None, "not a FastChat record: expected a pairwise vote (model_a, model_b, winner), "
                          "a pair judgment (model_1, model_2, g1_winner, g2_winner), a question or an answer")

    for line, rec in games:
        _game(line, rec, src, tally, b, pair)
    yield from b.located()


def _game(line: int, rec: dict[str, Any], src: Source, tally: Tally, b: ItemBuilder, pair: Any) -> None:
    """One gen_judgment.py record: game 1 showed model_1 first, game 2 model_2 first."""
    qid, turn = _qid(rec, src, line), _turn(rec, src, line)
    models = (need(rec, "model_1", str, src, line, "a model name"), need(rec, "model_2", str, src, line,
                                                                          "a model name"))
    judge_raw = rec.get("judge")
    if not (isinstance(judge_raw, list) and judge_raw and all(isinstance(x, str) for x in judge_raw)):
        raise src.err(line, "judge", "expected a [model, template] list, e.g. [\"gpt-4\", \"pair-v2\"]")
    for g in ("g1_winner", "g2_winner"):
        if rec.get(g) not in (*GAME_WINNERS, "error"):
            raise src.err(line, g, f"expected one of {', '.join(GAME_WINNERS)}, error; got {rec.get(g)!r}")
    got = pair(line, qid, turn, models)
    if got is None:
        tally.ignored["pair judgments of answers this file has no text for"] += 1
        return
    item_id, ids = got
    judge = judge_raw[0]
    for g, shown in (("g1", [ids[0], ids[1]]), ("g2", [ids[1], ids[0]])):
        w = rec[f"{g}_winner"]
        if w == "error":
            tally.ignored["games whose judge call failed (winner 'error')"] += 1
            continue
        j: dict[str, Any] = {"judge": judge, "judge_kind": "model", "type": "pairwise", "shown": shown,
                             "winner": "tie" if w == "tie" else ids[GAME_WINNERS[w]]}
        if isinstance(rec.get(f"{g}_judgment"), str) and rec[f"{g}_judgment"].strip():
            j["rationale"] = rec[f"{g}_judgment"]
        if b.judgment(item_id, j):
            tally.mapped["model verdicts (one per shown order)"] += 1
        else:
            tally.ignored["repeat votes of one judge on one pair (the first is kept)"] += 1
    _note_template(b, item_id, judge, judge_raw[1:], tally)
    if "tstamp" in rec:
        extras = b.item(line, item_id).setdefault("metadata", {}).setdefault("judged_at", {})
        extras.setdefault(judge, []).append(rec["tstamp"])
        tally.kept["judgment timestamps (prompt metadata)"] += 1


def _note_template(b: ItemBuilder, item_id: str, judge: str, template: list[str], tally: Tally) -> None:
    """The judge prompt's name (pair-v2, pair-math-v1-multi-turn ...) has no column: prompt metadata."""
    if not template:
        return
    judges = b.item(0, item_id).setdefault("metadata", {}).setdefault("judge_templates", {})
    names = judges.setdefault(judge, [])
    if template[0] not in names:
        names.append(template[0])
        tally.kept["judge template names (prompt metadata)"] += 1
