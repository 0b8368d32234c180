"""Files beside the database that grant power: `<db>.secret` (the cookie signing key) and `<db>.lock`
(where the CLI sends commands and passwords, with the admin token).

Whoever can put such a file beside the database controls the server or the CLI: a planted key forges
an admin cookie, a planted lock makes the CLI send a new password to the planter's port. So critlab
uses one only if it is a regular file (not a symbolic link: opened with O_NOFOLLOW) owned by the
user running critlab with no permission for group or others (checked with fstat on the open file,
so it cannot be swapped between the check and the read), and it creates them with O_EXCL, mode 0600.

The database's directory matters too: `directory_warnings` says when other users can write there
(they could plant the files above, or a `.wal`), or read the database (it holds password hashes).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# O_NOFOLLOW and O_CLOEXEC are POSIX; O_NONBLOCK keeps a planted FIFO from hanging the open.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
MAX_SIZE = 64 * 1024  # both files hold well under 1 KiB


class UntrustedFileError(RuntimeError):
    """A `.secret` or `.lock` that critlab refuses to use; the message names the file and what to do."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _refusal(path: Path, st: os.stat_result, purpose: str) -> str | None:
    """Why the open file `st` at `path` must not be used, or None when it is private to this user."""
    me = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return (f"{path} is not a regular file; critlab uses it only as a file of its own ({purpose}). "
                f"Remove it (`rm {path}`) and keep the database in a directory only you can write.")
    if st.st_uid != me:
        return (f"{path} belongs to {_owner(st.st_uid)}, not to you ({_owner(me)}): another user may have "
                f"planted it ({purpose}), so critlab will not use it. Check who made it, remove it "
                f"(`rm {path}`), and keep the database in a directory only you can write.")
    if mode & 0o077:
        return (f"{path} has mode {mode:04o}: other users may read or change it ({purpose}), so critlab will "
                f"not use it. If you made it, run `chmod 600 {path}`; if not, remove it (`rm {path}`).")
    return None


def read_private(path: Path, purpose: str) -> bytes | None:
    """The bytes of `path`, or None if it does not exist; UntrustedFileError if it is a symbolic link, not a
    regular file, not owned by this user or open to group or others. `purpose` says in the message what
    the file is for."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise UntrustedFileError(
                f"{path} is a symbolic link; critlab uses it only as a regular file of its own ({purpose}). "
                f"Remove it (`rm {path}`) and keep the database in a directory only you can write.") from None
        raise UntrustedFileError(f"cannot open {path} ({e.strerror}); {purpose}. Remove it if it is not yours "
                                 f"(`rm {path}`).") from None
    try:
        st = os.fstat(fd)
        problem = _refusal(path, st, purpose)
        if problem:
            raise UntrustedFileError(problem)
        data = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE:
        raise UntrustedFileError(f"{path} is larger than {MAX_SIZE:,} bytes, which no critlab {path.suffix} file "
                                 f"is; remove it (`rm {path}`).")
    return data


def create_private(path: Path, data: bytes) -> None:
    """Write a new file `path` with mode 0600; FileExistsError if anything (a file, a symbolic link) is there."""
    fd = os.open(path, _CREATE_FLAGS, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)


def directory_warnings(db_path: str) -> list[str]:
    """What makes the database's surroundings unsafe on a machine shared with other users: a directory
    others can write (they could plant `.secret`, `.lock` or `.wal` files beside the database), and a
    database or WAL others can read (it holds password hashes)."""
    if db_path == ":memory:":
        return []
    db = Path(os.path.abspath(db_path))
    folder = db.parent
    out: list[str] = []
    try:
        st = os.stat(folder)
    except OSError:
        return out
    mode, me = stat.S_IMODE(st.st_mode), os.geteuid()
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "other users" if mode & stat.S_IWOTH else "its group"
        out.append(f"the database's directory {folder} is writable by {who} (mode {mode:04o}): they could plant "
                   f"files beside the database ({db.name}.secret, {db.name}.lock, {db.name}.wal). Keep the "
                   f"database in a directory only you can write (`chmod 700 {folder}`, or another --db).")
    elif st.st_uid not in (me, 0):
        out.append(f"the database's directory {folder} belongs to {_owner(st.st_uid)}, who could plant files "
                   f"beside the database; keep it in a directory of your own.")
    for f in (db, Path(f"{db}.wal")):
        try:
            fmode = stat.S_IMODE(os.stat(f).st_mode)
        except OSError:
            continue
        if fmode & 0o077:
            out.append(f"{f} has mode {fmode:04o}: other users can read it, and it holds password hashes. "
                       f"Run `chmod 600 {f}`.")
    return out
