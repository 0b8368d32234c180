"""What every service function receives: the database, the engines, and the job runner."""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, Field

from app.services.paths import OptionalReadPath
from app.services.rate import LIVE_TOKEN_CAP, RateLimit
from backend.engines.base import Engine, EngineError, EngineInfo
from app.services.model_files import gguf_sha256
from storage import jobs as job_rows
from storage import model_registry
from storage.db import Database
from storage.models import ModelIdentity

if TYPE_CHECKING:
    from app.services.downloads import Downloads

log = logging.getLogger("critlab")


class EngineConfig(BaseModel):
    """How to reach a model; the SGLang API key is read from the environment only, never stored."""

    engine: str = "embedded"  # embedded | sglang
    # Embedded engine: a local GGUF (None: the bundled demo model), a Jinja chat template file that overrides
    # the GGUF's own, the context length (None: the GGUF's, capped by the engine) and layers to offload.
    model: OptionalReadPath = None
    chat_template: OptionalReadPath = None
    ctx: int | None = Field(default=None, ge=16)
    n_gpu_layers: int = Field(default=0, ge=-1)
    sglang_url: str | None = None
    sglang_tokenizer: OptionalReadPath = None  # a local tokenizer directory
    sglang_tokenize_url: str | None = None
    sglang_model_id: str | None = None
    # True when the server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (critlab's --launch-sglang does);
    # not detectable over HTTP, so whoever started the server says so.
    sglang_raw_logprobs: bool = False

    def key(self) -> tuple:
        if self.engine == "embedded":
            # the demo GGUF named by its path (or a link to it) is the engine a server without --model has
            model = os.path.realpath(self.model) if self.model and not self.is_bundled() else None
            return (self.engine, model, self.chat_template, self.ctx, self.n_gpu_layers)
        return (self.engine, self.sglang_url, self.sglang_tokenizer, self.sglang_tokenize_url, self.sglang_model_id,
                self.sglang_raw_logprobs)

    def is_bundled(self) -> bool:
        """The embedded engine on the demo model shipped with critlab (its self-judgments carry no signal)."""
        if self.engine != "embedded":
            return False
        if self.model is None:
            return True
        from backend.engines.llamacpp_util import is_bundled

        return is_bundled(self.model)

    def describe(self) -> str:
        """One line for people: which engine and model this configuration reaches."""
        if self.engine == "sglang":
            return f"sglang at {self.sglang_url}"
        return "embedded, bundled demo model" if self.is_bundled() else f"embedded, {self.model}"


class ServiceError(ValueError):
    """A mistake the user can fix (unknown study, invalid settings ...); its message says how."""


class PermissionDenied(PermissionError):
    pass


class TooManyRequests(ServiceError):
    """A rate limit refused the request (429 over HTTP); `retry_after` is in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def make_engine(cfg: EngineConfig, sha256: str | None = None) -> Engine:
    """The engine a configuration names; `sha256` is the GGUF's hash when the caller has it cached."""
    if cfg.engine == "embedded":
        from backend.engines.llamacpp import LlamaCppEngine

        template = _read_template(cfg.chat_template) if cfg.chat_template else None
        return LlamaCppEngine(cfg.model, cfg.ctx, chat_template=template, n_gpu_layers=cfg.n_gpu_layers,
                              sha256=sha256)
    if cfg.engine == "sglang":
        if not cfg.sglang_url:
            raise ServiceError("the sglang engine needs --sglang-url URL (or CRITLAB_SGLANG_URL)")
        from backend.engines.sglang import SGLangEngine

        return SGLangEngine(cfg.sglang_url, api_key=os.environ.get("CRITLAB_SGLANG_API_KEY"),
                            tokenizer_path=cfg.sglang_tokenizer, tokenize_url=cfg.sglang_tokenize_url,
                            model_id=cfg.sglang_model_id, raw_logprobs=cfg.sglang_raw_logprobs)
    raise ServiceError(f"unknown engine {cfg.engine!r}: choose embedded or sglang")


def _identity(cfg: EngineConfig, info: EngineInfo) -> ModelIdentity:
    """What the engine says of its model; for SGLang, which names only its model, the chat template of the
    local tokenizer directory when one was given (exports render prompts with it)."""
    if info.model is not None:
        return info.model
    template, special = None, {}
    if cfg.engine == "sglang" and cfg.sglang_tokenizer:
        from backend.engines.chat_template import load_chat_template

        try:
            t = load_chat_template(cfg.sglang_tokenizer)
            template, special = t.text, t.special
        except ValueError:  # a tokenizer without a template: exports then ask for one
            pass
    return ModelIdentity(model_id=info.model_id, engine=info.engine, name=info.model_id,
                         context_length=info.context_length, chat_template=template, special_tokens=special)


def _read_template(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ServiceError(f"cannot read the chat template {path}: {e}") from e


def _downloads() -> "Downloads":
    from app.services.downloads import Downloads  # it imports this module

    return Downloads()


@dataclass
class AppContext:
    db: Database
    default_engine: EngineConfig = field(default_factory=EngineConfig)
    # None: make_engine, with GGUF hashes cached in the database; tests pass their own factory.
    engine_factory: Callable[[EngineConfig], Engine] | None = None
    notice: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))
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
                self._unload_other_extra_model(cfg)
                try:
                    eng = self._engines[cfg.key()] = self._make(cfg)
                except EngineError:
                    raise
                except ImportError as e:
                    raise EngineError(f"the {cfg.engine} engine is not installed: {e}") from e
                model_registry.record_model(self.db, _identity(cfg, eng.info()))
            return eng

    def _unload_other_extra_model(self, cfg: EngineConfig) -> None:
        """A server holds its own engine and at most one more embedded model (a job's --model): a GGUF
        can take gigabytes, so loading another extra one first unloads the previous one, once no job that
        might be using it is running."""
        own = self.default_engine.key()
        if cfg.engine != "embedded" or cfg.key() == own:
            return
        extras = [k for k in self._engines if k[0] == "embedded" and k != own]
        if not extras:
            return
        running = [job_id for job_id, fut in self._futures.items() if not fut.done()]
        if running:
            raise ServiceError(f"another embedded model ({extras[0][1] or 'the bundled one'}) is loaded for job "
                               f"{running[0]}, which is still running; run this when it has ended")
        for k in extras:
            self._engines.pop(k).close()

    def loaded(self) -> list[EngineInfo]:
        """What the engines loaded now report (the server's own first)."""
        with self._engine_lock:
            engines = sorted(self._engines.items(), key=lambda kv: kv[0] != self.default_engine.key())
        return [eng.info() for _, eng in engines]

    def _make(self, cfg: EngineConfig) -> Engine:
        if self.engine_factory is not None:
            return self.engine_factory(cfg)
        sha = gguf_sha256(self.db, cfg.model, self.notice) if cfg.engine == "embedded" else None
        return make_engine(cfg, sha)

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
