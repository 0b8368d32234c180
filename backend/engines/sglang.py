"""`SGLangEngine`: the engine protocol over HTTP to an SGLang server or sglang-router.

Everything goes through SGLang's native `/generate` (shapes in shared/reference/sglang-api.md):
sampling with one request item per sample (each with its own `sampling_seed`; behind sglang-router, whose
typed body takes one `sampling_params` object, one request per sample), prefill-only
`max_new_tokens: 0` requests for next-token probabilities, teacher-forced prompt logprobs for scoring,
and SSE streaming. Prompts are sent as `input_ids` rendered with the model's chat template, either locally
(`tokenizer_path`, an HF tokenizer directory) or by the server's `/tokenize` (SGLang >= 0.5.23), so there
is never a second BOS and identical prefixes are identical token ids (the radix cache matches tokens).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar


from backend.engines.base import (
    Chat,
    EngineError,
    EngineInfo,
    Sample,
    SampleParams,
    TokenLogprob,
    TopToken,
)

from backend.engines.candidates import CandidateError
from backend.engines.candidates import resolve as resolve_candidates
from backend.engines.sglang_http import API_KEY_ENV, KEEPALIVE_EXPIRY_S, Http, SGLangHTTPError
from backend.engines.sglang_tokenizers import LocalTokenizer, RemoteTokenizer, Tokenizer

# Callers import these from here; the HTTP layer and the tokenizers live in sglang_http / sglang_tokenizers.
__all__ = ["API_KEY_ENV", "KEEPALIVE_EXPIRY_S", "SGLangEngine", "SGLangHTTPError", "parse_finish_reason",
           "parse_token_logprobs"]
log = logging.getLogger(__name__)

_CHAT_CACHE_SIZE = 2048
LIVE_HEADROOM = 8  # connections beyond 2 x concurrency: the Live tab's streams (n <= 8)
_TEXT_CACHE_SIZE = 256
# sampling_seed: SGLang 0.5.23 verifies an i64 (SamplingParams.verify), sglang-router 0.3.2 parses a u64 (a
# negative seed is its HTTP 422). The client may sit behind either, so only what both take is sent.
SEED_MAX = 2 ** 63 - 1

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------------------
# Response parsing

def _top_tokens(entries: Sequence[Any] | None) -> list[TopToken]:
    return [TopToken(token_id=int(e[1]), text=e[2], logprob=float(e[0]))
            for e in (entries or []) if e is not None and e[0] is not None]


def parse_token_logprobs(token_entries: Sequence[Any] | None,
                         top_entries: Sequence[Any] | None) -> list[TokenLogprob]:
    """`[logprob, token_id, text]` triples (and per-position top-k lists, either may be null) ->
    TokenLogprobs. A null logprob is taken from the top-k list when the token is there, else NaN
    (unknown, rather than a made-up number)."""
    out: list[TokenLogprob] = []
    for i, entry in enumerate(token_entries or []):
        if entry is None:
            continue
        top = _top_tokens(top_entries[i] if top_entries is not None and i < len(top_entries) else None)
        lp = entry[0]
        if lp is None:
            lp = next((t.logprob for t in top if t.token_id == entry[1]), math.nan)
        out.append(TokenLogprob(token_id=int(entry[1]), text=entry[2], logprob=float(lp), top=top))
    return out


def parse_finish_reason(fr: Any) -> tuple[str, str | None]:
    """SGLang's finish_reason dict -> (Sample.finish_reason, error message or None)."""
    kind = fr.get("type") if isinstance(fr, dict) else None
    if kind in ("stop", "length"):
        return kind, None
    if kind == "abort":
        msg = fr.get("message") or "aborted by the server"
        code = fr.get("status_code")
        return "abort", f"{msg} (status {code})" if code else str(msg)
    return "error", f"unexpected finish_reason from the server: {fr!r}"


def _as_list(out: Any, expected: int, what: str) -> list[dict[str, Any]]:
    items = out if isinstance(out, list) else [out]
    if len(items) != expected or not all(isinstance(i, dict) and "meta_info" in i for i in items):
        raise EngineError(f"{what}: expected {expected} result(s) from /generate, got {str(out)[:300]}")
    return items


def _chunks(xs: list[T], size: int) -> list[list[T]]:
    return [xs[i:i + size] for i in range(0, len(xs), size)]


