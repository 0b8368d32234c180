"""File plumbing shared by every export: atomic writes, content hashes, annotator pseudonyms, and
publishing an export's files together without ever replacing a file critlab was not asked to replace.

The atomic-file primitives live in storage.fileio (shared with the importers).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from storage.db import Database
from storage.fileio import temp_beside, write_error
from storage.fileio import fsync_dir as _fsync_dir

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
def card_path(out: Path) -> Path:
    """The dataset card of the data file `out`: `<stem>.card.md` beside it (never README.md, which may be
    anybody's).

    >>> card_path(Path("runs/pairs.jsonl"))
    PosixPath('runs/pairs.card.md')
    """
    return out.with_name(f"{out.stem}.card.md")


class OutputExists(ValueError):
    """An export target is already there and replacing it was not asked for."""


def _exists_error(target: Path, what: str) -> OutputExists:
    return OutputExists(f"{target} already exists ({what}); critlab does not replace files it was not asked to: "
                        "choose another --out, or pass --overwrite to replace the data file and its card")


def check_free(targets: dict[Path, str], *, overwrite: bool) -> None:
    """Refuse early (before any row is read) when a target is taken: any existing path without `overwrite`,
    a directory even with it. `targets` maps each path to what it is, for the message."""
    for target, what in targets.items():
        if target.is_dir() and not target.is_symlink():
            raise OutputExists(f"{target} is a directory ({what} goes there); choose another --out")
        if os.path.lexists(target) and not overwrite:
            raise _exists_error(target, what)


def write_temp_text(beside: Path, text: str) -> Path:
    """`text` (UTF-8) in a new temp file beside `beside`, flushed to disk, readable like an ordinary file;
    the caller publishes or removes it."""
    fd, tmp = temp_beside(beside)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        # mode 0600 from mkstemp, kept: an export holds study data, for the owner only
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        problem = write_error(e, beside) if isinstance(e, OSError) else None
        if problem is not None:
            raise problem from e
        raise
    return tmp


def _place_new(src: Path, target: Path) -> None:
    """Move `src` to `target`, which must not exist. A hard link fails with EEXIST if the name is taken,
    even by a file created a moment ago, so nothing is ever replaced; where links are not supported
    (some network and FAT file systems) the check and the rename are two steps."""
    if src.is_dir():
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        os.rename(src, target)
        return
    try:
        os.link(src, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.rename(src, target)
        return
    with contextlib.suppress(OSError):  # the caller removes its temp files again after a failure
        src.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Published:
    """Files moved into place by `publish`: `undo()` takes them out again and restores what they replaced;
    `done()` drops the replaced ones for good."""

    def __init__(self) -> None:
        self.placed: list[Path] = []
        self.backups: list[tuple[Path, Path]] = []  # (replaced file moved aside, its name)

    def undo(self) -> None:
        for target in reversed(self.placed):
            _remove(target)
        for backup, target in reversed(self.backups):
            os.replace(backup, target)
        self.placed, self.backups = [], []

    def done(self) -> None:
        for backup, _ in self.backups:
            _remove(backup)
        for parent in {t.parent for t in self.placed}:
            _fsync_dir(parent)
        self.placed, self.backups = [], []


def publish(moves: list[tuple[Path, Path, str]], *, replace: Callable[[Path], bool]) -> Published:
    """Move each staged (temp) file or directory to its target, in order, as one step: if any move fails,
    the earlier ones are undone (and what they replaced restored) before the error is raised, so either
    every target holds the new content or none was touched. A target that exists is replaced only when
    `replace(target)` says so (it is moved aside until `done()`); otherwise OutputExists. `moves` holds
    (staged, target, what the target is)."""
    result = Published()
    try:
        for staged, target, what in moves:
            if os.path.lexists(target):
                if not replace(target):
                    raise _exists_error(target, what)
                if staged.is_dir() != (target.is_dir() and not target.is_symlink()):  # never a file for a folder
                    raise OutputExists(f"{target} exists and is a {'file' if staged.is_dir() else 'directory'} "
                                       f"({what} goes there); choose another path")
                backup = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
                os.replace(target, backup)
                result.backups.append((backup, target))
            try:
                _place_new(staged, target)
            except FileExistsError:
                raise _exists_error(target, what) from None
            except OSError as e:
                raise (write_error(e, target, creating=True) or e) from e
            result.placed.append(target)
    except BaseException:
        result.undo()
        raise
    return result


def zip_export(files: list[Path], dest: Path) -> Path:
    """One .zip holding `files` under their own names (the Export tab's download: data file and card).
    Parquet is stored as is (already compressed), text is deflated."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # for the owner only, like the files in it
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as z:
        for f in files:
            kind = zipfile.ZIP_STORED if f.suffix.lower() == ".parquet" else zipfile.ZIP_DEFLATED
            z.write(f, arcname=f.name, compress_type=kind)
    return dest
