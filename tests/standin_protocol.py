"""The stand-in SGLang server's options and state, and what it does with one `/generate` body: validation as
SGLang 0.5.23 documents it (shared/reference/sglang-api.md), sglang-router's typed body, and the items'
tokens, logprobs and finish reasons from the toy model (tests/standin_model.py). The routes are in
tests/standin_sglang.py."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from tests import standin_body_log
from tests.standin_model import (
    BOS_ID,
    EOS_ID,
    VOCAB,
    VOCAB_SIZE,
    _stable_hash,
    decode,
    encode,
    log_softmax,
    logits_after,
    raw_logprobs_after,
)

# ---------------------------------------------------------------------------------------------------------
# Options and state

@dataclasses.dataclass
class StandinOptions:
    api_key: str | None = None
    router: bool = False                 # behave like sglang-router 0.3.2 in front of this server (§6.3)
    worker_urls: tuple[str, ...] = ()    # router mode: what GET /workers lists (the real router's workers)
    model_id: str = "standin/toy-chatml"
    context_length: int = 4096
    deterministic: bool = True           # reported as enable_deterministic_inference; False ignores seeds
    return_original_logprob: bool = False  # like SGLANG_RETURN_ORIGINAL_LOGPROB=1
    incremental_streaming: bool = False  # like --incremental-streaming-output
    keep_alive_timeout: float = 5.0      # uvicorn timeout_keep_alive, 5 s as in SGLang (start-up only)
    fail_times: int = 0                  # the next N requests to fail_paths answer fail_status
    fail_status: int = 500
    fail_paths: tuple[str, ...] = ("/generate",)
    retry_after: str | None = None       # Retry-After header of those failures (e.g. "1"; any string)
    drop_times: int = 0                  # the next N requests to drop_paths get their connection closed
    drop_paths: tuple[str, ...] = ("/generate",)
    # The next N /generate requests that arrive on an already used (kept-alive) connection get it closed
    # without an answer: what a client sees when it reuses a connection the server is closing as idle.
    drop_keepalive_times: int = 0
    stall_times: int = 0                 # the next N /generate requests get no answer for stall_s seconds
    stall_s: float = 30.0
    hang_after: int | None = None        # /generate requests after the first N hang until the server stops
    bad_body_times: int = 0              # the next N /generate answers are 200 with a broken body:
    bad_body: str = "truncated"          # truncated (honest Content-Length) | cut (mid-transfer) | malformed
    #                                      | wrong_shape (valid JSON, a logprob entry that is not a number)
    fault_match: str | None = None       # /generate faults hit only requests whose prompt contains this
    health_503_times: int = 0            # /health answers 503 this many times (server starting)
    abort_seeds: tuple[int, ...] = ()    # samples with these sampling_seed values finish with an abort
    stream_error_after: int | None = None  # a stream sends {"error":...} after this many events (or before its last)
    null_top_every: int = 0              # every k-th output_top_logprobs position is null
    delay: float = 0.0                   # seconds before answering /generate
    token_delay: float = 0.0             # seconds between streamed events
    # Append every POST/PUT body received to this JSON-lines file (tests/standin_body_log.py)
    body_log: str | None = dataclasses.field(
        default_factory=lambda: os.environ.get(standin_body_log.BODY_LOG_ENV) or None)


# Measured on the sglang-router 0.3.2 binary: it proxies /get_model_info but not its newer alias, and has no
# /server_info alias of its own /get_server_info.
_ROUTER_404 = ("/tokenize", "/v1/tokenize", "/detokenize", "/v1/detokenize", "/model_info", "/server_info",
               "/v1/score")
_AUTH_EXEMPT = ("/health", "/metrics", "/ready", "/_standin")

SAMPLING_KEYS = frozenset({
    "max_new_tokens", "min_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p",
    "top_k", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "n", "json_schema",
    "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
    "no_stop_trim", "stream_interval", "logit_bias", "custom_params", "sampling_seed", "beam_width",
    "watermark"})
_GRAMMAR_KEYS = ("json_schema", "regex", "ebnf", "structural_tag")


class StandinState:
    def __init__(self, options: StandinOptions) -> None:
        self.options = options
        self.initial = dataclasses.replace(options)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.seen_prompts: list[tuple[int, ...]] = []  # sorted, for cached_tokens (see _cached_prefix)
        self.unseeded = np.random.default_rng()
        self.inflight = 0
        self.max_inflight = 0  # most /generate requests handled at once (a client's concurrency bound)
        self.held = 0  # requests held unanswered right now (stall / hang)
        self.stopping = False  # set by stop(): held requests then lose their connection, as in a crash
        self.clear_counters()

    def clear_counters(self) -> None:
        self.generate_seen = 0   # /generate requests received (for hang_after)
        self.client_aborts = 0   # held requests whose client gave up (SGLang aborts those)
        self.connections: set[Any] = set()  # client (host, port) pairs that have sent a request

    def take(self, counter: str) -> bool:
        """Consume one unit of a failure budget (thread-safe)."""
        with self.lock:
            left = getattr(self.options, counter)
            if left > 0:
                setattr(self.options, counter, left - 1)
                return True
            return False


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


# ---------------------------------------------------------------------------------------------------------
# /generate

@dataclasses.dataclass
class _Item:
    prompt: list[int]
    params: dict[str, Any]
    return_logprob: bool
    logprob_start_len: int
    top_logprobs_num: int
    token_ids_logprob: list[int] | None
    rid: str
    parallel_index: int = 0  # which of the n samples of a prompt (n>1), so they differ under one seed


def _check_sampling_params(sp: Any) -> dict[str, Any]:
    if not isinstance(sp, dict):
        raise BadRequest(f"sampling_params must be an object, got {type(sp).__name__}")
    unknown = sorted(set(sp) - SAMPLING_KEYS)
    if unknown:
        raise BadRequest(f"unknown field `{unknown[0]}` in sampling_params")
    def number(key: str, ok: Callable[[float], bool], what: str, integer: bool = False) -> None:
        v = sp.get(key)
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            raise BadRequest(f"sampling_params.{key}: invalid type {type(v).__name__}")
        if not ok(v):
            raise BadRequest(f"{key} must be {what}, got {v}")
    number("max_new_tokens", lambda v: v >= 0, ">= 0", integer=True)
    number("temperature", lambda v: v >= 0, ">= 0")
    number("top_p", lambda v: 0 < v <= 1, "in (0, 1]")
    number("top_k", lambda v: v == -1 or v >= 1, "-1 or >= 1", integer=True)
    number("n", lambda v: v >= 1, ">= 1", integer=True)
    number("sampling_seed", lambda v: -(2**63) <= v <= 2**63 - 1, "in [-2**63, 2**63 - 1]", integer=True)  # verify()
    for key in _GRAMMAR_KEYS:
        if key in ("json_schema", "regex", "ebnf") and sp.get(key) is not None and not isinstance(sp[key], str):
            raise BadRequest(f"sampling_params.{key}: invalid type {type(sp[key]).__name__}, expected a string")
    if sum(sp.get(k) is not None for k in _GRAMMAR_KEYS) > 1:
        raise BadRequest("Only one of regex, json_schema, ebnf or structural_tag can be set.")
    if sp.get("json_schema") is not None:
        try:
            json.loads(sp["json_schema"])
        except ValueError as exc:
            raise BadRequest(f"Failed to compile json_schema grammar: {exc}") from None
    return sp


def _per_item(value: Any, i: int, batch: bool) -> Any:
    """A top-level field given either once for the whole batch or as a list with one value per item."""
    return value[i] if batch and isinstance(value, list) else value


def _parse_generate(body: dict[str, Any], state: StandinState) -> tuple[list[_Item], bool]:
    given = [k for k in ("text", "input_ids", "input_embeds") if body.get(k) is not None]
    if len(given) != 1:
        raise BadRequest("Exactly one of text, input_ids or input_embeds must be provided.")
    if given[0] == "input_embeds":
        raise BadRequest("input_embeds requires --disable-radix-cache (not supported by the stand-in)")
    if given[0] == "text":
        text = body["text"]
        single = isinstance(text, str)
        # `text` gets the tokenizer's default special tokens: BOS (hence the double-BOS gotcha).
        prompts = [[BOS_ID] + encode(t) for t in ([text] if single else text)]
    else:
        ids = body["input_ids"]
        if not isinstance(ids, list) or not ids:
            raise BadRequest("input_ids must be a non-empty list")
        single = isinstance(ids[0], int)
        prompts = [ids] if single else ids
    for p in prompts:
        if not p or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < VOCAB_SIZE for t in p):
            raise BadRequest(f"input_ids must be non-empty lists of token ids in [0, {VOCAB_SIZE})")
    batch = not single
    sps = body.get("sampling_params") or {}
    if isinstance(sps, list):
        if not batch or len(sps) != len(prompts):
            raise BadRequest("sampling_params list must match the batch size")
        sps = [_check_sampling_params(sp) for sp in sps]
    else:
        sps = [_check_sampling_params(sps)] * len(prompts)
    ns = {sp.get("n", 1) for sp in sps}
    if len(ns) > 1:
        raise BadRequest("The parallel_sample_num should be the same for all samples in sample params.")
    n = ns.pop()
    rids = body.get("rid")
    if isinstance(rids, list) and (not batch or len(rids) != len(prompts) or len(set(rids)) != len(rids)):
        raise BadRequest("The rid should be a list with the same length as the batch, without duplicates.")
    if n > 1:
        for key in ("return_logprob", "logprob_start_len", "top_logprobs_num"):
            if isinstance(body.get(key), list):
                raise BadRequest(f"Cannot use list {key} with parallel_sample_num > 1")
        til = body.get("token_ids_logprob")
        if isinstance(til, list) and til and isinstance(til[0], list):
            raise BadRequest("Cannot use list token_ids_logprob with parallel_sample_num > 1")

    items: list[_Item] = []
    for i, (prompt, sp) in enumerate(zip(prompts, sps)):
        til = body.get("token_ids_logprob")
        if til is not None and batch and til and isinstance(til[0], list):
            til = til[i]
        rid = rids[i] if isinstance(rids, list) else (f"{rids}_{i}" if rids and batch else rids)
        start = _per_item(body.get("logprob_start_len", -1), i, batch)
        if start > len(prompt):
            raise BadRequest(f"logprob_start_len ({start}) is larger than the input length ({len(prompt)}).")
        max_new = sp.get("max_new_tokens", 128)
        if len(prompt) >= state.options.context_length:
            raise BadRequest(f"The input ({len(prompt)} tokens) is longer than the model's context length "
                             f"({state.options.context_length} tokens).")
        if len(prompt) + max_new > state.options.context_length:
            raise BadRequest(f"Requested token count exceeds the model's maximum context length of "
                             f"{state.options.context_length} tokens.")
        for s in range(n):
            items.append(_Item(
                prompt=list(prompt), params=sp,
                return_logprob=bool(_per_item(body.get("return_logprob", False), i, batch)),
                logprob_start_len=start,
                top_logprobs_num=int(_per_item(body.get("top_logprobs_num", 0), i, batch)),
                token_ids_logprob=til,
                # with n>1 SGLang regenerates request ids, so the caller's rid is not kept
                rid=uuid.uuid4().hex if n > 1 or not rid else str(rid), parallel_index=s))
    return items, single and n == 1


# What sglang-router 0.3.2 forwards of a /generate body (measured on its binary): it deserialises the body into
# a typed struct, so other top-level keys and other sampling_params keys are dropped silently, nulls too.
_ROUTER_TOP_KEYS = ("text", "input_ids", "sampling_params", "return_logprob", "logprob_start_len",
                    "top_logprobs_num", "token_ids_logprob", "return_text_in_logprobs", "stream", "rid")
_ROUTER_DEFAULTS = {"model": None, "return_text_in_logprobs": False, "stream": False, "log_metrics": True,
                    "return_hidden_states": False, "background": False, "no_logs": False, "return_bytes": False,
                    "return_entropy": False}
_ROUTER_SAMPLING_KEYS = ("temperature", "max_new_tokens", "top_p", "top_k", "frequency_penalty",
                         "presence_penalty", "repetition_penalty", "stop", "ignore_eos", "skip_special_tokens",
                         "min_p", "min_new_tokens", "stop_token_ids", "no_stop_trim", "n", "sampling_seed",
                         "json_schema", "regex", "ebnf")
_ROUTER_F32_KEYS = frozenset({"temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty",
                              "repetition_penalty"})


def _f32(value: float) -> float:
    """A float after a trip through the router's f32 field: the shortest decimal of the nearest f32, as
    serde writes it (0.7 stays 0.7, 0.123456789 becomes 0.12345679)."""
    return float(str(np.float32(value)))


def _router_body(body: Any) -> dict[str, Any]:
    """The body sglang-router 0.3.2 forwards to a worker, or BadRequest(422) where its typed parse fails
    (the messages below are the router's own, without its line/column suffix)."""
    def refuse(detail: str) -> BadRequest:
        return BadRequest(f"Failed to deserialize the JSON body into the target type: {detail}", 422)
    if not isinstance(body, dict):
        raise refuse("expected a JSON object")
    sp = body.get("sampling_params")
    if isinstance(sp, list):  # Option<SamplingParams>: the list's first element is read as a float
        raise refuse("sampling_params[0]: invalid type: map, expected f32")
    if sp is not None and not isinstance(sp, dict):
        raise refuse(f"sampling_params: invalid type: {type(sp).__name__}, expected struct SamplingParams")
    if body.get("text") is not None and not isinstance(body["text"], str):  # no batched text
        raise refuse(f"text: invalid type: {type(body['text']).__name__}, expected a string")
    out: dict[str, Any] = {k: body[k] for k in ("text", "input_ids") if body.get(k) is not None}
    out.update(_ROUTER_DEFAULTS)
    if sp is not None:
        kept: dict[str, Any] = {}
        for key in _ROUTER_SAMPLING_KEYS:
            v = sp.get(key)
            if v is None:
                continue
            if key in ("json_schema", "regex", "ebnf") and not isinstance(v, str):
                raise refuse(f"sampling_params.{key}: invalid type: map, expected a string")
            if key == "sampling_seed" and isinstance(v, int) and v < 0:
                raise refuse(f"sampling_params.sampling_seed: invalid value: integer `{v}`, expected u64")
            if key in ("max_new_tokens", "min_new_tokens", "n") and (isinstance(v, bool) or not isinstance(v, int)):
                raise refuse(f"sampling_params.{key}: invalid type: {v!r}, expected u32")
            if key in _ROUTER_F32_KEYS and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise refuse(f"sampling_params.{key}: invalid type: {v!r}, expected f32")
            kept[key] = _f32(v) if key in _ROUTER_F32_KEYS and isinstance(v, (int, float)) \
                and not isinstance(v, bool) else v
        out["sampling_params"] = kept
    for key in _ROUTER_TOP_KEYS[3:]:
        if body.get(key) is not None:
            out[key] = body[key]
    return out


def _router_own(path: str, options: StandinOptions) -> dict[str, Any] | None:
    """The answers sglang-router 0.3.2 gives itself (no worker server args, no max_model_len)."""
    if path == "/get_server_info":
        return {"router_manager": True, "routers_count": 1, "workers_count": max(1, len(options.worker_urls))}
    if path == "/v1/models":
        return {"object": "list", "data": [{"id": options.model_id, "object": "model", "owned_by": "local"}]}
    if path == "/workers":
        return {"workers": [{"url": u, "model_id": options.model_id, "worker_type": "regular", "is_healthy": True,
                             "connection_mode": "HTTP"} for u in options.worker_urls],
                "total": len(options.worker_urls)}
    return None


def _schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal value that satisfies simple JSON schemas (what a constrained decoder might emit)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    t = schema.get("type", "object")
    t = t[0] if isinstance(t, list) else t
    if t == "object":
        props = schema.get("properties", {})
        keys = schema.get("required", list(props))
        return {k: _schema_instance(props.get(k, {})) for k in keys}
    if t == "array":
        return [_schema_instance(schema.get("items", {}))] * max(1, schema.get("minItems", 1))
    return {"string": "answer", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(t, "answer")


def _triple(lp: float | None, tid: int, with_text: bool) -> list[Any]:
    return [None if lp is None else float(lp), int(tid), VOCAB[tid] if with_text else None]


def _top(lps: np.ndarray, k: int, with_text: bool) -> list[list[Any]]:
    order = np.argsort(-lps, kind="stable")[:k]
    return [_triple(lps[t], t, with_text) for t in order]


def _run_item(item: _Item, state: StandinState, with_text: bool) -> dict[str, Any]:
    opts = state.options
    sp = item.params
    max_new = sp.get("max_new_tokens", 128)
    temperature = float(sp.get("temperature", 1.0))
    greedy = temperature < 1e-6
    seed = sp.get("sampling_seed")
    rng = (np.random.default_rng(_stable_hash("sample", seed, tuple(item.prompt), item.parallel_index))
           if opts.deterministic and seed is not None else state.unseeded)
    stops = sp.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    forced: list[int] | None = None
    if sp.get("json_schema") is not None:
        forced = encode(json.dumps(_schema_instance(json.loads(sp["json_schema"])))) + [EOS_ID]

    out: list[int] = []
    out_lps: list[list[Any]] = []
    out_top: list[Any] = []
    out_ids_lps: list[list[Any]] = []
    finish: dict[str, Any] = {"type": "length", "length": max_new}
    seq = list(item.prompt)

    def record(lps_for_output: np.ndarray, tid: int | None) -> None:
        if tid is not None:
            out_lps.append(_triple(lps_for_output[tid], tid, with_text))
        if item.top_logprobs_num > 0:
            nulled = opts.null_top_every and (len(out_top) + 1) % opts.null_top_every == 0
            out_top.append(None if nulled else _top(lps_for_output, item.top_logprobs_num, with_text))
        if item.token_ids_logprob is not None:
            out_ids_lps.append([_triple(lps_for_output[t], t, with_text) for t in item.token_ids_logprob])

    if max_new == 0:
        # Prefill-only fast path (>=0.5.4): raw log_softmax of the next token, nothing sampled.
        record(raw_logprobs_after(seq), None)
    else:
        for step in range(max_new):
            if seed is not None and seed in opts.abort_seeds and step == min(2, max_new - 1):
                finish = {"type": "abort", "message": "Stand-in simulated abort (e.g. the request was aborted)",
                          "status_code": None, "err_type": None}
                break
            logits = logits_after(seq)
            raw = log_softmax(logits)
            scaled = raw if greedy else log_softmax(logits / temperature)
            if forced is not None:
                tid = forced[step] if step < len(forced) else EOS_ID
            elif greedy:
                tid = int(np.argmax(raw))
            else:
                p = np.exp(scaled)
                tid = int(rng.choice(VOCAB_SIZE, p=p / p.sum()))
            record(raw if greedy or opts.return_original_logprob else scaled, tid)
            out.append(tid)
            seq.append(tid)
            if tid == EOS_ID and not sp.get("ignore_eos"):
                finish = {"type": "stop", "matched": EOS_ID}
                break
            text_so_far = decode(out)
            hit = next((s for s in stops if s and s in text_so_far), None)
            if hit is not None:
                finish = {"type": "stop", "matched": hit}
                break

    text = decode(out, sp.get("skip_special_tokens", True))
    if finish["type"] == "stop" and isinstance(finish["matched"], str) and not sp.get("no_stop_trim"):
        text = text[:text.index(finish["matched"])]
    cached = min(_cached_prefix(state, item.prompt), len(item.prompt) - 1)
    if item.return_logprob and item.logprob_start_len >= 0:
        cached = min(cached, item.logprob_start_len)  # prompt logprobs cap the prefix match (reference §7)
    meta: dict[str, Any] = {
        "id": item.rid or uuid.uuid4().hex, "finish_reason": finish, "prompt_tokens": len(item.prompt),
        "completion_tokens": len(out), "cached_tokens": max(cached, 0), "reasoning_tokens": 0,
        "weight_version": "default", "num_retractions": 0, "e2e_latency": 0.001,
    }
    if item.return_logprob:
        _add_logprobs(meta, item, with_text, out_lps, out_top, out_ids_lps)
    return {"text": text, "output_ids": out, "meta_info": meta}


def _cached_prefix(state: StandinState, prompt: list[int]) -> int:
    """The longest prefix `prompt` shares with an earlier prompt (what a radix cache would hold), and
    remember it. In a sorted list the best match is a neighbour of the insertion point, so this stays
    cheap over thousands of prompts (a benchmark sends that many)."""
    key = tuple(prompt)
    with state.lock:
        seen = state.seen_prompts
        i = bisect.bisect_left(seen, key)
        best = max((_common_prefix(seen[j], prompt) for j in (i - 1, i) if 0 <= j < len(seen)), default=0)
        if i == len(seen) or seen[i] != key:
            seen.insert(i, key)
    return best


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _add_logprobs(meta: dict[str, Any], item: _Item, with_text: bool, out_lps: list[Any], out_top: list[Any],
                  out_ids_lps: list[Any]) -> None:
    in_lps: list[Any] = []
    in_top: list[Any] = []
    in_ids: list[Any] = []
    start = item.logprob_start_len
    if 0 <= start < len(item.prompt):
        for pos in range(start, len(item.prompt)):
            tid = item.prompt[pos]
            if pos == start:
                # The KV cache keeps no logits for the position before the first one (reference §2.1).
                in_lps.append(_triple(None, tid, with_text))
                in_top.append(None)
                in_ids.append(None)
                continue
            lps = raw_logprobs_after(item.prompt[:pos])
            in_lps.append(_triple(lps[tid], tid, with_text))
            in_top.append(_top(lps, item.top_logprobs_num, with_text))
            if item.token_ids_logprob is not None:
                in_ids.append([_triple(lps[t], t, with_text) for t in item.token_ids_logprob])
    meta["input_token_logprobs"] = in_lps
    meta["output_token_logprobs"] = out_lps
    meta["output_token_logprobs_length"] = len(out_lps)
    if item.top_logprobs_num > 0:
        meta["input_top_logprobs"] = in_top
        meta["output_top_logprobs"] = out_top
    if item.token_ids_logprob is not None:
        meta["input_token_ids_logprobs"] = in_ids
        meta["output_token_ids_logprobs"] = out_ids_lps


async def _sse(results: list[dict[str, Any]], items: list[_Item], single: bool,
               state: StandinState) -> AsyncIterator[bytes]:
    """Replay finished results as SSE events, one per token, interleaved across batch items; `text` is
    cumulative unless incremental_streaming (like --incremental-streaming-output)."""
    opts = state.options

    def cumulative(r: dict[str, Any], it: _Item, step: int) -> str:
        if step == len(r["output_ids"]):
            return r["text"]  # the final text, with a matched stop string trimmed
        return decode(r["output_ids"][:step], it.params.get("skip_special_tokens", True))

    def event(index: int, payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload if single else {**payload, 'index': index})}\n\n".encode()

    sent = 0
    longest = max((len(r["output_ids"]) for r in results), default=0)
    for step in range(1, longest + 1):
        for index, (r, it) in enumerate(zip(results, items)):
            n_out = len(r["output_ids"])
            if step > n_out:
                continue
            # A stream shorter than the limit breaks before its last event: the fault never misses.
            if opts.stream_error_after is not None and (sent >= opts.stream_error_after or step == n_out):
                yield b'data: {"error": {"message": "Stand-in simulated mid-stream failure", "code": 500}}\n\n'
                yield b"data: [DONE]\n\n"
                return
            text, ids = cumulative(r, it, step), r["output_ids"][:step]
            if opts.incremental_streaming:
                before = cumulative(r, it, step - 1)
                text = text.removeprefix(before)
                ids = ids[step - 1:]
            last = step == n_out
            meta = {k: v for k, v in r["meta_info"].items() if not k.endswith("logprobs")}
            meta.update(finish_reason=r["meta_info"]["finish_reason"] if last else None, completion_tokens=step)
            yield event(index, {"text": text, "output_ids": ids, "meta_info": meta})
            sent += 1
            if opts.token_delay:
                await asyncio.sleep(opts.token_delay)
    for index, r in enumerate(results):
        if not r["output_ids"]:  # nothing was streamed for it (prefill only, or aborted at once)
            yield event(index, r)
    yield b"data: [DONE]\n\n"


