"""File plumbing the importers and exports share: strict JSON, text lines with clear encoding errors,
atomic output files, and one clear message when storage refuses a write (disk full, size limit,
read-only file system).

Encoding policy for text input (JSONL, CSV): UTF-8. A UTF-8 byte-order mark at the start of the file
is accepted and dropped (Excel's "CSV UTF-8" and Notepad write one); anywhere else it is an error,
since it usually means two files were joined. UTF-16/UTF-32 (with or without a byte-order mark),
Latin-1 and binary files are refused with a hint, never guessed at, so no text is silently altered.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

BOM = b"\xef\xbb\xbf"

# Errors a caller builds from (1-based line, field or None, detail); the line reader raises them.
LineError = Callable[[int, str | None, str], Exception]


# -- strict JSON -----------------------------------------------------------------------------------
class JsonProblem(ValueError):
    """Valid JSON syntax that critlab still refuses (duplicate keys, unrepresentable numbers or text)."""


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise JsonProblem(f"duplicate key {k!r} in a JSON object")
        obj[k] = v
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # float("1e400") is inf; stored it would be written back as `Infinity`, which is not JSON.
        raise JsonProblem(f"number {text} is too large for a 64-bit float")
    return value


# Deeper nesting than any record critlab reads; far below the depth where Python's parser gives up
# (RecursionError, which depends on how deep the caller's own stack already is).
MAX_JSON_DEPTH = 200
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')  # a whole string (its brackets skipped), or a bracket


def _too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON `text` nests arrays/objects more than `limit` deep.

    >>> _too_deep('[[["]]]]]"]]]', 3), _too_deep("[[[[]]]]", 3)
    (False, True)
    """
    if text.count("[") + text.count("{") <= limit:  # the common case: no scan
        return False
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs, parse_constant=lambda _: None, parse_float=_finite)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(v: Any) -> str | None:
    if isinstance(v, str):
        m = _SURROGATE.search(v)
        return f"\\u{ord(m.group()):04x}" if m else None
    if isinstance(v, dict):
        v = [*v.keys(), *v.values()]
    if isinstance(v, list):
        for x in v:
            found = _lone_surrogate(x)
            if found:
                return found
    return None


def loads(text: str) -> Any:
    """JSON with duplicate keys rejected, NaN/Infinity read as null, and numbers or text that strict
    JSON / UTF-8 cannot hold refused (the database stores strict JSON in UTF-8), as is nesting deeper
    than MAX_JSON_DEPTH.

    >>> loads('{"a": NaN, "b": [1]}')
    {'a': None, 'b': [1]}
    >>> loads('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    storage.fileio.JsonProblem: duplicate key 'a' in a JSON object
    >>> loads('"\\\\ud83d\\\\ude00"') == "\\U0001f600"  # a surrogate pair is one character
    True
    """
    if _too_deep(text):
        raise JsonProblem(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise JsonProblem("JSON nested too deeply to read") from None
    # Only a \\uD8xx-\\uDFxx escape can produce a surrogate (the text itself is decoded UTF-8), so the
    # walk over the value runs only for lines that have one.
    if _SURROGATE_ESCAPE.search(text):
        found = _lone_surrogate(value)
        if found:
            raise JsonProblem(f"text contains {found}, half of a UTF-16 surrogate pair, which is not a "
                              "character (UTF-8 cannot store it)")
    return value


def json_error(e: ValueError) -> str:
    """A JSON parse error as one phrase, with its column when the parser knows it.

    >>> json_error(json.JSONDecodeError("Expecting value", '{"a": 1}x', 8))
    'Expecting value (column 9)'
    >>> json_error(json.JSONDecodeError("Invalid control character at", '{"a": "b\\n', 8))
    'Invalid control character (column 9); the text ends inside a JSON value (cut short?)'
    """
    if not isinstance(e, json.JSONDecodeError):
        return str(e)
    text = f"{e.msg.removesuffix(' at')} (column {e.colno})"
    if e.pos >= len(e.doc.rstrip("\r\n")):
        text += "; the text ends inside a JSON value (cut short?)"
    return text


def kind(v: Any) -> str:
    """How a JSON value is named in error messages.

    >>> [kind(x) for x in (None, True, 3, "a", [], {})]
    ['null', 'true/false', 'a number', 'text', 'a list', 'an object']
    """
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list | tuple):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def json_lines_hint(first_line: str) -> str:
    """Why a file's first record fails when the whole file is one JSON document, else "".

    >>> json_lines_hint("[\\n")
    'the file looks like one JSON array: write one JSON object per line (JSON Lines)'
    >>> json_lines_hint("{\\n")
    'each record must be on one line (JSON Lines), not spread over several'
    >>> json_lines_hint('{"a": 1')
    ''
    """
    s = first_line.strip()
    if s.startswith("["):
        return "the file looks like one JSON array: write one JSON object per line (JSON Lines)"
    if s == "{":
        return "each record must be on one line (JSON Lines), not spread over several"
    return ""


