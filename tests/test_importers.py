"""Prompt file import: good files in every format, and every bad input named by file, line and field
with the database left unchanged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.builders import make_prompt, make_study

from storage.db import Database
from storage.importers import (
    DEFAULT_MAX_PROMPT_CHARS,
    MAX_PROMPT_CHARS_ENV,
    PromptFileError,
    import_prompts,
    max_prompt_chars_setting,
    read_prompts_file,
)
from storage.prompts import list_prompts


def jsonl(*records: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in records).encode()


def csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def write(tmp_path: Path, name: str, data: bytes | pa.Table) -> Path:
    path = tmp_path / name
    if isinstance(data, pa.Table):
        pq.write_table(data, path)
    else:
        path.write_bytes(data)
    return path


def dump(db: Database) -> list[tuple]:
    return db.fetchall("SELECT * FROM prompt ORDER BY id")


@pytest.fixture
def study_id(db: Database) -> int:
    sid = make_study(db).id
    make_prompt(db, sid, "existing", "Already here")
    return sid


# -- good files ------------------------------------------------------------------------------
def test_jsonl_prompts_messages_ids_and_metadata(db: Database, study_id: int, tmp_path: Path) -> None:
    path = write(tmp_path, "prompts.jsonl", jsonl(
        {"id": "a", "prompt": "Say hi", "reference": "hi", "category": "chat", "source": "x", "tags": [1, 2]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
         "reference": 4, "metadata": {"difficulty": "easy"}, "extra": {"nested": True}},
        {"id": 17, "prompt": "  keep my spaces \n"},
    ))
    assert import_prompts(db, study_id, path) == 3
    got = [p for p in list_prompts(db, study_id) if p.external_id != "existing"]
    assert [p.external_id for p in got] == ["a", "row-2", "17"]
    assert [p.position for p in got] == [1, 2, 3]  # after the existing prompt, in file order
    a, b, c = got
    assert [m.model_dump() for m in a.messages] == [{"role": "user", "content": "Say hi"}]
    assert (a.reference, a.category, a.metadata) == ("hi", "chat", {"source": "x", "tags": [1, 2]})
    assert [m.role for m in b.messages] == ["system", "user"]
    assert b.reference == "4"
    assert b.metadata == {"difficulty": "easy", "extra": {"nested": True}}
    assert c.messages[0].content == "  keep my spaces \n"


def test_bom_blank_lines_and_ndjson(tmp_path: Path) -> None:
    path = write(tmp_path, "p.ndjson", b"\xef\xbb\xbf" + jsonl({"prompt": "one"}, "", "   ", {"prompt": "two"}))
    got = read_prompts_file(path)
    assert [(p.external_id, p.messages[0].content) for p in got] == [("row-1", "one"), ("row-2", "two")]


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"])
def test_formula_like_text_is_imported_verbatim(db: Database, study_id: int, tmp_path: Path, text: str) -> None:
    j = write(tmp_path, "p.jsonl", jsonl({"id": "j", "prompt": text}))
    c = write(tmp_path, "p.csv", csv_bytes([["id", "prompt", "note"], ["c", text, text]]))
    import_prompts(db, study_id, j)
    import_prompts(db, study_id, c)
    got = {p.external_id: p for p in list_prompts(db, study_id)}
    assert got["j"].messages[0].content == text
    assert got["c"].messages[0].content == text
    assert got["c"].metadata == {"note": text}


def test_csv_with_bom_crlf_multiline_messages_and_metadata(db: Database, study_id: int, tmp_path: Path) -> None:
    messages = json.dumps([{"role": "system", "content": "S"}, {"role": "user", "content": "U, \"quoted\""}])
    data = "\ufeffid,prompt,messages,reference,category,lang\r\n" \
           '1,"line one\r\nline two",,,,en\r\n' \
           f'2,,"{messages.replace(chr(34), chr(34) * 2)}",ans,cat,\r\n' \
           '\r\n' \
           ',héllo ✓,,,,fr\r\n'
    path = write(tmp_path, "p.csv", data.encode())
    assert import_prompts(db, study_id, path) == 3
    got = [p for p in list_prompts(db, study_id) if p.external_id != "existing"]
    assert [p.external_id for p in got] == ["1", "2", "row-3"]
    assert got[0].messages[0].content == "line one\r\nline two"
    assert [m.model_dump() for m in got[1].messages] == json.loads(messages)
    assert (got[1].reference, got[1].category) == ("ans", "cat")
    assert [p.metadata for p in got] == [{"lang": "en"}, {"lang": ""}, {"lang": "fr"}]
    assert got[2].messages[0].content == "héllo ✓"


def test_parquet_prompt_and_messages_columns(db: Database, study_id: int, tmp_path: Path) -> None:
    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    table = pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "messages": pa.array([[{"role": "user", "content": "Hi"}],
                              [{"role": "system", "content": "S"}, {"role": "user", "content": "Yo"}]], msg),
        "score": pa.array([0.5, float("nan")]),
    })
    path = write(tmp_path, "p.parquet", table)
    assert import_prompts(db, study_id, path) == 2
    got = [p for p in list_prompts(db, study_id) if p.external_id != "existing"]
    assert [p.external_id for p in got] == ["1", "2"]
    assert [m.content for m in got[1].messages] == ["S", "Yo"]
    assert [p.metadata for p in got] == [{"score": 0.5}, {"score": None}]

    plain = write(tmp_path, "plain.parquet", pa.table({"prompt": ["a", "b"], "category": ["x", None]}))
    assert [(p.external_id, p.category) for p in read_prompts_file(plain)] == [("row-1", "x"), ("row-2", None)]


def test_size_limit_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert max_prompt_chars_setting() == DEFAULT_MAX_PROMPT_CHARS == 32_000
    path = write(tmp_path, "p.jsonl", jsonl({"prompt": "x" * 100}))
    monkeypatch.setenv(MAX_PROMPT_CHARS_ENV, "99")
    with pytest.raises(PromptFileError, match="the limit is 99"):
        read_prompts_file(path)
    assert len(read_prompts_file(path, max_prompt_chars=100)) == 1
    monkeypatch.setenv(MAX_PROMPT_CHARS_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_PROMPT_CHARS_ENV):
        max_prompt_chars_setting()


# -- bad files -------------------------------------------------------------------------------
def _parquet_truncated(tmp_path: Path) -> bytes:
    good = write(tmp_path, "full.parquet", pa.table({"prompt": [f"prompt {i}" for i in range(100)]}))
    data = good.read_bytes()
    return data[: len(data) // 2]


def _messages_line(messages: Any) -> bytes:
    return jsonl({"prompt": "fine"}, {"messages": messages})


# (file name, content, line, field, text the message must contain)
BAD: list[tuple[str, Callable[[Path], bytes | pa.Table], int, str | None, str]] = [
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, {"prompt": "b"}, '{"prompt": "c",}'), 3, None, "invalid JSON"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, '["not", "an", "object"]'), 2, None,
     "expected a JSON object"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, '"just text"'), 2, None, "got text"),
    ("prompts.jsonl", lambda _: jsonl('{"prompt": "a", "prompt": "b"}'), 1, None, "duplicate key 'prompt'"),
    ("prompts.jsonl", lambda _: b"", 0, None, "file is empty"),
    ("prompts.jsonl", lambda _: b"\n\n  \n", 0, None, "file is empty"),
    ("prompts.csv", lambda _: b"", 0, None, "file is empty"),
    ("prompts.csv", lambda _: b"id,prompt\n", 0, None, "file is empty"),
    ("prompts.parquet", lambda _: pa.table({"prompt": pa.array([], pa.string())}), 0, None, "file is empty"),
    ("prompts.csv", lambda _: csv_bytes([["id", "text"], ["1", "hello"]]), 1, "prompt",
     "no 'prompt' or 'messages' column"),
    ("prompts.csv", lambda _: csv_bytes([["prompt", "x", "x"], ["a", "b", "c"]]), 1, "x", "appears twice"),
    ("prompts.csv", lambda _: b"id,prompt\n1,a\n2,b,extra\n", 3, None, "3 fields but the header has 2"),
    ("prompts.csv", lambda _: b'id,prompt\n1,"a"b\n', 2, None, "CSV error"),
    ("prompts.jsonl", lambda _: jsonl({"id": "x", "prompt": "a"}, {"prompt": "b"}, {"id": "x", "prompt": "c"}), 3,
     "id", "duplicate id 'x' (first used on line 1)"),
    ("prompts.csv", lambda _: b"id,prompt\nx,a\ny,b\nx,c\n", 4, "id", "duplicate id 'x' (first used on line 2)"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "fine"}, {"id": "row-1", "prompt": "clash with default id"}), 2,
     "id", "duplicate id 'row-1' (first used on line 1)"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, {"id": "existing", "prompt": "b"}), 2, "id",
     "id 'existing' already exists in study 'demo'"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "ok"}) + b'{"prompt": "caf\xe9"}\n', 2, None, "not valid UTF-8"),
    ("prompts.csv", lambda _: b"prompt\nok\nok too\n\xff\xfebad\n", 4, None, "not valid UTF-8"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, {"prompt": "x" * 51}), 2, "prompt",
     "prompt has 51 characters; the limit is 50"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "system", "content": "s" * 30},
                                                 {"role": "user", "content": "u" * 30}]), 2, "messages",
     "the limit is 50"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, {"prompt": "x" * 500_000}), 2, None,
     "line is longer than 65,936 bytes"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a"}, {"prompt": ""}), 2, "prompt", "prompt is empty"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": " \n\t"}), 1, "prompt", "prompt is empty"),
    ("prompts.csv", lambda _: b'prompt\n""\n', 2, "prompt", "prompt is empty"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": 42}), 1, "prompt", "expected text, got a number"),
    ("prompts.jsonl", lambda _: jsonl({"id": "q"}), 1, "prompt", "missing"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}), 1,
     "prompt", "not both"),
    ("prompts.jsonl", lambda _: _messages_line("hello"), 2, "messages", "expected a list of {role, content} messages"),
    ("prompts.jsonl", lambda _: _messages_line([]), 2, "messages", "expected a list of {role, content} messages"),
    ("prompts.jsonl", lambda _: _messages_line(["hi"]), 2, "messages", "expected a list of {role, content} messages"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "bot", "content": "x"}]), 2, "messages",
     "role 'bot' is not one of system, user, assistant"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "user", "content": 3}]), 2, "messages",
     "content must be text"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "user"}]), 2, "messages", "missing 'content'"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "user", "content": "x", "name": "n"}]), 2, "messages",
     "unexpected key 'name'"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "user", "content": "q"},
                                                 {"role": "assistant", "content": "a"}]), 2, "messages",
     "last message must be from the user"),
    ("prompts.jsonl", lambda _: _messages_line([{"role": "system", "content": ""},
                                                 {"role": "user", "content": "q"}]), 2, "messages",
     "content is empty"),
    ("prompts.jsonl", lambda _: jsonl({"id": ["a"], "prompt": "x"}), 1, "id", "expected text or a whole number"),
    ("prompts.jsonl", lambda _: jsonl({"id": " ", "prompt": "x"}), 1, "id", "id is empty"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "x", "category": {"a": 1}}), 1, "category", "got an object"),
    ("prompts.jsonl", lambda _: jsonl({"prompt": "x", "a": 1, "metadata": {"a": 2}}), 1, "a",
     "both a column and a key of 'metadata'"),
    ("prompts.csv", lambda _: b'prompt,messages\n,"[{""role"": ""user""}"\n', 2, "messages", "not valid JSON"),
    ("prompts.parquet", lambda _: pa.table({"text": ["a"]}), 0, "prompt", "no 'prompt' or 'messages' column"),
    ("prompts.parquet", lambda _: pa.table({"prompt": [1, 2]}), 0, "prompt", "column type is int64"),
    ("prompts.parquet", lambda _: pa.table({"messages": [1]}), 0, "messages", "column type is int64"),
    ("prompts.parquet", lambda _: pa.table({"prompt": ["a", "b", "c"], "id": [[1], [2], [3]]}), 1, "id",
     "expected text or a whole number"),
    ("prompts.parquet", lambda _: pa.table({"prompt": ["a", None]}), 2, "prompt", "missing"),
    ("prompts.parquet", lambda _: b"PAR1 this is not parquet", 0, None, "not a readable Parquet file"),
    ("prompts.parquet", _parquet_truncated, 0, None, "not a readable Parquet file"),
    ("prompts.txt", lambda _: b"prompt\n", 0, None, "unknown file type '.txt'"),
    ("prompts", lambda _: b"prompt\n", 0, None, "unknown file type (no extension)"),
]


@pytest.mark.parametrize(("name", "make", "line", "field", "text"), BAD,
                         ids=[f"{i:02d}-{b[0]}-{b[4][:30]}" for i, b in enumerate(BAD)])
def test_bad_file_names_the_place_and_changes_nothing(
        db: Database, study_id: int, tmp_path: Path, name: str, make: Callable[[Path], bytes | pa.Table],
        line: int, field: str | None, text: str) -> None:
    path = write(tmp_path, name, make(tmp_path))
    before = dump(db)
    with pytest.raises(PromptFileError) as info:
        import_prompts(db, study_id, path, max_prompt_chars=50)
    e = info.value
    assert (e.path, e.line, e.field) == (str(path), line, field), str(e)
    assert text in str(e)
    unit = "row" if name.endswith(".parquet") else "line"
    where = str(path) if line == 0 else (f"{path}:{line}" if unit == "line" else f"{path} row {line}")
    assert str(e).startswith(f"{where}: " + (f"field {field!r}: " if field else ""))
    assert dump(db) == before


def test_error_message_format_and_display_name(tmp_path: Path) -> None:
    path = write(tmp_path, "upload-1234.jsonl", _messages_line(7))
    with pytest.raises(PromptFileError) as info:
        read_prompts_file(path, display_name="prompts.jsonl")
    assert str(info.value) == "prompts.jsonl:2: field 'messages': expected a list of {role, content} messages"
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="file not found") as info:
        read_prompts_file(tmp_path / "nope.jsonl")
    assert info.value.line == 0


def test_existing_id_in_other_study_is_fine(db: Database, study_id: int, tmp_path: Path) -> None:
    other = make_study(db, "other").id
    path = write(tmp_path, "p.jsonl", jsonl({"id": "existing", "prompt": "same id, other study"}))
    assert import_prompts(db, other, path) == 1


def test_unknown_study(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", jsonl({"prompt": "x"}))
    with pytest.raises(LookupError):
        import_prompts(db, 999, path)
    assert dump(db) == []
