"""Sampling helpers shared by the methods that let the model write structured replies (critique,
rubric): per-sample seeds, tolerant JSON parsing of cut-off replies, and one batched retry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from backend.engines.base import Chat, Engine, EngineError, Sample, SampleParams

T = TypeVar("T")
RAW_CHARS = 300  # how much of an unparseable reply a failed verdict keeps


def derive_seed(base: int, *parts: object) -> int:
    """A 32-bit sampling seed from the method seed and the sample's coordinates: reruns sample the same,
    every (response, sample, attempt) differently.

    >>> derive_seed(7, 3, 0, 0) == derive_seed(7, 3, 0, 0)
    True
    >>> len({derive_seed(7, 3, j, a) for j in range(3) for a in range(2)})
    6
    """
    return int.from_bytes(hashlib.sha256(repr((base, *parts)).encode()).digest()[:4], "big")


def close_truncated_json(text: str) -> Any:
    """Complete a JSON object that was cut off mid-way (an open string is closed, a dangling key or
    colon gets an empty string, open brackets are closed); None when that does not give valid JSON.

    >>> close_truncated_json('{"critique": "fine", "verdict": "correct", "corrected_response": "It is 4 bec')
    {'critique': 'fine', 'verdict': 'correct', 'corrected_response': 'It is 4 bec'}
    >>> close_truncated_json('{"a": ["x", "y\\\\')
    {'a': ['x', 'y']}
    >>> close_truncated_json('{"a": 1, "b"')
    {'a': 1, 'b': ''}
    >>> close_truncated_json('{"a": tr') is None
    True
    """
    in_str = esc = False
    closers: list[str] = []
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
    s = text
    if in_str:
        s = (s[:-1] if esc else s) + '"'
    s = s.rstrip().removesuffix(",")
    tail = "".join(reversed(closers))
    for fill in ("", ' ""', ': ""'):  # after a value, after a colon, after a key
        try:
            return json.loads(s + fill + tail)
        except json.JSONDecodeError:
            continue
    return None


def parse_json_object(text: str, finish_reason: str = "stop") -> tuple[dict, bool]:
    """The JSON object in a reply and whether it had to be completed after a cut-off (finish_reason
    "length"). Text around the object (an engine without constrained decoding) is ignored.
    Raises ValueError when there is no object.

    >>> parse_json_object('Sure! {"score": 3} Hope this helps.')
    ({'score': 3}, False)
    >>> parse_json_object('{"justification": "ok", "sco', "length")
    ({'justification': 'ok', 'sco': ''}, True)
    >>> parse_json_object('Score: 3')
    Traceback (most recent call last):
    ValueError: no JSON object in the reply
    """
    s = text.strip()
    candidates = [s]
    start, end = s.find("{"), s.rfind("}")
    if 0 <= start < end:
        candidates.append(s[start:end + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj, False
    if finish_reason == "length" and start >= 0:
        obj = close_truncated_json(s[start:])
        if isinstance(obj, dict):
            return obj, True
    raise ValueError("no JSON object in the reply" + (" (cut off at max_tokens)" if finish_reason == "length" else ""))


def validation_reason(e: ValidationError) -> str:
    """A one-line reason from a pydantic error."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'reply'}: {err['msg']}" for err in e.errors())


@dataclass
class Attempt(Generic[T]):
    """The outcome of one sample after at most one retry."""

    value: T | None  # the parsed reply, None when both attempts failed
    text: str  # raw text of the attempt that was kept (the last one)
    seed: int
    attempts: int
    truncated: bool = False
    error: str | None = None


def sample_with_retry(engine: Engine, chats: list[Chat], k: int, params: SampleParams, json_schema: dict | None,
                      seed_of: Callable[[int, int, int], int],
                      parse: Callable[[Sample], tuple[T, bool]]) -> list[list[Attempt[T]]]:
    """k samples per chat in one batched engine call; the samples `parse` rejects (ValueError or pydantic
    ValidationError) are drawn once more, all in a second batched call, with new seeds.

    `seed_of(chat_index, sample_index, attempt)` gives each sample's seed; `parse(sample)` returns the
    parsed reply and whether it was completed after a cut-off. A sample the engine aborted (it is closing)
    raises EngineError like a lost server, so the scoring job fails and a rerun does the work, instead of
    storing failed verdicts that a rerun would skip.
    """

    def checked(rows: list[list[Sample]]) -> list[list[Sample]]:
        for row in rows:
            for s in row:
                if s.finish_reason == "abort":
                    raise EngineError(f"generation aborted: {s.error or 'engine closing'}")
        return rows

    def attempt(i: int, j: int, n: int, s: Sample) -> Attempt[T]:
        seed = seed_of(i, j, n - 1)
        try:
            value, truncated = parse(s)
        except (ValueError, ValidationError) as e:
            reason = validation_reason(e) if isinstance(e, ValidationError) else str(e)
            if s.finish_reason == "length" and "cut off" not in reason:
                reason += " (cut off at max_tokens)"
            return Attempt(None, s.text, seed, n, error=reason)
        return Attempt(value, s.text, seed, n, truncated=truncated)

    if not chats:
        return []
    seeds = [[seed_of(i, j, 0) for j in range(k)] for i in range(len(chats))]
    first = checked(engine.sample(chats, k, params, json_schema=json_schema, seeds=seeds))
    out = [[attempt(i, j, 1, s) for j, s in enumerate(row)] for i, row in enumerate(first)]
    redo = [(i, j) for i, row in enumerate(out) for j, a in enumerate(row) if a.value is None]
    if redo:
        again = checked(engine.sample([chats[i] for i, _ in redo], 1, params, json_schema=json_schema,
                                      seeds=[[seed_of(i, j, 1)] for i, j in redo]))
        for (i, j), row in zip(redo, again):
            out[i][j] = attempt(i, j, 2, row[0])
    for row in out:
        for a in row:
            if a.value is None:
                a.error = (f"unparseable reply after {a.attempts} attempts ({a.error}); "
                           f"raw: {a.text[:RAW_CHARS]!r}{' …' if len(a.text) > RAW_CHARS else ''}")
    return out


def sample_parse(sample: Sample, model: type[BaseModel]) -> tuple[BaseModel, bool]:
    """Parse an engine sample as a JSON object validated by `model`."""
    if sample.finish_reason == "error":
        raise ValueError(f"engine error: {sample.error or 'no reason given'}")
    obj, truncated = parse_json_object(sample.text, sample.finish_reason)
    return model.model_validate(obj), truncated


# ---------------------------------------------------------------------------------------------- method


def split_by_budget(method: Any, inp: Any, engine: Engine, chat_of: Callable[[str], Chat], max_tokens: int,
                    variants: list[str]) -> tuple[list[Any], list[Any], list[Chat]]:
    """Per response: its chat when prompt + reply budget fit the context, else failed verdicts (one per
    sample variant and the aggregate). Returns (failed verdicts, responses to judge, their chats)."""
    from backend.methods.base import context_overflow

    failed: list[Any] = []
    todo: list[Any] = []
    chats: list[Chat] = []
    for r in inp.responses:
        chat = chat_of(r.text)
        reason = context_overflow(engine, chat, max_tokens, inp.context_length)
        if reason:
            failed += [method.failed(reason, response_id=r.id, variant=v) for v in variants]
            failed.append(method.failed(reason, response_id=r.id))
        else:
            todo.append(r)
            chats.append(chat)
    return failed, todo, chats
