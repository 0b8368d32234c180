"""Prompt files (JSONL, CSV, Parquet) → validated `PromptIn` rows → one transaction.

A prompts file holds one record per prompt. Each record gives either `prompt` (text) or `messages`
(a list of `{role, content}` with role system/user/assistant, the last one from the user), and
optionally `id`, `reference` and `category`; every other key or column is kept in the prompt's
`metadata` (a `metadata` object, if present, is merged in). Records without an id get `row-<n>`,
n being the record's 1-based position among the file's records, so re-reading a file gives the
same ids.

The whole file is read and validated before anything is written, so a bad file imports nothing and
the error names the place: `prompts.jsonl:7: field 'messages': expected a list of {role, content}
messages` (`file:line`; Parquet files say `file row n`).

JSONL and CSV are UTF-8; a UTF-8 byte-order mark at the start is accepted (Excel writes one), other
encodings are refused with a hint (`storage.fileio.read_lines`). Text is imported verbatim: a cell such
as `=HYPERLINK(...)` is a valid prompt.

Setting: the total characters of a prompt's messages may not exceed `DEFAULT_MAX_PROMPT_CHARS`
(32,000), overridable with the environment variable `CRITLAB_MAX_PROMPT_CHARS` or the
`max_prompt_chars` argument.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.db import Database
from storage.fileio import json_error, json_lines_hint, kind, loads, read_lines
from storage.models import ChatMessage, PromptIn
from storage.prompts import insert_prompts
from storage.studies import get_study

DEFAULT_MAX_PROMPT_CHARS = 32_000
MAX_PROMPT_CHARS_ENV = "CRITLAB_MAX_PROMPT_CHARS"

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
KNOWN_FIELDS = ("id", "prompt", "messages", "reference", "category")
ROLES = ("system", "user", "assistant")

_MESSAGES_HELP = "expected a list of {role, content} messages"


class PromptFileError(ValueError):
    """A prompts file that cannot be imported, with where it went wrong.

    `line` is the 1-based file line (JSONL, CSV; the CSV header is line 1), the 1-based row
    (Parquet), or 0 when the problem is the file as a whole.

    >>> str(PromptFileError("prompts.jsonl", 7, "messages", "expected a list of {role, content} messages"))
    "prompts.jsonl:7: field 'messages': expected a list of {role, content} messages"
    >>> str(PromptFileError("p.parquet", 3, None, "bad", unit="row"))
    'p.parquet row 3: bad'
    >>> str(PromptFileError("p.csv", 0, None, "file is empty (no prompts)"))
    'p.csv: file is empty (no prompts)'
    """

    def __init__(self, path: str | os.PathLike[str], line: int, field: str | None, detail: str, *,
                 unit: str = "line", display_name: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.detail = detail
        self.unit = unit
        name = display_name or self.path
        where = name if not line else (f"{name}:{line}" if unit == "line" else f"{name} {unit} {line}")
        super().__init__(f"{where}: {f'field {field!r}: ' if field else ''}{detail}")


def max_prompt_chars_setting() -> int:
    """The prompt size limit: `CRITLAB_MAX_PROMPT_CHARS` if set, else `DEFAULT_MAX_PROMPT_CHARS`."""
    raw = os.environ.get(MAX_PROMPT_CHARS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PROMPT_CHARS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{MAX_PROMPT_CHARS_ENV}={raw!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{MAX_PROMPT_CHARS_ENV} must be at least 1, not {value}")
    return value


def max_line_bytes(max_prompt_chars: int) -> int:
    """Longest JSONL/CSV line read before giving up on the file.

    Generous (JSON escapes can take 6 bytes per character, and metadata rides along) but bounded,
    so one runaway line cannot exhaust memory.

    >>> max_line_bytes(32_000)
    321536
    """
    return 8 * max_prompt_chars + 65_536


# -- public API ------------------------------------------------------------------------------
def read_prompts_file(path: str | os.PathLike[str], *, max_prompt_chars: int | None = None,
                      display_name: str | None = None) -> list[PromptIn]:
    """Read and validate a whole prompts file; raises `PromptFileError` at the first problem.

    `max_prompt_chars=None` uses the setting (`max_prompt_chars_setting()`); `display_name` replaces
    the path in messages (e.g. an upload's original name).
    """
    return [p for _, p in _read(path, max_prompt_chars, display_name)]


def import_prompts(db: Database, study_id: int, path: str | os.PathLike[str], *,
                   max_prompt_chars: int | None = None, display_name: str | None = None) -> int:
    """Validate the whole file, then insert every prompt in one transaction; returns the count.

    An id that already exists in the study is an error naming its line, and nothing is imported.
    """
    study = get_study(db, study_id)
    located = _read(path, max_prompt_chars, display_name)
    with db.write() as cur:
        # Checked inside the transaction that inserts, so no concurrent import can slip in between.
        taken = {r[0] for r in cur.execute(
            "SELECT external_id FROM prompt WHERE study_id = ? AND list_contains(?, external_id)",
            [study_id, [p.external_id for _, p in located]]).fetchall()}
        for line, p in located:
            if p.external_id in taken:
                raise PromptFileError(path, line, "id", f"id {p.external_id!r} already exists in study "
                                      f"{study.name!r}", unit=_unit(path), display_name=display_name)
        return insert_prompts(db, study_id, [p for _, p in located])


# -- reading ---------------------------------------------------------------------------------
def _unit(path: str | os.PathLike[str]) -> str:
    return "row" if Path(path).suffix.lower() == ".parquet" else "line"


def _read(path: str | os.PathLike[str], max_prompt_chars: int | None,
          display_name: str | None) -> list[tuple[int, PromptIn]]:
    limit = max_prompt_chars_setting() if max_prompt_chars is None else max_prompt_chars
    suffix = Path(path).suffix.lower()
    unit = "row" if suffix == ".parquet" else "line"

    def err(line: int, field: str | None, detail: str) -> PromptFileError:
        return PromptFileError(path, line, field, detail, unit=unit, display_name=display_name)

    fmt = FORMATS.get(suffix)
    if fmt is None:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        raise err(0, None, f"unknown file type {shown}: use .jsonl, .ndjson, .csv or .parquet")
    if not Path(path).is_file():
        raise err(0, None, "file not found" if not Path(path).exists() else "not a file")

    out: list[tuple[int, PromptIn]] = []
    first_line: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if fmt == "parquet":
            records = _parquet_records(path, err)
        else:
            f = stack.enter_context(open(path, "rb"))
            records = (_jsonl_records if fmt == "jsonl" else _csv_records)(f, err, limit)
        stack.callback(records.close)  # an error below must not leave the reader open
        for line, rec in records:
            prompt = _to_prompt(rec, len(out) + 1, lambda field, detail, at=line: err(at, field, detail), limit)
            if prompt.external_id in first_line:
                raise err(line, "id", f"duplicate id {prompt.external_id!r} (first used "
                          f"{'on line' if unit == 'line' else 'in row'} {first_line[prompt.external_id]})")
            first_line[prompt.external_id] = line
            out.append((line, prompt))
    if not out:
        raise err(0, None, "file is empty (no prompts)")
    return out


Err = Callable[[int, str | None, str], PromptFileError]


def _lines(f: IO[bytes], err: Err, max_chars: int) -> Iterator[tuple[int, str]]:
    """(line number, decoded line) with its line ending; a line over `max_line_bytes` is an error."""
    return read_lines(f, err, max_line_bytes(max_chars), f", too long for a prompt of at most {max_chars:,} "
                      f"characters (set {MAX_PROMPT_CHARS_ENV} to change the limit)")


def _jsonl_records(f: IO[bytes], err: Err, max_chars: int) -> Iterator[tuple[int, dict[str, Any]]]:
    return json_objects(_lines(f, err, max_chars), err, '{"prompt": "..."}')


def json_objects(lines: Iterable[tuple[int, str]], err: Err, example: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each non-blank line of a JSONL file as (line number, object); `err` naming the line for text that is not
    JSON or not an object (`example` shows what one looks like; the first line also hints at a JSON array)."""
    first = True
    for lineno, text in lines:
        if not text.strip():
            continue
        hint = json_lines_hint(text) if first else ""
        first = False
        try:
            rec = loads(text)
        except ValueError as e:
            raise err(lineno, None, f"invalid JSON: {hint or json_error(e)}") from None
        if not isinstance(rec, dict):
            raise err(lineno, None, f"expected a JSON object like {example}, got {kind(rec)}"
                      + (f"; {hint}" if hint else ""))
        yield lineno, rec


def _csv_records(f: IO[bytes], err: Err, max_chars: int) -> Iterator[tuple[int, dict[str, Any]]]:
    if csv.field_size_limit() < max_line_bytes(max_chars):
        # Process-wide, so only ever raised; the default (128 KiB) is below a raised prompt limit.
        csv.field_size_limit(max_line_bytes(max_chars))
    reader = csv.reader((text for _, text in _lines(f, err, max_chars)), strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise err(start, None, f"CSV error: {e}") from None
        if not row:  # a blank line
            continue
        if header is None:
            header = [h.strip() or f"column_{i}" for i, h in enumerate(row, 1)]
            for i, h in enumerate(header):
                if h in header[:i]:
                    raise err(start, h, f"column {h!r} appears twice in the header")
            if "prompt" not in header and "messages" not in header:
                raise err(start, "prompt", "no 'prompt' or 'messages' column (the header has: "
                          f"{', '.join(header)})")
            continue
        if len(row) != len(header):
            raise err(start, None, f"row has {len(row)} fields but the header has {len(header)} "
                      "(a missing or extra quote?)")
        rec: dict[str, Any] = {}
        for h, v in zip(header, row):
            if v == "" and (h in ("id", "reference", "category", "messages") or
                            (h == "prompt" and "messages" in header)):
                continue  # an empty cell means "not given" (with both columns, each row fills one)
            if h == "messages":
                try:
                    v = loads(v)
                except ValueError as e:
                    raise err(start, "messages", f"not valid JSON ({json_error(e)}); {_MESSAGES_HELP}") from None
            rec[h] = v
        yield start, rec


def _parquet_records(path: str | os.PathLike[str], err: Err) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise err(0, None, f"not a readable Parquet file (truncated or corrupt?): {e}") from None
    with contextlib.closing(pf):
        yield from _parquet_rows(pf, err)


def _parquet_rows(pf: pq.ParquetFile, err: Err) -> Iterator[tuple[int, dict[str, Any]]]:
    schema = pf.schema_arrow
    names = schema.names
    if "prompt" not in names and "messages" not in names:
        raise err(0, "prompt", f"no 'prompt' or 'messages' column (columns: {', '.join(names) or 'none'})")
    if "prompt" in names and not _is_text(schema.field("prompt").type):
        raise err(0, "prompt", f"column type is {schema.field('prompt').type}; expected string")
    if "messages" in names:
        t = schema.field("messages").type
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        if not (_is_text(t) or (is_list and pa.types.is_struct(t.value_type))):
            raise err(0, "messages", f"column type is {t}; {_MESSAGES_HELP} (list<struct<role, content>>) or JSON text")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                row += 1
                if isinstance(rec.get("messages"), str):
                    try:
                        rec["messages"] = loads(rec["messages"])
                    except ValueError as e:
                        raise err(row, "messages", f"not valid JSON ({json_error(e)}); {_MESSAGES_HELP}") from None
                yield row, _jsonable(rec)
    except (pa.ArrowException, OSError) as e:
        raise err(row + 1, None, f"not a readable Parquet file (truncated or corrupt?): {e}") from None


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))


