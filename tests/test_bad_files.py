"""Malformed prompt and judgment files: each is refused with one message naming file:line (or row) and
field, and leaves every table of the database exactly as it was, both through the storage function and
through the admin operation the CLI and the server call (which would otherwise create the study).

Formula-like text (`=HYPERLINK(...)`, `+cmd|...`) is valid input: it is stored and exported verbatim.
critlab writes no CSV (exports are JSONL / Parquet, cards Markdown, reports Markdown / HTML / JSON), so
no output can turn such a cell into a spreadsheet formula; the last tests hold that in place.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.services.context import AppContext, ServiceError
from app.services.ops import run_op
from storage import annotators
from storage.db import Database
from storage.export import ExportOptions, export_dataset
from storage.export.files import pseudonym_salt
from storage.export_judgments import export_judgments
from storage.import_judgments import import_judgments
from storage.importers import PromptFileError, import_prompts
from storage.studies import get_study
from tests.builders import label, make_responses, make_run

ROOT = Path(__file__).resolve().parents[1]
BOM = b"\xef\xbb\xbf"
FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]


# -- helpers ---------------------------------------------------------------------------------------
def jsonl(*records: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in records).encode()


def csv_bytes(rows: list[list[str]]) -> bytes:
    # The default "\r\n" terminator also makes the writer quote cells holding a lone "\r" (as spreadsheets do).
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def dump_all(db: Database) -> dict[str, list[tuple]]:
    """Every table of the database, rows in a fixed order: what "unchanged" is checked against."""
    tables = [r[0] for r in db.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name")]
    assert {"prompt", "response", "judgment", "study", "export_run"} <= set(tables)
    return {t: db.fetchall(f'SELECT * FROM "{t}" ORDER BY ALL') for t in tables}


ITEM: dict[str, Any] = {
    "item_id": "q1", "prompt": "What is 2 + 2?",
    "responses": [{"id": "r1", "text": "4"}, {"id": "r2", "text": "5"}],
    "judgments": [{"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"], "winner": "r1"},
                  {"judge": "ann1", "judge_kind": "human", "type": "likert", "response": "r2", "score": 2,
                   "scale": [1, 7]}]}


def item(item_id: str = "q1", **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(ITEM), "item_id": item_id, **changes}


def judged(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    rec = item("q2")
    change(rec)
    return rec


def populate(db: Database, work: Path) -> None:
    """Rows in most tables (study, prompt, response, judgment, annotator, export_run, settings,
    generation_run), so "unchanged" is checked against real content, not empty tables."""
    ctx = AppContext(db=db)
    (work / "p.jsonl").write_bytes(jsonl({"id": "existing", "prompt": "Already here"}))
    run_op(ctx, "cli", "import_prompts", {"study": "demo", "path": str(work / "p.jsonl")})
    (work / "j.jsonl").write_bytes(jsonl(item("q0")))
    run_op(ctx, "cli", "import_judgments", {"study": "demo", "path": str(work / "j.jsonl")})
    sid = get_study(db, "demo").id
    pid = db.fetchval("SELECT id FROM prompt WHERE external_id = 'existing'")
    rids = make_responses(db, pid, ["a", "b"], run_id=make_run(db, sid))
    label(db, sid, pid, "ann", rids[0], {rids[0]: 5, rids[1]: 2})
    annotators.add_annotator(db, "ann", "annotator", "ann-pass-12")
    pseudonym_salt(db)
    export_judgments(db, "demo", work / "out.jsonl")


@pytest.fixture(scope="module")
def seeded_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("seed")
    db = Database(work / "seeded.duckdb")
    try:
        populate(db, work)
    finally:
        db.close()  # checkpointed: one self-contained file to copy per test
    return work / "seeded.duckdb"


@pytest.fixture
def seeded(seeded_file: Path, tmp_path: Path) -> Iterator[AppContext]:
    path = tmp_path / "seeded.duckdb"
    shutil.copyfile(seeded_file, path)
    db = Database(path)
    try:
        yield AppContext(db=db)
    finally:
        db.close()


# -- the table of bad files --------------------------------------------------------------------------
# (id, importer, file name, content, line (0: the file as a whole), field, words of the message)
Case = tuple[str, str, str, Callable[[], bytes], int, str | None, str]
P, J = "prompts", "judgments"

CASES: list[Case] = [
    # broken JSON, and whole-file JSON documents where JSON Lines are expected
    ("p-broken-json", P, "p.jsonl", lambda: jsonl({"prompt": "a"}, '{"prompt": "b",'), 2, None, "invalid JSON"),
    ("p-json-array", P, "p.jsonl", lambda: b'[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]\n', 1, None,
     "looks like one JSON array"),
    ("p-pretty-object", P, "p.jsonl", lambda: b'{\n  "prompt": "a"\n}\n', 1, None, "must be on one line"),
    ("j-truncated-last-line", J, "j.jsonl", lambda: jsonl(item(), '{"item_id": "q2", "prompt": "wh'), 2, None,
     "invalid JSON"),
    ("j-json-array", J, "j.jsonl", lambda: b"[" + json.dumps(item()).encode() + b"]\n", 1, None,
     "got a list; the file looks like one JSON array"),
    # wrong types
    ("p-prompt-number", P, "p.jsonl", lambda: jsonl({"prompt": 42}), 1, "prompt", "expected text, got a number"),
    ("p-id-list", P, "p.jsonl", lambda: jsonl({"prompt": "a"}, {"id": ["x"], "prompt": "b"}), 2, "id",
     "expected text or a whole number, got a list"),
    ("j-score-text", J, "j.jsonl", lambda: jsonl(item(), judged(lambda r: r["judgments"][1].update(score="2"))),
     2, "judgments[1].score", "valid number, got text"),
    ("j-responses-object", J, "j.jsonl", lambda: jsonl(item(responses={"r1": "4"})), 1, "responses",
     "valid list, got an object"),
    # missing fields
    ("p-no-prompt", P, "p.jsonl", lambda: jsonl({"id": "q", "category": "x"}), 1, "prompt", "missing"),
    ("j-no-responses", J, "j.jsonl", lambda: jsonl({k: v for k, v in item().items() if k != "responses"}), 1,
     "responses", "missing"),
    ("j-no-winner", J, "j.jsonl", lambda: jsonl(judged(lambda r: r["judgments"][0].pop("winner"))), 1,
     "judgments[0].winner", "missing"),
    # duplicate ids: in the file, and against the study
    ("p-duplicate-id", P, "p.jsonl", lambda: jsonl({"id": "x", "prompt": "a"}, {"id": "y", "prompt": "b"},
                                                   {"id": "x", "prompt": "c"}), 3, "id",
     "duplicate id 'x' (first used on line 1)"),
    ("p-id-in-study", P, "p.csv", lambda: csv_bytes([["id", "prompt"], ["new", "a"], ["existing", "b"]]), 3, "id",
     "id 'existing' already exists in study"),
    ("j-duplicate-item", J, "j.jsonl", lambda: jsonl(item("a"), item("b"), item("a")), 3, "item_id",
     "duplicate item_id 'a' (first used on line 1)"),
    ("j-item-in-study", J, "j.jsonl", lambda: jsonl(item("fresh"), item("q0")), 2, "item_id",
     "item_id 'q0' already exists in study"),
    ("j-duplicate-response", J, "j.jsonl",
     lambda: jsonl(item(responses=[{"id": "r1", "text": "4"}, {"id": "r1", "text": "5"}], judgments=[])), 1,
     "responses[1].id", "duplicate response id 'r1'"),
    # encodings: Latin-1, UTF-16 with and without a byte-order mark, a BOM inside the file
    ("p-latin1", P, "p.jsonl", lambda: '{"prompt": "ok"}\n{"prompt": "café"}\n'.encode("latin-1"), 2, None,
     "not valid UTF-8 (byte 0xe9 at byte 16 of the line; in Latin-1/Windows-1252 that is 'é')"),
    ("p-csv-latin1", P, "p.csv", lambda: "id,prompt\n1,naïve\n".encode("latin-1"), 2, None, "not valid UTF-8"),
    ("p-utf16-bom", P, "p.jsonl", lambda: '{"prompt": "a"}\n'.encode("utf-16"), 1, None,
     "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"),
    ("p-csv-utf16-bom", P, "p.csv", lambda: "id,prompt\n1,a\n".encode("utf-16"), 1, None, "UTF-16"),
    ("p-utf16le-no-bom", P, "p.jsonl", lambda: '{"prompt": "a"}\n'.encode("utf-16-le"), 1, None,
     "NUL byte (0x00) at byte 2 of the line: the file looks like UTF-16"),
    ("j-latin1", J, "j.jsonl", lambda: json.dumps(item(prompt="Grüße"), ensure_ascii=False).encode("latin-1"), 1,
     None, "not valid UTF-8"),
    ("j-utf16-bom", J, "j.jsonl", lambda: json.dumps(item()).encode("utf-16"), 1, None, "UTF-16"),
    ("j-utf32-bom", J, "j.jsonl", lambda: json.dumps(item()).encode("utf-32"), 1, None, "UTF-32"),
    ("p-bom-mid-file", P, "p.jsonl", lambda: BOM + jsonl({"prompt": "a"}) + BOM + jsonl({"prompt": "b"}), 2, None,
     "byte-order mark in the middle of the file"),
    # text JSON can escape but UTF-8 (and so the database) cannot hold; numbers a double cannot hold
    ("p-lone-surrogate", P, "p.jsonl", lambda: b'{"prompt": "half \\ud800 a pair"}\n', 1, None,
     "\\ud800, half of a UTF-16 surrogate pair"),
    ("j-lone-surrogate", J, "j.jsonl", lambda: jsonl(item()).replace(b'"text": "5"', b'"text": "\\udfff"'), 1, None,
     "surrogate"),
    ("p-number-overflow", P, "p.jsonl", lambda: b'{"prompt": "a", "weight": 1e400}\n', 1, None,
     "number 1e400 is too large"),
    ("j-score-overflow", J, "j.jsonl",
     lambda: jsonl(item()).replace(b'"score": 2', b'"score": 2e999'), 1, None, "number 2e999 is too large"),
    # gigantic lines (the prompt limit is the real default; the judgments limit is lowered, see the test)
    ("p-gigantic-line", P, "p.jsonl", lambda: jsonl({"prompt": "a"}, {"prompt": "x" * 400_000}), 2, None,
     "line is longer than 321,536 bytes"),
    ("j-gigantic-line", J, "j.jsonl", lambda: jsonl(item(), item("q2", prompt="x" * 5000)), 2, None,
     "line is longer than 4,096 bytes"),
    # empty files (a UTF-8 BOM alone is an empty file, not an error about the BOM)
    ("p-empty", P, "p.jsonl", lambda: b"", 0, None, "file is empty (no prompts)"),
    ("p-bom-only", P, "p.csv", lambda: BOM, 0, None, "file is empty (no prompts)"),
    ("p-csv-header-only", P, "p.csv", lambda: b"id,prompt\r\n", 0, None, "file is empty"),
    ("j-blank-lines", J, "j.jsonl", lambda: b"\n \n\t\n", 0, None, "file is empty (no items)"),
    # CSV
    ("p-csv-wrong-header", P, "p.csv", lambda: csv_bytes([["id", "text"], ["1", "hello"]]), 1, "prompt",
     "no 'prompt' or 'messages' column (the header has: id, text)"),
    ("p-csv-ragged", P, "p.csv", lambda: b"id,prompt\n1,a\n2,b,c\n", 3, None, "3 fields but the header has 2"),
    ("p-csv-open-quote", P, "p.csv", lambda: b'id,prompt\n1,"never closed\n', 2, None, "CSV error"),
    # Parquet: wrong schema, bad values, truncated, and binary files given as text
    ("p-parquet-int-prompt", P, "p.parquet", lambda: parquet(pa.table({"prompt": [1, 2]})), 0, "prompt",
     "column type is int64; expected string"),
    ("p-parquet-no-prompt", P, "p.parquet", lambda: parquet(pa.table({"question": ["a"]})), 0, "prompt",
     "no 'prompt' or 'messages' column (columns: question)"),
    ("p-parquet-message-keys", P, "p.parquet",
     lambda: parquet(pa.table({"messages": [[{"role": "user", "text": "a"}]]})), 1, "messages",
     "unexpected key 'text'"),
    ("p-parquet-null-prompt", P, "p.parquet", lambda: parquet(pa.table({"prompt": ["a", None]})), 2, "prompt",
     "missing"),
    ("p-parquet-truncated", P, "p.parquet",
     lambda: (b := parquet(pa.table({"prompt": [f"p{i}" for i in range(200)]})))[: len(b) // 2], 0, None,
     "not a readable Parquet file"),
    ("p-parquet-named-jsonl", P, "p.jsonl", lambda: parquet(pa.table({"prompt": ["a"]})), 1, None,
     "the file is a Parquet file, not text"),
    ("j-parquet", J, "j.jsonl", lambda: parquet(pa.table({"item_id": ["a"]})), 1, None, "a Parquet file"),
    ("j-gzip", J, "j.jsonl", lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 16, 1, None, "gzip-compressed"),
    ("p-xlsx", P, "p.csv", lambda: b"PK\x03\x04" + b"\x00" * 26, 1, None, "a ZIP archive (an Excel .xlsx?)"),
    # semantic checks across fields
    ("j-winner-not-shown", J, "j.jsonl", lambda: jsonl(judged(lambda r: r["judgments"][0].update(winner="r9"))), 1,
     "judgments[0].winner", "'r9' is not one of the shown responses"),
    ("j-judge-kind", J, "j.jsonl", lambda: jsonl(judged(lambda r: r["judgments"][0].update(judge_kind="bot"))), 1,
     "judgments[0].judge_kind", "must be 'human' or 'model', got 'bot'"),
]


@pytest.mark.parametrize("route", ["storage", "op"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_file_names_the_place_and_changes_no_table(seeded: AppContext, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, route: str, case: Case) -> None:
    case_id, importer, name, make, line, field, words = case
    # 64 MiB is the real judgments line limit; a lowered one tests the same code without writing 64 MiB.
    monkeypatch.setattr("storage.import_judgments.MAX_LINE_BYTES", 4096)
    db = seeded.db
    path = tmp_path / name
    path.write_bytes(make())
    before = dump_all(db)
    with pytest.raises(PromptFileError) as info:  # JudgmentFileError is one too
        if route == "storage":
            fn = import_prompts if importer == P else import_judgments
            fn(db, get_study(db, "demo").id, path)
        else:
            # The CLI's and the server's path; a study that does not exist yet must not be left behind.
            study = "demo" if "in-study" in case_id else "brand-new"
            run_op(seeded, "cli", f"import_{importer}", {"study": study, "path": str(path)})
    e = info.value
    unit = "row" if name.endswith(".parquet") else "line"
    where = str(path) if line == 0 else (f"{path}:{line}" if unit == "line" else f"{path} row {line}")
    assert str(e).startswith(f"{where}: " + (f"field {field!r}: " if field else "")), str(e)
    assert (e.path, e.line, e.field) == (str(path), line, field), str(e)
    assert words in str(e), str(e)
    assert "\n" not in str(e)  # one message, one line
    assert dump_all(db) == before


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv"])
def test_utf8_bom_at_the_start_is_accepted(db: Database, tmp_path: Path, name: str) -> None:
    # Decided: a leading UTF-8 BOM is dropped (Excel's "CSV UTF-8" and Notepad write one), not refused.
    data = jsonl({"id": "a", "prompt": "héllo"}) if name.endswith(".jsonl") else "id,prompt\na,héllo\n".encode()
    path = tmp_path / name
    path.write_bytes(BOM + data)
    assert run_op(AppContext(db=db), "cli", "import_prompts", {"study": "s", "path": str(path)})["imported"] == 1
    assert db.fetchall("SELECT external_id, messages->>'$[0].content' FROM prompt") == [("a", "héllo")]
    jpath = tmp_path / "j.jsonl"
    jpath.write_bytes(BOM + jsonl(item()))
    assert import_judgments(db, get_study(db, "s").id, jpath).items == 1


# -- formula-like text: imported verbatim, exported verbatim --------------------------------------------
def test_formula_text_round_trips_through_export_judgments(db: Database, tmp_path: Path) -> None:
    texts = {f"f{i}": t for i, t in enumerate(FORMULAS)}
    records = [{"item_id": k, "prompt": t, "category": t, "reference": t, "metadata": {"note": t},
                "responses": [{"id": "r1", "text": t, "model": t}, {"id": "r2", "text": t + " (2)"}],
                "judgments": [{"judge": "ann1", "judge_kind": "human", "type": "pairwise", "shown": ["r1", "r2"],
                               "winner": "r1", "rationale": t}]}
               for k, t in texts.items()]
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl(*records))
    sid = run_op(AppContext(db=db), "cli", "import_judgments", {"study": "f", "path": str(src)})["study"]
    out = tmp_path / "out.jsonl"
    export_judgments(db, sid, out)
    back = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert back == records  # every field, every character, in order
    # And the re-exported file imports again into a fresh study, still verbatim.
    again = run_op(AppContext(db=db), "cli", "import_judgments", {"study": "f2", "path": str(out)})
    assert again["items"] == len(records)
    out2 = tmp_path / "out2.jsonl"
    export_judgments(db, "f2", out2)
    assert out2.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("fmt", [".jsonl", ".parquet"])
def test_formula_text_round_trips_through_dpo_exports(db: Database, tmp_path: Path, fmt: str) -> None:
    # The prompts come in through a CSV file, the format a spreadsheet user would hand over.
    src = tmp_path / "prompts.csv"
    src.write_bytes(csv_bytes([["id", "prompt"], *[[f"f{i}", t] for i, t in enumerate(FORMULAS)]]))
    ctx = AppContext(db=db)
    run_op(ctx, "cli", "import_prompts", {"study": "f", "path": str(src)})
    sid = get_study(db, "f").id
    run = make_run(db, sid)
    for i, t in enumerate(FORMULAS):
        pid = db.fetchval("SELECT id FROM prompt WHERE external_id = ?", [f"f{i}"])
        rids = make_responses(db, pid, [t, "plain " + t], run_id=run)
        label(db, sid, pid, "ann", rids[0], {rids[0]: 5, rids[1]: 1})
    out = tmp_path / f"dpo{fmt}"
    export_dataset(db, "f", out, ExportOptions())
    legacy = tmp_path / f"legacy{fmt}"
    run_op(ctx, "cli", "export_dpo", {"study": "f", "out": str(legacy)})
    for path in (out, legacy):
        rows = (pq.read_table(path).to_pylist() if fmt == ".parquet"
                else [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()])
        got = {(r["prompt"][-1]["content"], r["chosen"][-1]["content"], r["rejected"][-1]["content"]) for r in rows}
        assert got == {(t, t, "plain " + t) for t in FORMULAS}, path


# -- critlab writes no CSV ---------------------------------------------------------------------------
def test_exports_refuse_csv_and_write_nothing(seeded: AppContext, tmp_path: Path) -> None:
    db = seeded.db
    before = dump_all(db)
    out = tmp_path / "out"
    for call in (lambda p: export_judgments(db, "demo", p), lambda p: export_dataset(db, "demo", p, ExportOptions()),
                 lambda p: run_op(seeded, "cli", "export_dpo", {"study": "demo", "out": str(p)}),
                 lambda p: run_op(seeded, "cli", "agreement", {"study": "demo", "format": "csv", "out": str(p),
                                                               "n_boot": 0})):
        with pytest.raises((ValueError, ServiceError), match=r"(?i)csv"):
            call(out / "x.csv")
    assert not out.exists() or not any(out.iterdir())
    assert dump_all(db) == before


# Anything that could write CSV: the stdlib writer, polars/pandas/pyarrow writers, DuckDB's COPY.
_CSV_WRITERS = re.compile(r"csv\.(writer|DictWriter)\(|\.(write_csv|to_csv|sink_csv)\(|pyarrow\.csv|"
                          r"from pyarrow import csv|FORMAT\s*'?csv\b|\bTO\s+'[^']*\.csv'",
                          re.IGNORECASE)


def test_no_module_writes_csv() -> None:
    # If this fails, a CSV output was added: neutralise cells starting with = + - @ tab or CR by a leading
    # "'" (OWASP CSV injection), test it with FORMULAS above, and then narrow this check.
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for pkg in ("app", "backend", "storage") for p in sorted((ROOT / pkg).rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if _CSV_WRITERS.search(line)]
    assert hits == []
    for writer in ("csv.writer(f)", "df.write_csv(p)", "COPY t TO 'x' (FORMAT csv)", "COPY t TO 'x.csv'"):
        assert _CSV_WRITERS.search(writer), writer  # the check can fail
    assert not _CSV_WRITERS.search("httpx.Client(headers=headers)")