# -- text lines ------------------------------------------------------------------------------------
_NOT_TEXT = (  # magic numbers of files people pick by mistake; checked at the start of the file
    (b"\xff\xfe\x00\x00", "UTF-32 (it starts with a UTF-32 byte-order mark); save it as UTF-8"),
    (b"\x00\x00\xfe\xff", "UTF-32 (it starts with a UTF-32 byte-order mark); save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"),
    (b"PAR1", "a Parquet file, not text"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?), not text; save it as CSV or JSON Lines"),
)


def read_lines(f: IO[bytes], err: LineError, limit: int, too_long: str = "") -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line with its line ending) of a UTF-8 file.

    A line longer than `limit` bytes is an error (`too_long` is appended to the message), so one runaway
    line cannot exhaust memory; a leading UTF-8 BOM is dropped; any other encoding is an error naming
    the line and what the bytes look like.
    """
    lineno = 0
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise err(lineno, None, f"line is longer than {limit:,} bytes{too_long}")
        if lineno == 1:
            for magic, what in _NOT_TEXT:
                if raw.startswith(magic):
                    raise err(lineno, None, f"the file is {what}")
            raw = raw.removeprefix(BOM)
        elif raw.startswith(BOM):
            raise err(lineno, None, "a UTF-8 byte-order mark in the middle of the file (were two files joined?); "
                      "remove it")
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise err(lineno, None, f"a NUL byte (0x00) at byte {nul + 1} of the line: the file looks like UTF-16 "
                      "without a byte-order mark, or binary; save it as UTF-8")
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = raw[e.start:e.end]
            guess = bad.decode("cp1252", errors="replace")
            latin = f"; in Latin-1/Windows-1252 that is {guess!r}" if guess.isprintable() and "\ufffd" not in guess \
                else ""
            raise err(lineno, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                      f"line{latin}); save the file as UTF-8") from None


# -- writing: atomic files and clear failures ------------------------------------------------------
_SPACE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
          errno.EFBIG: "file size limit reached (the file system's or the process's, `ulimit -f`)"}
_REFUSED = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted"}
SPACE_ERRNOS = frozenset(_SPACE)


class StorageWriteError(OSError):
    """Storage refused a write (disk full, size limit, read-only): one message naming what was being
    written and what was kept. An OSError, so the CLI and the server report it like other I/O errors."""

    def __init__(self, code: int, message: str, path: str):
        super().__init__(code, message, path)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DatabaseWriteError(StorageWriteError):
    """The database file or its WAL could not be written; the transaction was rolled back."""


def write_error(e: OSError, path: str | os.PathLike[str], *, creating: bool = False) -> StorageWriteError | None:
    """`e` as a StorageWriteError if it says storage is full or read-only, else None (a bug, not the disk,
    or already a StorageWriteError).

    `creating`: the error came from creating the file, where permission errors are storage's answer
    too (mid-write they would be something else).
    """
    code = e.errno or 0
    if isinstance(e, StorageWriteError):
        return None  # already says what happened
    if code in _SPACE:
        why = _SPACE[code]
    elif code == errno.EROFS or (creating and code in _REFUSED):
        why = f"{_REFUSED[code]} in {Path(path).parent}"
    else:
        return None
    return StorageWriteError(code, f"{why} while writing {path}; nothing was written (an earlier file there "
                             "is unchanged)", str(path))


_DUCKDB_ERRNO = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                 "File too large": errno.EFBIG, "Read-only file system": errno.EROFS}


ROLLED_BACK = "the change was rolled back and nothing was saved"


def database_write_error(db_path: str, e: BaseException, *, outcome: str = ROLLED_BACK) -> DatabaseWriteError | None:
    """A DuckDB error that means the database file or WAL could not be written, as one message; else None.

    DuckDB reports these as IOException (mid-transaction: optimistic writes to the file) or
    TransactionException "Failed to commit: Could not write file ...wal" (at commit); both leave the
    transaction rolled back and the database usable.
    """
    msg = str(e)
    for text, code in _DUCKDB_ERRNO.items():
        if text in msg:
            why = "read-only file system" if code == errno.EROFS else _SPACE[code]
            return DatabaseWriteError(code, f"{why} while writing the database {db_path}; {outcome}", db_path)
    return None


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def umask() -> int:
    # Read, not set: os.umask() would briefly change it for every thread.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_beside(out: Path) -> tuple[int, Path]:
    """A new temp file in `out`'s directory (so the final rename is atomic), as (fd, path); mode 0600, and a
    missing directory is made 0700."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:
        raise (write_error(e, out, creating=True) or e) from e
    return fd, Path(name)


@contextmanager
def atomic_file(out: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A temp file beside `out` (binary, open) that replaces `out` when the block ends without error;
    on error it is removed, so readers never see a half-written file. Disk full, size limits and
    read-only storage raise StorageWriteError."""
    fd, tmp = temp_beside(out)
    try:
        with os.fdopen(fd, "wb") as f:
            yield tmp, f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)  # mode 0600 from mkstemp: exports and reports hold study data, for the owner only
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            problem = write_error(e, out)
            if problem is not None:
                raise problem from e
        raise
    fsync_dir(out.parent)


def atomic_write_jsonl(out: Path, rows: list[dict[str, Any]]) -> str:
    """Write rows as JSON Lines (UTF-8, text verbatim) beside `out` and rename; returns the sha256."""
    with atomic_file(out) as (_, f):
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return sha256_file(out)
