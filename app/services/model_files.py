"""A GGUF's SHA-256, hashed once per file version: the database remembers it by path, size and mtime."""

from __future__ import annotations

import os
from collections.abc import Callable

from storage import model_registry
from storage.db import Database

_LOUD = 512 * 2**20  # below this, hashing takes about a second: one line, no running percentage


def gguf_sha256(db: Database, path: str | None, notice: Callable[[str], None]) -> str | None:
    """The SHA-256 of the GGUF at `path` (None: the bundled model), from the cache when the file's size and
    mtime are unchanged, else computed with progress lines sent to `notice` and cached. None when the file
    cannot be read here: the engine then reports the missing file itself."""
    from backend.engines.base import EngineError
    from backend.engines.llamacpp_util import default_model_path, file_sha256

    try:
        real = os.path.realpath(path or default_model_path())
        st = os.stat(real)
    except (EngineError, OSError):
        return None
    cached = model_registry.cached_sha256(db, real, st.st_size, st.st_mtime_ns)
    if cached:
        return cached
    size_mb = st.st_size / 2**20
    notice(f"Computing the SHA-256 of {real} ({size_mb:,.0f} MiB) once; it is kept in the database.")
    shown = [0]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if st.st_size >= _LOUD and pct >= shown[0] + 10:
            shown[0] = pct - pct % 10
            notice(f"  SHA-256 of {os.path.basename(real)}: {shown[0]}%")

    sha = file_sha256(real, progress)
    model_registry.remember_sha256(db, real, st.st_size, st.st_mtime_ns, sha)
    return sha
