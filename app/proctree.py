"""Keeping child servers (SGLang) from outliving critlab.

A launched server is started in its own session, so its process group is exactly its process tree
(and a terminal's Ctrl+C reaches critlab only, which then shuts the server down in order). Stopping
signals the whole group, waits, then kills what is left, including descendants that moved to a
process group of their own (sglang-router's data-parallel workers call setpgrp). If critlab dies
without cleaning up (SIGKILL, a crash), the kernel sends the server a signal: prctl PR_SET_PDEATHSIG.

The /proc walk and PR_SET_PDEATHSIG are Linux-only; elsewhere only the process group is signalled and
nothing happens when critlab is killed outright.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process dies (Linux; None elsewhere).

    SIGTERM rather than SIGKILL: both SGLang and sglang-router stop their own workers on SIGTERM, while
    a SIGKILLed router would leave its workers (own process groups, no parent-death signal) running.
    The kernel ties the signal to the *thread* that forks, so start servers from a long-lived thread
    (the main thread in the CLI)."""
    if not LINUX:
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: dlopen in the child is not async-safe
    parent = os.getpid()

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # critlab died between fork and prctl: no signal would ever come
            os._exit(127)

    return preexec


def _read_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields from `state` on (field 3), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2:].split()  # comm may hold spaces and parentheses


def _start_time(fields: list[str]) -> int:
    return int(fields[19])  # field 22, starttime: tells a reused pid from the original


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot; Linux), or None when it is gone or elsewhere."""
    fields = _read_stat(pid) if LINUX else None
    return _start_time(fields) if fields is not None else None


def alive(pid: int, start_time: int | None = None) -> bool:
    """The process exists and is not a zombie (and, given `start_time`, is the same process)."""
    if not LINUX:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = _read_stat(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return start_time is None or _start_time(fields) == start_time


def process_tree(root: int) -> dict[int, int]:
    """pid -> start time for `root` and all its live descendants (Linux; just `root` elsewhere)."""
    if not LINUX:
        return {root: 0}
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _read_stat(int(entry))
        if fields is None or fields[0] in ("Z", "X", "x"):
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), _start_time(fields)))
    root_fields = _read_stat(root)
    if root_fields is None:
        return {}
    tree = {root: _start_time(root_fields)}
    todo = [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            if pid not in tree:
                tree[pid] = started
                todo.append(pid)
    return tree


def _group_alive(pgid: int) -> bool:
    if LINUX:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = _read_stat(int(entry))
                # zombies do not count: in containers whose init never reaps they stay forever
                if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X", "x"):
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_tree(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group led by `proc`, wait up to `grace` seconds for it and every descendant
    to exit, then SIGKILL whatever remains. A KeyboardInterrupt / SystemExit while waiting (a second
    Ctrl+C) skips straight to SIGKILL, then propagates."""
    # Snapshot first: once the leader exits its children are reparented and cannot be found from it.
    tree = process_tree(proc.pid)
    pgid = proc.pid  # start_new_session=True made the child its own group leader
    _signal_group(pgid, signal.SIGTERM)
    gone = False
    try:
        deadline = time.monotonic() + grace
        while not gone and time.monotonic() < deadline:
            proc.poll()  # reap the leader, or it stays a zombie in its own group
            gone = not _group_alive(pgid) and not any(alive(p, t) for p, t in tree.items())
            if not gone:
                time.sleep(0.05)
    finally:
        if not gone:  # (once all are gone the group id may be reused: never signal it then)
            _kill_rest(proc, pgid, tree)


def _kill_rest(proc: subprocess.Popen, pgid: int, tree: dict[int, int]) -> None:
    # While any member lives the group id cannot be reused, so signalling it is safe.
    if proc.poll() is None or _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    for pid, started in tree.items():
        if alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    # kill() only queues the signal: wait until they are gone, so the GPU memory is free on return.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None and not any(alive(p, t) for p, t in tree.items()):
            return
        time.sleep(0.02)
    # still there: in uninterruptible sleep (D state), beyond what any process can do about it
