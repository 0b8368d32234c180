"""Chatbot Arena battles (read): `model_a, model_b, winner, judge, conversation_a, conversation_b, turn,
anony, language, tstamp` (+ `question_id`, moderation tags), one battle per record, JSON Lines or a JSON
array.

A prompt is identified by its first user turn's text (two battles that opened with the same message are
one prompt, id `arena:<sha256 prefix>`); each model's first reply is a response (the same text by the same
model is one response); the vote is a human pairwise judgment by `judge` (else `arena-battle-<question_id>`).
A multi-turn battle's vote covers the whole conversation: it is stored on the first replies and the later
turns are kept in the responses' metadata. Everything else of a battle goes to the prompt's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storage.formats.common import ItemBuilder, Source, Tally, json_records, need, text_id
from storage.formats.fastchat import HUMAN_WINNERS, _conversation

BATTLE_KEYS = ("model_a", "model_b", "winner", "judge", "conversation_a", "conversation_b", "turn")


def read(src: Source, tally: Tally) -> Iterator[tuple[int, dict[str, Any]]]:
    b = ItemBuilder()
    for line, rec in json_records(src):
        if not isinstance(rec, dict):
            raise src.err(line, None, "expected a JSON object (one battle)")
        turn = need(rec, "turn", int, src, line, "the number of turns, 1 or more")
        if turn < 1:
            raise src.err(line, "turn", f"expected 1 or more, got {turn}")
        models = [need(rec, f"model_{s}", str, src, line, "a model name") for s in "ab"]
        winner = rec.get("winner")
        if winner not in HUMAN_WINNERS:
            raise src.err(line, "winner", f"expected one of {', '.join(HUMAN_WINNERS)}, got {winner!r}")
        convs = [_conversation(rec, f"conversation_{s}", 1, src, line) for s in "ab"]
        first = convs[0][0]["content"]
        if convs[1][0]["content"] != first:
            raise src.err(line, "conversation_b[0].content", "the two sides of a battle start with different "
                          "user messages")
        if not first.strip():
            raise src.err(line, "conversation_a[0].content", "the first user message is empty")
        judge = rec.get("judge")
        if judge is None:
            judge = f"arena-battle-{rec.get('question_id', line)}"
        elif not isinstance(judge, str) or not judge.strip():
            raise src.err(line, "judge", "expected the voter's id as text")
        item_id = text_id(first, "arena")
        b.item(line, item_id, prompt=first, metadata={"battles": []})
        ids = []
        for m, conv in zip(models, convs):
            later = conv[2:]
            if later:
                tally.kept["later turns of a multi-turn battle (response metadata)"] += 1
            ids.append(b.response(item_id, conv[1]["content"], m, {"later_turns": later} if later else None))
        w = HUMAN_WINNERS[winner]
        j = {"judge": judge, "judge_kind": "human", "type": "pairwise", "shown": ids,
             "winner": ids[w] if isinstance(w, int) else w}
        if not b.judgment(item_id, j):
            tally.ignored["repeat votes of one voter on one pair (the first is kept)"] += 1
            continue
        tally.mapped["battle votes"] += 1
        battle = {k: v for k, v in rec.items() if k not in BATTLE_KEYS}
        battle.update(judge=judge, turn=turn, shown=ids)
        b.item(line, item_id)["metadata"]["battles"].append(battle)
        tally.kept["battle details: id, anony, language, tstamp, tags (prompt metadata)"] += 1
    yield from b.located()