def _jsonable(v: Any) -> Any:
    """Make a Parquet value storable as strict JSON (NaN → null, bytes → text).

    >>> _jsonable({"x": float("nan"), "b": b"hi", "l": (1, 2.5)})
    {'x': None, 'b': 'hi', 'l': [1, 2.5]}
    """
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


# -- validating one record -------------------------------------------------------------------
def _text_or_number(v: Any, field: str, fail: Callable[[str, str], PromptFileError]) -> str | None:
    """ids, references and categories: text, or a number written as text (e.g. a numeric answer)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and field != "id":
        return str(v)
    want = "text or a whole number" if field == "id" else "text or a number"
    raise fail(field, f"expected {want}, got {kind(v)}")


def _messages(v: Any, fail: Callable[[str, str], PromptFileError]) -> list[ChatMessage]:
    if not isinstance(v, list) or not v or not all(isinstance(m, dict) for m in v):
        raise fail("messages", _MESSAGES_HELP)
    out = []
    for i, m in enumerate(v, 1):
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            raise fail("messages", f"message {i}: unexpected key {extra[0]!r} (a message has only role and content)")
        for key in ("role", "content"):
            if key not in m:
                raise fail("messages", f"message {i}: missing {key!r}; {_MESSAGES_HELP}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise fail("messages", f"message {i}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise fail("messages", f"message {i}: content must be text, got {kind(content)}")
        if not content.strip():
            raise fail("messages", f"message {i} ({role}): content is empty")
        out.append(ChatMessage(role=role, content=content))
    if out[-1].role != "user":
        raise fail("messages", f"the last message must be from the user (it is from the {out[-1].role})")
    return out


def _to_prompt(rec: dict[str, Any], ordinal: int, fail: Callable[[str, str], PromptFileError],
               max_chars: int) -> PromptIn:
    has_prompt = rec.get("prompt") is not None
    has_messages = rec.get("messages") is not None
    if has_prompt and has_messages:
        raise fail("prompt", "give either 'prompt' or 'messages', not both")
    if has_prompt:
        text = rec["prompt"]
        if not isinstance(text, str):
            raise fail("prompt", f"expected text, got {kind(text)}")
        if not text.strip():
            raise fail("prompt", "prompt is empty")
        messages = [ChatMessage(role="user", content=text)]  # verbatim: no stripping, no CSV-injection escaping
        field = "prompt"
    elif has_messages:
        messages = _messages(rec["messages"], fail)
        field = "messages"
    else:
        raise fail("prompt", "missing: give 'prompt' (text) or 'messages' (a list of {role, content})")
    size = sum(len(m.content) for m in messages)
    if size > max_chars:
        raise fail(field, f"prompt has {size:,} characters; the limit is {max_chars:,} "
                   f"(set {MAX_PROMPT_CHARS_ENV} to change it)")

    external_id = _text_or_number(rec.get("id"), "id", fail)
    if external_id is not None and not external_id.strip():
        raise fail("id", "id is empty")
    reference = _text_or_number(rec.get("reference"), "reference", fail)
    category = _text_or_number(rec.get("category"), "category", fail)

    base = rec.get("metadata")
    metadata: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    for k, v in rec.items():
        if k in KNOWN_FIELDS or (k == "metadata" and isinstance(base, dict)):
            continue
        if k in metadata:
            raise fail(k, f"{k!r} is both a column and a key of 'metadata'")
        metadata[k] = v
    return PromptIn(external_id=external_id if external_id is not None else f"row-{ordinal}",
                    messages=messages, reference=reference, category=category, metadata=metadata)
