"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from storage.db import Database

if TYPE_CHECKING:
    from tests.security_server import Live

# Property-based tests: no wall-clock deadline (the suite must pass on a busy machine) and no example
# database (tests write nothing outside tmp_path). CRITLAB_HYPOTHESIS=long runs many more examples.
settings.register_profile("ci", max_examples=30, stateful_step_count=25, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=300, stateful_step_count=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CRITLAB_HYPOTHESIS", "ci"))

# Password hashes at n=2^14 instead of the real 2^17 (~0.1 s instead of ~0.5 s each): the suite makes
# hundreds of accounts and logins. Set here, before any test or server subprocess starts, so both use it;
# the tests of the real cost remove it (docs/security.md).
os.environ.setdefault("CRITLAB_TEST_ONLY_SCRYPT_N", str(2**14))

# The umask every `critlab` command sets first (app/cli.py), set once for the whole run: otherwise a database
# a fixture makes is 0644 or 0600 depending on whether a CLI call ran earlier in the same process, and the
# CLI's warning about it comes and goes with the order tests run in (in parallel runs, with the worker). The
# tests of what critlab does under a permissive umask set one themselves (test_local_files).
os.umask(0o077)


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


@pytest.fixture(scope="session")
def tiny_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three tiny GGUFs of tests/tiny_gguf.py ("chatml", "llama3", "bare"), built once per session."""
    from tests.tiny_gguf import build

    folder = tmp_path_factory.mktemp("gguf")
    return {f: build(folder / f"{f}.gguf", f) for f in ("chatml", "llama3", "bare")}


@pytest.fixture
def standin() -> Iterator[str]:
    """A fresh SGLang stand-in server (tests/standin_sglang.py); yields its base URL."""
    from tests.standin_sglang import start_standin

    url, stop = start_standin()
    yield url
    stop()


@pytest.fixture(scope="module")
def router_on_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The real sglang-router 0.3.2 binary in front of one SGLang stand-in (tests/real_router.py); yields
    (router URL, worker URL). Skips only where the binary cannot run."""
    from tests.real_router import start_real_router
    from tests.standin_sglang import start_standin

    worker, stop_worker = start_standin()
    try:
        url, stop = start_real_router([worker], log=tmp_path_factory.mktemp("router") / "router.log")
    except BaseException:
        stop_worker()
        raise
    yield url, worker
    stop()
    stop_worker()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real server in this process on a seeded database (tests/security_server.py), one per module."""
    from tests.security_server import seeded_server  # imports the app (and Gradio): only where it is used

    with seeded_server(tmp_path_factory.mktemp("sec")) as srv:
        yield srv
