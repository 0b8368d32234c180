"""What every service function receives: the database, the engines, and the job runner."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel

from app.services.paths import OptionalReadPath
from app.services.rate import LIVE_TOKEN_CAP, RateLimit
from backend.engines.base import Engine, EngineError
from storage import jobs as job_rows
from storage.db import Database

if TYPE_CHECKING:
    from app.services.downloads import Downloads

log = logging.getLogger("critlab")


class EngineConfig(BaseModel):
    """How to reach a model; the SGLang API key is read from the environment only, never stored."""

    engine: str = "embedded"  # embedded | sglang
    sglang_url: str | None = None
    sglang_tokenizer: OptionalReadPath = None  # a local tokenizer directory
    sglang_tokenize_url: str | None = None
    sglang_model_id: str | None = None
    # True when the server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (critlab's --launch-sglang does);
    # not detectable over HTTP, so whoever started the server says so.
    sglang_raw_logprobs: bool = False

    def key(self) -> tuple:
        return (self.engine, self.sglang_url, self.sglang_tokenizer, self.sglang_tokenize_url, self.sglang_model_id,
                self.sglang_raw_logprobs)


class ServiceError(ValueError):
    """A mistake the user can fix (unknown study, invalid settings ...); its message says how."""


class PermissionDenied(PermissionError):
    pass


class TooManyRequests(ServiceError):
    """A rate limit refused the request (429 over HTTP); `retry_after` is in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def make_engine(cfg: EngineConfig) -> Engine:
    if cfg.engine == "embedded":
        from backend.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine()
    if cfg.engine == "sglang":
        if not cfg.sglang_url:
            raise ServiceError("the sglang engine needs --sglang-url URL (or CRITLAB_SGLANG_URL)")
        from backend.engines.sglang import SGLangEngine

        return SGLangEngine(cfg.sglang_url, api_key=os.environ.get("CRITLAB_SGLANG_API_KEY"),
                            tokenizer_path=cfg.sglang_tokenizer, tokenize_url=cfg.sglang_tokenize_url,
                            model_id=cfg.sglang_model_id, raw_logprobs=cfg.sglang_raw_logprobs)
    raise ServiceError(f"unknown engine {cfg.engine!r}: choose embedded or sglang")


def _downloads() -> "Downloads":
    from app.services.downloads import Downloads  # it imports this module

    return Downloads()


@dataclass
class AppContext:
    db: Database
    default_engine: EngineConfig = field(default_factory=EngineConfig)
    engine_factory: Callable[[EngineConfig], Engine] = make_engine
    submit_limit: RateLimit | None = None  # per person; the server sets it (app/services/rate.py)
    live_token_cap: int = LIVE_TOKEN_CAP  # samples x max tokens per Live generation; 0: no cap
    _engines: dict[tuple, Engine] = field(default_factory=dict)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="job"))
    _futures: dict[int, Future] = field(default_factory=dict)
    _cancel: set[int] = field(default_factory=set)
    downloads: "Downloads" = field(default_factory=_downloads)  # files offered to browsers (app/services/downloads.py)

    def engine(self, cfg: EngineConfig | None = None) -> Engine:
        """One engine instance per configuration, created on first use and shared by every caller."""
        cfg = cfg or self.default_engine
        with self._engine_lock:
            eng = self._engines.get(cfg.key())
            if eng is None:
                try:
                    eng = self._engines[cfg.key()] = self.engine_factory(cfg)
                except EngineError:
                    raise
                except ImportError as e:
                    raise EngineError(f"the {cfg.engine} engine is not installed: {e}") from e
            return eng

    # -- background jobs --------------------------------------------------------------------------
    def submit_job(self, job_id: int, fn: Callable[[], None]) -> Future:
        def run() -> None:
            try:
                fn()
            except Exception as e:  # a job must end in a stored state, whatever went wrong
                log.exception("job %s failed", job_id)
                job_rows.update_job(self.db, job_id, status="failed", error=f"{type(e).__name__}: {e}")

        fut = self._pool.submit(run)
        self._futures[job_id] = fut
        return fut

    def cancel_job(self, job_id: int) -> None:
        self._cancel.add(job_id)

    def cancelled(self, job_id: int) -> bool:
        return job_id in self._cancel

    def wait_jobs(self, timeout: float | None = None) -> None:
        for fut in list(self._futures.values()):
            fut.result(timeout=timeout)

    def close(self) -> None:
        self._cancel.update(self._futures)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for eng in self._engines.values():
            eng.close()
        self._engines.clear()
        self.downloads.close()
        self.db.close()