# ---------------------------------------------------------------------------------------------------------
# The engine

class SGLangEngine:
    """The Engine protocol against an SGLang server (or sglang-router) at `url`.

    `tokenizer_path`: a local HF tokenizer directory (needed behind a router unless `tokenize_url` names a
    worker). `raw_logprobs`: the server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (not detectable over
    HTTP). `vocab_size`: for the top-k self-certainty proxy (default: the local tokenizer's model config).
    `chat_template_kwargs`: passed to the chat template, e.g. {"enable_thinking": False} for Qwen3.
    """

    def __init__(self, url: str, *, api_key: str | None = None, tokenizer_path: str | None = None,
                 tokenize_url: str | None = None, model_id: str | None = None, concurrency: int = 16,
                 timeout: float = 120.0, max_retries: int = 4, backoff: float = 0.5, raw_logprobs: bool = False,
                 vocab_size: int | None = None, context_length: int | None = None, max_batch_size: int = 64,
                 warm_prefix: bool = True, chat_template_kwargs: dict[str, Any] | None = None) -> None:
        self.url = _normalise_url(url, "url")
        self.tokenize_url = _normalise_url(tokenize_url, "tokenize_url") if tokenize_url else self.url
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        self.concurrency = max(1, concurrency)
        self.max_batch_size = max(1, max_batch_size)
        self.raw_logprobs = raw_logprobs
        self.warm_prefix = warm_prefix
        self.notes: list[str] = []  # facts about this server the user should know (also logged)
        self.behind_router = False  # set at start: the URL is sglang-router (one sampling_params per request)
        # One caller keeps at most `concurrency` requests in flight (this engine's pool, or a generation job
        # sized by it). The connection pool has room for as many again plus Live's streams (n <= 8), so the
        # Live tab and scoring beside a running job never wait for a connection behind it.
        self._http = Http(api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff,
                           max_connections=2 * self.concurrency + LIVE_HEADROOM)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sglang")
        self._lock = threading.Lock()
        self._chat_cache: OrderedDict[str, list[int]] = OrderedDict()
        self._text_cache: dict[str, list[int]] = {}
        self._candidate_ids: dict[tuple[str, ...], dict[str, list[int]]] = {}
        try:
            self._start(tokenizer_path, model_id, vocab_size, context_length, chat_template_kwargs or {})
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SGLangEngine(url={self.url!r}, model_id={getattr(self, '_model_id', None)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- start-up ---------------------------------------------------------------------------------------

    def _start(self, tokenizer_path: str | None, model_id: str | None, vocab_size: int | None,
               context_length: int | None, template_kwargs: dict[str, Any]) -> None:
        self._check_health()
        info_urls = [self.url] + ([self.tokenize_url] if self.tokenize_url != self.url else [])
        model_info = self._first_json("/get_model_info", info_urls)  # sglang-router 0.3.2 proxies it
        server_info = self._first_json("/get_server_info", [self.url])
        # sglang-router answers /get_server_info and /v1/models itself, without any worker's server args or
        # context length (reference §6.3): those facts come from a worker.
        self.behind_router = bool((server_info or {}).get("router_manager"))
        worker = self._worker() if self.behind_router else self.url
        if self.behind_router:
            server_info = self._first_json("/get_server_info", [worker]) if worker else None
        models = self._first_json("/v1/models", [worker] if worker else [self.url])
        card = (models or {}).get("data") or [{}]
        card = card[0] if isinstance(card, list) and card and isinstance(card[0], dict) else {}

        served = (model_info or {}).get("served_model_name") or (model_info or {}).get("model_path") \
            or card.get("id")
        if model_id and served and model_id != served:
            log.warning("model_id %r given; the server reports %r (using %r)", model_id, served, model_id)
        self._model_id = model_id or served
        if not self._model_id:
            raise EngineError(f"cannot tell which model {self.url} serves: neither /get_model_info nor /v1/models "
                              "answered. Pass --sglang-model-id (model_id=...).")

        config_ctx: int | None = None
        if tokenizer_path:
            local = LocalTokenizer(tokenizer_path, template_kwargs)
            self._tokenizer: Tokenizer = local
            vocab_size = vocab_size or local.vocab_size
            config_ctx = local.max_position_embeddings
        else:
            remote = RemoteTokenizer(self._http, self.tokenize_url, template_kwargs)
            # Fail at start, not in the middle of a job: probe the exact call every prompt needs.
            remote.chat_ids([{"role": "user", "content": "ping"}])
            self._tokenizer = remote
        self.vocab_size: int | None = vocab_size

        # Never the tokenizer's model_max_length (also what /tokenize reports as max_model_len): the server's
        # --context-length may be shorter or longer.
        ctx = context_length or card.get("max_model_len") or (server_info or {}).get("context_length")
        if not ctx and config_ctx:
            ctx = config_ctx
            self._note(f"context length {ctx} taken from the model's config.json (max_position_embeddings): no "
                       "worker told its own; pass context_length=... if the server runs a shorter --context-length")
        if not ctx:
            raise EngineError(f"cannot tell the context length of the model at {self.url}: no worker answered "
                              "/v1/models or /get_server_info" + (" (behind sglang-router: give a worker URL with "
                                                                 "tokenize_url / --sglang-tokenize-url)"
                                                                 if self.behind_router else "")
                              + "; pass context_length=... (or a tokenizer_path whose config.json has "
                              "max_position_embeddings).")

        seeds = bool((server_info or {}).get("enable_deterministic_inference"))
        if not seeds:
            why = "does not report --enable-deterministic-inference" if server_info else (
                "is behind sglang-router and no worker answered /get_server_info (give a worker URL with "
                "--sglang-tokenize-url)" if self.behind_router
                else "has no /get_server_info to tell whether it runs --enable-deterministic-inference")
            self._note(f"sampling seeds are sent but NOT honoured (the server {why}): samples are not reproducible")
        mode = "raw" if self.raw_logprobs else "temperature_scaled"
        if mode == "temperature_scaled":
            self._note("sampled-token logprobs are temperature-scaled (softmax(logits/T)) unless temperature is 0 "
                       "or 1; pass raw_logprobs=True (--sglang-raw-logprobs) if the server runs with "
                       "SGLANG_RETURN_ORIGINAL_LOGPROB=1")
        if vocab_size is None:
            self._note("vocabulary size unknown (no tokenizer_path / vocab_size): the top-k self-certainty proxy "
                       "cannot be computed")
        self._info = EngineInfo(engine="sglang", model_id=str(self._model_id), context_length=int(ctx),
                                self_certainty="topk_proxy", logprob_mode=mode, seeds_honoured=seeds)

    def _worker(self) -> str | None:
        """A worker behind the router at self.url to read server facts from: `tokenize_url` when it names one,
        else the first healthy worker the router lists at /workers that answers as a server (the router's
        workers may be on a network this client cannot reach: then None)."""
        candidates = [self.tokenize_url] if self.tokenize_url != self.url else []
        listed = (self._first_json("/workers", [self.url]) or {}).get("workers")
        if isinstance(listed, list):
            candidates += [str(w["url"]).rstrip("/") for w in listed
                           if isinstance(w, dict) and w.get("url") and w.get("is_healthy", True)]
        for url in candidates[:3]:
            info = self._first_json("/get_server_info", [url])
            if info is not None and not info.get("router_manager"):
                return url
        return None

    def _note(self, message: str) -> None:
        self.notes.append(message)
        log.info("SGLang %s: %s", self.url, message)

    def _check_health(self) -> None:
        url = f"{self.url}/health"
        try:
            # 503 is retried: /health answers it while the model loads (and, falsely, under long prefills).
            self._http.request("GET", url, "health check")
        except SGLangHTTPError as exc:
            raise EngineError(f"the SGLang server at {self.url} is not healthy: /health answered HTTP "
                              f"{exc.status} after {self._http.max_retries + 1} attempt(s)"
                              + (" (it answers 503 while the model is still loading; wait and retry)"
                                 if exc.status == 503 else f": {exc.server_message}")) from exc
        except EngineError as exc:
            raise EngineError(f"the SGLang server at {self.url} is unreachable ({exc}). Is it running, and is "
                              "the URL right?") from exc

    def _first_json(self, route: str, bases: list[str]) -> dict[str, Any] | None:
        """The first JSON object one of `bases` serves at `route`; None where the route does not exist
        (behind sglang-router) or does not answer."""
        for base in bases:
            try:
                out = self._http.request("GET", f"{base}{route}", route).json()
            except SGLangHTTPError as exc:
                if exc.status in (401, 403):
                    raise
                continue
            except (EngineError, ValueError):
                continue
            if isinstance(out, dict):
                return out
        return None

    # --- protocol ---------------------------------------------------------------------------------------

    def info(self) -> EngineInfo:
        return self._info

    def sample(self, chats: list[Chat], n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None) -> list[list[Sample]]:
        if seeds is not None and (len(seeds) != len(chats) or any(len(s) != n for s in seeds)):
            raise ValueError(f"seeds must be {len(chats)} lists of {n} seeds")
        if seeds is None:
            if params.seed is not None:
                seeds = [[params.seed + j for j in range(n)] for _ in chats]
            else:  # still one seed per sample, so what was asked for is recorded
                seeds = [[random.randrange(2 ** 31) for _ in range(n)] for _ in chats]
        _check_seeds(s for chat_seeds in seeds for s in chat_seeds)
        if n <= 0 or not chats:
            return [[] for _ in chats]
        schema = json.dumps(json_schema) if json_schema is not None else None

        if self.behind_router:
            return self._sample_per_seed(chats, params, top_logprobs, schema, seeds)

        def one_chat(i: int) -> list[Sample]:
            ids = self._chat_ids(chats[i])
            if self.warm_prefix and n > 1:
                self._warm(ids)
            body = {
                "input_ids": [ids] * n,
                "sampling_params": [self._sampling_params(params, s, schema) for s in seeds[i]],
                "return_logprob": True, "top_logprobs_num": top_logprobs, "logprob_start_len": -1,
                "return_text_in_logprobs": True,
            }
            return self._generate(body, n, "sample",
                                  lambda items: [self._to_sample(item, s) for item, s in zip(items, seeds[i])])

        return self._map(one_chat, list(range(len(chats))))

    def _sample_per_seed(self, chats: list[Chat], params: SampleParams, top_logprobs: int, schema: str | None,
                         seeds: list[list[int]]) -> list[list[Sample]]:
        """Behind sglang-router: its typed /generate body takes ONE sampling_params object (a list is HTTP
        422) and `n` would share one seed, so each sample is a request of its own with its own seed."""
        ids = self._many_chat_ids(chats)
        if self.warm_prefix:
            self._map(self._warm, [p for p, s in zip(ids, seeds) if len(s) > 1])
        jobs = [(i, seed) for i, chat_seeds in enumerate(seeds) for seed in chat_seeds]

        def one(job: tuple[int, int]) -> Sample:
            i, seed = job
            body = {"input_ids": ids[i], "sampling_params": self._sampling_params(params, seed, schema),
                    "return_logprob": True, "top_logprobs_num": top_logprobs, "logprob_start_len": -1,
                    "return_text_in_logprobs": True}
            return self._generate(body, 1, "sample", lambda items: self._to_sample(items[0], seed))

        flat = iter(self._map(one, jobs))
        return [[next(flat) for _ in chat_seeds] for chat_seeds in seeds]

    def _warm(self, ids: list[int]) -> None:
        # Items prefilled in the same batch do not share a new prefix (reference §7); one prefill-only
        # request first puts it in the radix cache for all n samples (behind a cache_aware router, on the
        # worker their shared prefix routes them to).
        self._generate({"input_ids": ids, "sampling_params": {"max_new_tokens": 0}}, 1, "prefix warm-up")

    def next_token_probs(self, chats: list[Chat], assistant_prefix: str,
                         candidates: list[str]) -> list[dict[str, float]]:
        if not chats:
            return []
        owned = self.candidate_token_ids(candidates)
        wanted = sorted({t for ids in owned.values() for t in ids})
        prefix_ids = self._text_ids(assistant_prefix) if assistant_prefix else []
        # Token ids are concatenated (not re-tokenized text) so that every chat's prompt is the exact token
        # prefix the server has cached from sampling, and the boundary is where the template put it.
        prompts = [ids + prefix_ids for ids in self._many_chat_ids(chats)]

        def probs(items: list[dict[str, Any]]) -> list[dict[str, float]]:
            out = []
            for item in items:
                rows = item["meta_info"].get("output_token_ids_logprobs") or [None]
                lps = {int(e[1]): e[0] for e in (rows[0] or []) if e is not None and e[0] is not None}
                out.append({c: float(sum(math.exp(lps[t]) for t in ids if t in lps)) for c, ids in owned.items()})
            return out

        def one_batch(batch: list[list[int]]) -> list[dict[str, float]]:
            body = {"input_ids": batch, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
                    "token_ids_logprob": wanted, "logprob_start_len": -1}
            return self._generate(body, len(batch), "next-token probabilities", probs)

        return [p for batch in self._map(one_batch, _chunks(prompts, self.max_batch_size)) for p in batch]

    def score_response(self, chat: Chat, text: str, top_logprobs: int = 5) -> list[TokenLogprob]:
        prompt = self._chat_ids(chat)
        response = self._tokenizer.encode([text])[0]
        if not response:
            return []
        # Entry 0 of input_token_logprobs is always null (no logits for the position before it, reference
        # §2.1), so start one token early: entry 0 is the prompt's last token, entries 1.. are the response.
        body = {"input_ids": prompt + response, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
                "logprob_start_len": len(prompt) - 1, "top_logprobs_num": top_logprobs,
                "return_text_in_logprobs": True}

        def aligned(items: list[dict[str, Any]]) -> list[TokenLogprob]:
            meta = items[0]["meta_info"]
            entries = meta.get("input_token_logprobs") or []
            tops = meta.get("input_top_logprobs")
            if len(entries) != len(response) + 1 or [e[1] for e in entries[1:]] != response:
                raise EngineError(f"score response: prompt logprobs from {self.url} do not line up with the "
                                  f"{len(response)} response tokens (got {len(entries)} entries)")
            return parse_token_logprobs(entries[1:], tops[1:] if tops is not None else None)

        return self._generate(body, 1, "score response", aligned)

    def count_tokens(self, chat: Chat) -> int:
        """Prompt tokens of `chat` rendered with the generation prompt (for context-budget checks)."""
        return len(self._chat_ids(chat))

    def stream(self, chat: Chat, params: SampleParams) -> Generator[str, None, Sample]:
        """Text pieces of one sample; returns the finished Sample (text and finish reason, no per-token
        logprobs: a caller that needs them scores the text teacher-forced)."""
        seed = params.seed if params.seed is not None else random.randrange(2 ** 31)
        _check_seeds([seed])
        ids = self._chat_ids(chat)
        body = {"input_ids": ids, "sampling_params": self._sampling_params(params, seed, None), "stream": True}
        text, finish, prompt_tokens = "", "length", len(ids)
        try:
            for event in self._http.stream_events(f"{self.url}/generate", "stream", body):
                if "error" in event:
                    err = event["error"]
                    raise EngineError(f"stream from {self.url} failed: "
                                      f"{err.get('message', err) if isinstance(err, dict) else err}")
                meta = event.get("meta_info") or {}
                piece = event.get("text") or ""
                # Text is cumulative unless the server runs --incremental-streaming-output; there output_ids
                # holds only the new ids while completion_tokens still counts them all.
                incremental = len(event.get("output_ids") or []) < (meta.get("completion_tokens") or 0)
                if incremental:
                    delta, text = piece, text + piece
                else:
                    common = len(text) if piece.startswith(text) else len(os.path.commonprefix([text, piece]))
                    delta, text = piece[common:], piece
                if delta:
                    yield delta
                kind, error = parse_finish_reason(meta.get("finish_reason")) if meta.get("finish_reason") \
                    else (None, None)
                if kind in ("abort", "error"):
                    raise EngineError(f"stream from {self.url} ended with {kind}: {error}")
                finish = kind or finish
        except EngineError as exc:
            raise EngineError(f"{exc} (after {len(text)} characters: {_clip(text)!r})") from exc
        return Sample(text=text, finish_reason=finish, seed=seed, prompt_tokens=prompt_tokens)  # type: ignore[arg-type]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # --- helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _sampling_params(params: SampleParams, seed: int, schema: str | None) -> dict[str, Any]:
        sp: dict[str, Any] = {"max_new_tokens": params.max_tokens, "temperature": params.temperature,
                              "top_p": params.top_p, "sampling_seed": int(seed)}
        if schema is not None:
            sp["json_schema"] = schema  # a JSON *string*: /generate rejects an object
        return sp

    @staticmethod
    def _to_sample(item: dict[str, Any], seed: int) -> Sample:
        meta = item["meta_info"]
        kind, error = parse_finish_reason(meta.get("finish_reason"))
        return Sample(text=item.get("text") or "", finish_reason=kind, seed=seed,  # type: ignore[arg-type]
                      prompt_tokens=meta.get("prompt_tokens"), error=error,
                      tokens=parse_token_logprobs(meta.get("output_token_logprobs"), meta.get("output_top_logprobs")))

    def _generate(self, body: dict[str, Any], expected: int, what: str,
                  parse: Callable[[list[dict[str, Any]]], Any] | None = None) -> Any:
        """POST /generate; `parse` turns the `expected` result dicts into what the caller returns. A result
        that does not parse (a field of the wrong type, a missing one) is an EngineError saying so, not a
        bare TypeError from deep inside the job."""
        items = _as_list(self._http.post_json(f"{self.url}/generate", what, body), expected, what)
        if parse is None:
            return items
        try:
            return parse(items)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise EngineError(f"{what}: unexpected answer from {self.url}/generate ({type(exc).__name__}: {exc}): "
                              f"{str(items)[:300]}") from exc

    def _many_chat_ids(self, chats: list[Chat]) -> list[list[int]]:
        """`_chat_ids` of each chat. Only a remote tokenizer goes through the pool (its requests overlap); a
        local one is CPU work under the GIL, where threads only add hand-offs (measured: ~0.2 ms of client
        CPU per 4-chat call, bench/sglang_client.py)."""
        if isinstance(self._tokenizer, RemoteTokenizer):
            return self._map(self._chat_ids, chats)
        return [self._chat_ids(c) for c in chats]

    def _text_ids(self, text: str) -> list[int]:
        """Plain text -> ids, cached: methods append the same few assistant prefixes to every chat."""
        with self._lock:
            ids = self._text_cache.get(text)
        if ids is None:
            ids = self._tokenizer.encode([text])[0]
            with self._lock:
                if len(self._text_cache) >= _TEXT_CACHE_SIZE:
                    self._text_cache.clear()
                self._text_cache[text] = ids
        return ids

    def _chat_ids(self, chat: Chat) -> list[int]:
        key = json.dumps(chat, sort_keys=True, ensure_ascii=False)
        with self._lock:
            ids = self._chat_cache.get(key)
            if ids is not None:
                self._chat_cache.move_to_end(key)
                return ids
        ids = self._tokenizer.chat_ids(chat)
        with self._lock:
            self._chat_cache[key] = ids
            while len(self._chat_cache) > _CHAT_CACHE_SIZE:
                self._chat_cache.popitem(last=False)
        return ids

    def candidate_token_ids(self, candidates: list[str]) -> dict[str, list[int]]:
        """candidate -> the token ids `next_token_probs` sums for it (`backend.engines.candidates`)."""
        key = tuple(candidates)
        with self._lock:
            if key in self._candidate_ids:
                return self._candidate_ids[key]
        try:
            owned = resolve_candidates(candidates, self._tokenizer.encode)
        except CandidateError as e:
            raise EngineError(f"{e} of {self._model_id}") from e
        with self._lock:
            self._candidate_ids[key] = owned
        return owned

    def _map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """fn over items on the bounded pool, results in order; the first failure cancels the rest."""
        if len(items) == 1:
            return [fn(items[0])]
        futures = [self._pool.submit(fn, x) for x in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _check_seeds(seeds: Iterable[int]) -> None:
    """Refuse, before anything is sent, a seed SGLang or sglang-router would not take (see SEED_MAX)."""
    for seed in seeds:
        # numbers.Integral: a numpy integer is a seed too, a float or a bool is not
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= SEED_MAX:
            raise EngineError(f"sampling seed {seed!r} is outside what SGLang and sglang-router both accept "
                              "(an integer in [0, 2**63 - 1]); seeds of one request are the given seed + 0, 1, ..., "
                              "n - 1, so a seed near the top leaves no room for n samples")


def _normalise_url(url: str, name: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EngineError(f"{name} {url!r} must start with http:// or https://")
    return url


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]
