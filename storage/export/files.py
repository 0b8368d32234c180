"""File plumbing shared by every export: atomic writes, content hashes, annotator pseudonyms.

Moved here from storage/export_dpo.py (which re-exports these names for older imports).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from storage.db import Database

SALT_KEY = "pseudonym_salt"


# -- pseudonyms ------------------------------------------------------------------------------
def pseudonym_salt(db: Database) -> bytes:
    """This database's pseudonym key, created on first use (random, never exported)."""
    with db.write() as cur:
        cur.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    [SALT_KEY, secrets.token_hex(32)])
        value = cur.execute("SELECT value FROM settings WHERE key = ?", [SALT_KEY]).fetchall()[0][0]
    return bytes.fromhex(value)


def pseudonym(salt: bytes, name: str) -> str:
    """A stable, non-reversible stand-in for an annotator name.

    >>> pseudonym(b"k", "alice")
    'annotator-ec631a55bb'
    >>> pseudonym(b"k", "alice") == pseudonym(b"other", "alice")
    False
    """
    return "annotator-" + hmac.new(salt, name.encode("utf-8"), hashlib.sha256).hexdigest()[:10]


def pseudonymizer(db: Database) -> Callable[[str], str]:
    """`pseudonym` with this database's salt (memoised: a few annotators label many prompts)."""
    salt = pseudonym_salt(db)
    return functools.lru_cache(maxsize=None)(lambda name: pseudonym(salt, name))


# -- atomic files ----------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_file(out: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A temp file beside `out` (binary, open) that replaces `out` when the block ends without error;
    on error it is removed, so readers never see a half-written file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield tmp, f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an export is an ordinary file
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)


def atomic_write_text(out: Path, text: str) -> None:
    with atomic_file(out) as (_, f):
        f.write(text.encode("utf-8"))


def replace_dir(src: Path, dest: Path) -> None:
    """Move the finished directory `src` to `dest`, replacing an earlier export there."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
    _fsync_dir(dest.parent)


def _atomic_write(out: Path, rows: list[dict[str, Any]], fmt: str) -> str:
    """Write rows beside the target and rename (JSONL, or Parquet with the DPO schema); returns sha256.
    (The original whole-list writer, kept for storage.export_judgments and the per-annotator DPO export.)"""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_file(out) as (tmp, f):
        if fmt == ".jsonl":
            for row in rows:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        else:
            from storage.export.legacy import DPO_SCHEMA

            pq.write_table(pa.Table.from_pylist(rows, schema=DPO_SCHEMA), f)
    return sha256_file(out)


def _umask() -> int:
    # Read, not set: os.umask() would briefly change it for every thread.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_dir(path: Path) -> None:
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
