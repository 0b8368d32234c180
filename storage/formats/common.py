"""What every reader shares: streaming JSON records with their line numbers, the counts behind the
summary line, and a builder that groups one-verdict-per-record formats into judgments-file items.

Readers turn another tool's records into the items `storage.import_judgments` validates and stores
(docs/formats.md, "Judgments files"), so the storage mapping, the duplicate checks and the single
transaction are the same for every format. Files are read a line at a time (a JSON array a record at a
time), never whole; what is held is the mapped data, deduplicated.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.fileio import json_error, kind, loads, read_lines
from storage.import_judgments import MAX_LINE_BYTES, WINNER_WORDS, JudgmentFileError


@dataclass
class Source:
    """The file being read, and how its errors are named (`file:line: field 'x': detail`)."""

    path: str | os.PathLike[str]
    display_name: str | None = None

    def err(self, line: int, field: str | None, detail: str) -> JudgmentFileError:
        return JudgmentFileError(self.path, line, field, detail, display_name=self.display_name)


@dataclass
class Tally:
    """Counts for the summary line: what was mapped onto critlab's tables, what was kept aside in
    metadata (critlab has no column for it), and what was deliberately not used (valid source data)."""

    mapped: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """
        >>> t = Tally(); t.mapped["human votes"] += 3; t.kept["judge explanations"] += 1
        >>> t.line()
        'mapped: 3 human votes; kept aside in metadata: 1 judge explanations; ignored: nothing'
        """
        def part(c: Counter[str]) -> str:
            return ", ".join(f"{n} {what}" for what, n in c.items() if n) or "nothing"
        return f"mapped: {part(self.mapped)}; kept aside in metadata: {part(self.kept)}; ignored: {part(self.ignored)}"

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"mapped": dict(self.mapped), "kept_aside": dict(self.kept), "ignored": dict(self.ignored)}


# -- records ---------------------------------------------------------------------------------------
def jsonl_records(src: Source) -> Iterator[tuple[int, Any]]:
    """(line, value) of a JSON Lines file, blank lines skipped."""
    with open(src.path, "rb") as f:
        for line, text in read_lines(f, src.err, MAX_LINE_BYTES):
            if not text.strip():
                continue
            try:
                yield line, loads(text)
            except ValueError as e:
                raise src.err(line, None, f"invalid JSON: {json_error(e)}") from None


_TOKENS = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|[\[\]{}]')  # a string (a line never splits one), or a bracket


def json_records(src: Source) -> Iterator[tuple[int, Any]]:
    """(line where it starts, value) of each element of a top-level JSON array, or of each line of a
    JSON Lines file (told apart by the first character). Arrays are read a line at a time: a record is
    parsed once its closing bracket is seen, so a large export never sits in memory whole."""
    p = Path(src.path)
    if not p.is_file():
        raise src.err(0, None, "file not found" if not p.exists() else "not a file")
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        yield from jsonl_records(src)
        return
    yield from _array_records(src)


def _array_records(src: Source) -> Iterator[tuple[int, Any]]:
    depth = 0  # 0 before the array, 1 between its elements, deeper inside one
    closed = False
    pending: list[str] = []
    start_line = 0
    with open(src.path, "rb") as f:
        for line, text in read_lines(f, src.err, MAX_LINE_BYTES):
            pos = 0  # where the current element's text starts on this line
            for m in _TOKENS.finditer(text):
                tok = m.group()
                if tok.startswith('"'):
                    if depth == 1:
                        raise src.err(line, None, "expected an object in the array, got text")
                    continue
                between = text[pos:m.start()] if depth <= 1 else ""
                if depth <= 1 and between.strip(" \t\r\n,"):
                    raise src.err(line, None, f"expected an object in the array, got {between.strip()[:20]!r}")
                if closed:
                    raise src.err(line, None, "text after the end of the top-level array")
                if tok == "[" and depth == 0:
                    depth, pos = 1, m.end()
                elif tok == "]" and depth == 1:
                    depth, closed, pos = 0, True, m.end()
                elif depth == 1 and tok != "{":
                    raise src.err(line, None, f"expected an object in the array, got {kind([])}")
                elif tok in "[{":
                    if depth == 1:
                        start_line, pending, pos = line, [], m.start()
                    depth += 1
                else:
                    depth -= 1
                    if depth == 1:
                        pending.append(text[pos:m.end()])
                        pos = m.end()
                        body = "".join(pending)
                        pending = []
                        try:
                            yield start_line, loads(body)
                        except ValueError as e:
                            raise src.err(start_line, None, f"invalid JSON: {json_error(e)}") from None
            if depth > 1:
                pending.append(text[pos:])
            elif not closed and text[pos:].strip(" \t\r\n,") and depth == 1:
                raise src.err(line, None, f"expected an object in the array, got {text[pos:].strip()[:20]!r}")
    if not closed:
        raise src.err(start_line, None, "the JSON array is not closed (the file is cut short?)")


def need(rec: dict[str, Any], key: str, types: type | tuple[type, ...], src: Source, line: int,
         what: str, *, optional: bool = False, at: str | None = None) -> Any:
    """`rec[key]` if it has the expected type, else an error naming the source field."""
    name = at or key
    if key not in rec or rec[key] is None:
        if optional:
            return None
        raise src.err(line, name, f"missing ({what})")
    v = rec[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise src.err(line, name, f"expected {what}, got {kind(v)}")
    if not isinstance(v, types):
        raise src.err(line, name, f"expected {what}, got {kind(v)}")
    if isinstance(v, str) and not v.strip():
        raise src.err(line, name, "must not be empty")
    return v


def text_id(text: str, prefix: str) -> str:
    """A stable item id for a prompt known only by its text.

    >>> text_id("Hello", "arena")
    'arena:185f8db32271'
    """
    return f"{prefix}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


# -- grouping records into items -------------------------------------------------------------------
@dataclass
class _Item:
    line: int
    rec: dict[str, Any]
    by_text: dict[tuple[str | None, str], str] = field(default_factory=dict)
    seen: set[tuple] = field(default_factory=set)


class ItemBuilder:
    """Items assembled from many records: one per item id (first line kept for errors), responses
    deduplicated by (model, text), judgments appended; a repeat of a judge's verdict on one target is
    refused (`judgment` returns False) so the caller can count it."""

    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}

    def item(self, line: int, item_id: str, *, prompt: str | None = None,
             messages: list[dict[str, str]] | None = None, metadata: dict[str, Any] | None = None,
             category: str | None = None) -> dict[str, Any]:
        it = self.items.get(item_id)
        if it is None:
            rec: dict[str, Any] = {"item_id": item_id, "responses": [], "judgments": []}
            if messages is not None:
                rec["messages"] = messages
            else:
                rec["prompt"] = prompt
            if category is not None:
                rec["category"] = category
            if metadata:
                rec["metadata"] = metadata
            it = self.items[item_id] = _Item(line, rec)
        return it.rec

    def response(self, item_id: str, text: str, model: str | None, metadata: dict[str, Any] | None = None) -> str:
        """The item's response id for this text by this model (added the first time)."""
        it = self.items[item_id]
        key = (model, text)
        if key in it.by_text:
            return it.by_text[key]
        taken = set(it.by_text.values())
        base = model or "r"
        rid = base if base not in taken and base not in WINNER_WORDS and model else None
        k = 2
        while rid is None or rid in taken:
            rid = f"{base}#{k}" if model else f"r{len(taken) + k - 1}"
            k += 1
        it.by_text[key] = rid
        resp: dict[str, Any] = {"id": rid, "text": text}
        if model is not None:
            resp["model"] = model
        if metadata:
            resp["metadata"] = metadata
        it.rec["responses"].append(resp)
        return rid

    def judgment(self, item_id: str, j: dict[str, Any]) -> bool:
        """Append a judgment unless the same judge already gave one of this type on this target."""
        it = self.items[item_id]
        if j["type"] == "pairwise":
            target: Any = tuple(j["shown"]) if j["judge_kind"] == "model" else frozenset(j["shown"])
        elif "response" in j:
            target = (j["response"], j.get("variant"))
        else:
            target = "item"
        key = (j["judge_kind"], j["judge"], j["type"], j.get("stage", "blind"), target)
        if key in it.seen:
            return False
        it.seen.add(key)
        it.rec["judgments"].append(j)
        return True

    def located(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for it in self.items.values():
            yield it.line, it.rec
