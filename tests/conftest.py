"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated, file-backed database (file-backed so WAL/checkpoint paths are real)."""
    database = Database(tmp_path / "test.duckdb")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def embedded_engine():  # noqa: ANN201 - the real SmolLM2 engine, loaded once per test session
    from backend.engines.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(n_ctx=2048)
    yield eng
    eng.close()


@pytest.fixture
def standin() -> Iterator[str]:
    """A fresh SGLang stand-in server (tests/standin_sglang.py); yields its base URL."""
    from tests.standin_sglang import start_standin

    url, stop = start_standin()
    yield url
    stop()
