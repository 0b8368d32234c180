"""File plumbing shared by every export: atomic writes, content hashes, annotator pseudonyms.

Moved here from storage/export_dpo.py (which re-exports these names for older imports); the atomic-file
primitives live in storage.fileio (shared with the importers) and are re-exported here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.db import Database
from storage.fileio import atomic_file, sha256_file
from storage.fileio import fsync_dir as _fsync_dir
from storage.fileio import umask as _umask  # noqa: F401 (storage.export_dpo re-exports it)

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
