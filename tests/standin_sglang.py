"""A STAND-IN for an SGLang server, for tests. It is NOT SGLang and runs no model.

It speaks the HTTP shapes documented in shared/reference/sglang-api.md (SGLang 0.5.23) closely enough to
exercise `backend.engines.sglang.SGLangEngine`: `/health`, `/get_model_info`, `/get_server_info`,
`/v1/models`, `/tokenize`, `/detokenize`, `/v1/score` and native `/generate` (single, batched, `n>1`,
streaming, prefill-only `max_new_tokens: 0`, teacher-forced prompt logprobs, logprob triples, all
finish_reason shapes). It enforces the documented validation (unknown `sampling_params` keys, a
non-string `json_schema`, more than one grammar, API key) so a client that gets these wrong fails here
as it would against the real server.

The "model" is a toy: a fixed vocabulary (special tokens, printable ASCII characters, a few words with
and without a leading space) tokenized by greedy longest match, a ChatML-like chat template, and logits
that are a deterministic pseudo-random function of the last few tokens. So raw logprobs are reproducible
and the same everywhere (sampling, prefill-only scoring, teacher forcing), which lets tests check
alignment exactly.

Failure simulation (constructor options, changeable at run time through `POST /_standin/config`):
router mode (sglang-router 0.3.2 as measured against its binary: a typed `/generate` body, see
`_router_body`; its own `/get_server_info`, `/v1/models` and `/workers`; 404 on the routes it does not
serve; `/get_model_info` answered as if proxied to a worker), dropped connections (any, or only those
arriving on a kept-alive connection), N failures with a given status (optionally with `Retry-After`),
503 from `/health` while "starting", requests that get no answer for a while (a client that gives up
aborts them, as SGLang does) or never (a server that hangs, then dies when stopped), 200 answers whose
body is truncated, cut off mid-transfer, malformed JSON or of the wrong shape, aborts, a mid-stream error, null top-k
entries, delays. `fault_match` aims the `/generate` faults at the requests whose prompt contains a text.
Every request is recorded; `GET /_standin/requests[?path=/generate]` returns them (tests assert on
shapes), `GET /_standin/stats` counters (most `/generate` requests in flight at once, requests held
unanswered now, requests their client gave up on), `POST /_standin/reset` clears them and restores the
initial options (so one server can serve many tests). With CRITLAB_SGLANG_BODY_LOG set (option `body_log`),
every POST/PUT body is also appended to that JSON-lines file for `make check-sglang` (tests/standin_body_log.py).

    base_url, stop = start_standin(api_key="k", router=True)
    python -m tests.standin_sglang --port 30000 [--api-key K] [--router] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests import standin_body_log
from tests.standin_model import (
    BOS_ID,
    VOCAB,
    VOCAB_SIZE,
    chat_ids,
    decode,
    encode,
    log_softmax,
    logits_after,
    raw_logprobs_after,
    write_hf_tokenizer_dir,
)
from tests.standin_protocol import (
    _AUTH_EXEMPT,
    _ROUTER_404,
    BadRequest,
    StandinOptions,
    StandinState,
    _error,
    _parse_generate,
    _router_body,
    _router_own,
    _run_item,
    _sse,
)

# The toy model's names, which the tests reach through this module (`si.encode`, `si.chat_ids`, ...).
__all__ = ["BOS_ID", "VOCAB", "VOCAB_SIZE", "StandinOptions", "chat_ids", "decode", "encode", "log_softmax",
           "logits_after", "make_app", "raw_logprobs_after", "start_standin", "write_hf_tokenizer_dir"]

# ---------------------------------------------------------------------------------------------------------
# The app

def _routes(state: StandinState) -> FastAPI:
    app = FastAPI(title="SGLang STAND-IN (tests only)")

    @app.get("/health")
    @app.get("/health_generate")
    async def health() -> Response:
        if state.take("health_503_times"):
            return Response(status_code=503)
        return Response(status_code=200)

    @app.get("/get_model_info")
    @app.get("/model_info")
    async def model_info() -> dict[str, Any]:
        o = state.options
        return {"model_path": o.model_id, "tokenizer_path": o.model_id, "is_generation": True,
                "preferred_sampling_params": None, "weight_version": "default", "served_model_name": o.model_id,
                "model_type": "standin", "architectures": ["StandinForCausalLM"]}

    @app.get("/get_server_info")
    @app.get("/server_info")
    async def server_info() -> dict[str, Any]:
        o = state.options
        return {"model_path": o.model_id, "served_model_name": o.model_id, "context_length": o.context_length,
                "enable_deterministic_inference": o.deterministic, "max_req_input_len": o.context_length - 1,
                "max_total_num_tokens": 100_000, "internal_states": [{}], "version": "0.5.23+standin",
                "frontend": "python"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        o = state.options
        return {"object": "list", "data": [{"id": o.model_id, "object": "model", "created": 0,
                                             "owned_by": "sglang", "root": o.model_id, "parent": None,
                                             "max_model_len": o.context_length}]}

    @app.post("/tokenize")
    @app.post("/v1/tokenize")
    async def tokenize(request: Request) -> Response:
        body = await request.json()
        if body.get("messages") is not None:
            ids = chat_ids(body["messages"], body.get("add_generation_prompt", True))
            return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": state.options.context_length})
        prompt = body.get("prompt")
        if prompt is None:
            return _error("Either prompt or messages must be provided.")
        special = body.get("add_special_tokens", True)
        one = isinstance(prompt, str)
        toks = [([BOS_ID] if special else []) + encode(p) for p in ([prompt] if one else prompt)]
        return JSONResponse({"tokens": toks[0] if one else toks,
                             "count": len(toks[0]) if one else [len(t) for t in toks],
                             "max_model_len": state.options.context_length})

    @app.post("/detokenize")
    @app.post("/v1/detokenize")
    async def detokenize(request: Request) -> dict[str, str]:
        body = await request.json()
        return {"text": decode(body.get("tokens", []), body.get("skip_special_tokens", True))}

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        body = await request.json()
        query, items, labels = body.get("query", ""), body.get("items", []), body.get("label_token_ids", [])
        items = [items] if isinstance(items, str) else items
        scores = []
        for it in items:
            ids = [BOS_ID] + encode(query + it) if isinstance(it, str) else list(query) + list(it)
            p = np.exp(raw_logprobs_after(ids)[labels])
            scores.append((p / p.sum() if body.get("apply_softmax") else p).tolist())
        return JSONResponse({"scores": scores, "model": state.options.model_id, "object": "scoring",
                             "usage": None})

    @app.api_route("/generate", methods=["POST", "PUT"])
    async def generate(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error("Invalid JSON body")
        if state.options.delay:
            await asyncio.sleep(state.options.delay)
        try:
            items, single = _parse_generate(body, state)
        except BadRequest as exc:
            return _error(exc.message, exc.status)
        with_text = bool(body.get("return_text_in_logprobs", False))
        results = [_run_item(it, state, with_text) for it in items]
        if body.get("stream"):
            return StreamingResponse(_sse(results, items, single, state), media_type="text/event-stream")
        return JSONResponse(results[0] if single else results)

    @app.get("/_standin/requests")
    async def recorded(path: str | None = None) -> list[dict[str, Any]]:
        with state.lock:
            return [r for r in state.requests if path is None or r["path"] == path]

    @app.get("/_standin/stats")
    async def stats() -> dict[str, int]:
        return {"max_inflight": state.max_inflight, "requests": len(state.requests), "held": state.held,
                "client_aborts": state.client_aborts, "generate_requests": state.generate_seen}

    @app.post("/_standin/reset")
    async def reset() -> dict[str, bool]:
        """Forget recorded requests, stats and the simulated prefix cache; restore the initial options."""
        with state.lock:
            state.requests.clear()
            state.seen_prompts.clear()
            state.max_inflight = 0
            state.clear_counters()
            state.options = dataclasses.replace(state.initial)
        return {"ok": True}

    @app.post("/_standin/config")
    async def configure(request: Request) -> Response:
        changes = await request.json()
        unknown = [k for k in changes if not hasattr(state.options, k)]
        if unknown:
            return _error(f"unknown stand-in option(s): {unknown}")
        with state.lock:
            for key, value in changes.items():
                setattr(state.options, key, tuple(value) if isinstance(value, list) else value)
            return JSONResponse(dataclasses.asdict(state.options))

    return app


class StandinApp:
    """The ASGI app. Recording, auth, router mode and failure injection happen here, before routing,
    so they apply uniformly (and a dropped connection can be simulated at all)."""

    def __init__(self, **options: Any) -> None:
        self.standin = StandinState(StandinOptions(**options))
        self.fastapi = _routes(self.standin)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> Any:
        log = self.standin.options.body_log
        if scope["type"] != "http" or not log or scope["method"] not in ("POST", "PUT") \
                or scope["path"].startswith("/_standin"):
            return await self._handle(scope, receive, send)
        logged = False

        async def watched(message: dict[str, Any]) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                # before the answer goes out: a client that has its answer finds the line written
                logged = True
                self._log_body(log, scope, message["status"])
            await send(message)

        try:
            return await self._handle(scope, receive, watched)
        finally:
            if not logged:  # dropped or held until the client gave up: no status
                self._log_body(log, scope, None)

    def _log_body(self, log: str, scope: dict[str, Any], status: int | None) -> None:
        record = scope.get("standin.record")
        if not record or record["json"] is None:
            return
        if self.standin.options.router:
            # Only what would reach a worker: a body the router refused (422) never does.
            if "forwarded" in record:
                standin_body_log.append(log, {"path": scope["path"], "source": "standin-router", "status": status,
                                              "body": record["forwarded"]})
            return
        standin_body_log.append(log, {"path": scope["path"], "source": standin_body_log.source_of(record["headers"]),
                                      "status": status, "body": record["json"]})

    async def _handle(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> Any:
        if scope["type"] != "http":
            return await self.fastapi(scope, receive, send)
        state, opts, path = self.standin, self.standin.options, scope["path"]
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body: Any = None
        record: dict[str, Any] = {}
        if not path.startswith("/_standin"):
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            record = {"method": scope["method"], "path": path, "json": body, "headers": headers}
            scope["standin.record"] = record
            with state.lock:
                state.requests.append(record)
        generate = path == "/generate"
        # Faults aimed with fault_match spare the other requests (and do not use up their budget on them).
        aimed = generate and (opts.fault_match is None or opts.fault_match in _prompt_text(body))
        with state.lock:
            reused = scope.get("client") in state.connections
            state.connections.add(scope.get("client"))
            if generate:
                state.generate_seen += 1
            nth = state.generate_seen
        if path in opts.drop_paths and (aimed or not generate) and state.take("drop_times"):
            # uvicorn's h11 protocol closes the transport without a response when the app returns a value:
            # what a client sees when the server drops a kept-alive connection.
            return "dropped"
        if generate and aimed and reused and state.take("drop_keepalive_times"):
            return "dropped"
        early: Response | None = None
        if opts.api_key and not path.startswith(_AUTH_EXEMPT) \
                and headers.get("authorization") != f"Bearer {opts.api_key}":
            early = JSONResponse({"error": "Unauthorized"}, status_code=401)
        elif opts.router and path in _ROUTER_404:
            early = Response("", status_code=404)
        elif opts.router and scope["method"] == "GET" and (own := _router_own(path, opts)) is not None:
            early = JSONResponse(own)
        elif opts.router and generate:
            try:
                forwarded = _router_body(body)
            except BadRequest as exc:
                early = Response(exc.message, status_code=exc.status, media_type="text/plain")
            else:
                raw = json.dumps(forwarded).encode()
                record["forwarded"] = forwarded  # what a worker behind the real router would get
        elif path in opts.fail_paths and (aimed or not generate) and state.take("fail_times"):
            early = _error(f"Stand-in simulated failure (HTTP {opts.fail_status})", opts.fail_status)
            if opts.retry_after is not None:
                early.headers["Retry-After"] = opts.retry_after
        if early is not None:
            return await early(scope, receive, send)
        if generate and opts.hang_after is not None and nth > opts.hang_after:
            await self._hold(receive, math.inf)
            return "dropped"  # stopped (a crash: no answer) or the client gave up
        if aimed and state.take("stall_times") and await self._hold(receive, opts.stall_s) != "elapsed":
            return "dropped"
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        if not generate:
            return await self.fastapi(scope, replay, send)
        if aimed and state.take("bad_body_times"):
            send = _BrokenBody(send, opts.bad_body)
        with state.lock:
            state.inflight += 1
            state.max_inflight = max(state.max_inflight, state.inflight)
        try:
            await self.fastapi(scope, replay, send)
            if isinstance(send, _BrokenBody):
                return await send.finish()
            return None
        finally:
            with state.lock:
                state.inflight -= 1

    async def _hold(self, receive: Callable[..., Any], seconds: float) -> str:
        """Keep a request unanswered for `seconds`: "elapsed"; or until its client disconnects:
        "client" (SGLang aborts such a request, so it costs the server nothing more); or until the server
        is stopped: "stopped"."""
        state = self.standin
        deadline = time.monotonic() + seconds
        with state.lock:
            state.held += 1
        try:
            while not state.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "elapsed"
                try:
                    # The body has been read, so the next message can only be the disconnect.
                    message = await asyncio.wait_for(receive(), min(left, 0.02))
                except TimeoutError:
                    continue
                if message["type"] == "http.disconnect":
                    with state.lock:
                        state.client_aborts += 1
                    return "client"
            return "stopped"
        finally:
            with state.lock:
                state.held -= 1


def _prompt_text(body: Any) -> str:
    """The prompt(s) of a /generate body as text, for fault_match."""
    if not isinstance(body, dict):
        return ""
    if body.get("input_ids") is not None:
        ids = body["input_ids"]
        rows = ids if ids and isinstance(ids[0], list) else [ids]
        return "\n".join(decode([t for t in row if isinstance(t, int) and 0 <= t < VOCAB_SIZE]) for row in rows)
    text = body.get("text")
    return "\n".join(text) if isinstance(text, list) else str(text or "")


class _BrokenBody:
    """An ASGI `send` that spoils a successful answer: `truncated` sends the first half of the body with a
    Content-Length that matches it (a proxy that cut and re-framed it), `malformed` the body with its first
    colon removed (not JSON any more), `cut` the real Content-Length but only half the bytes before the
    connection closes (the server died mid-transfer), `wrong_shape` valid JSON whose logprob entries are
    not numbers (a server speaking another version of the API)."""

    MODES = ("truncated", "malformed", "cut", "wrong_shape")

    def __init__(self, send: Callable[..., Any], mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"bad_body must be one of {self.MODES}, not {mode!r}")
        self.send, self.mode = send, mode
        self.start: dict[str, Any] | None = None
        self.body = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    async def finish(self) -> str | None:
        assert self.start is not None
        body, half = self.body, self.body[:len(self.body) // 2]
        if self.mode == "truncated":
            body = half
        elif self.mode == "malformed":
            body = body.replace(b":", b" ", 1)
        elif self.mode == "wrong_shape":
            results = json.loads(body)
            for r in results if isinstance(results, list) else [results]:
                r["meta_info"]["output_token_logprobs"] = [["not a number", "x", None]]
                r["meta_info"]["output_token_ids_logprobs"] = [[["not a number", "x", None]]]
            body = json.dumps(results).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(self.body if self.mode == "cut" else body)).encode()))
        await self.send({**self.start, "headers": headers})
        if self.mode == "cut":
            await self.send({"type": "http.response.body", "body": half, "more_body": True})
            return "cut"  # uvicorn closes the transport: the client is left short of Content-Length
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
        return None


def make_app(**options: Any) -> StandinApp:
    """The stand-in ASGI app; `.standin` is its StandinState (options, recorded requests)."""
    return StandinApp(**options)


# ---------------------------------------------------------------------------------------------------------
# Running it

def _config(app: Any, options: StandinOptions, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(app, http="h11", lifespan="off", log_level="critical", access_log=False,
                          timeout_keep_alive=options.keep_alive_timeout, timeout_graceful_shutdown=1, **kw)


def start_standin(*, port: int = 0, **options: Any) -> tuple[str, Callable[[], None]]:
    """Serve a stand-in on 127.0.0.1 (a free port unless `port` is given: a "restarted" server at the same
    URL) in a background thread; returns (base_url, stop). `stop` drops requests held unanswered, so a
    test can kill the server in the middle of a job."""
    app = make_app(**options)
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only then; without it every response waits ~40 ms
    # for a delayed ACK (Nagle), since uvicorn writes headers and body separately.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, app.standin.options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"standin-sglang-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the SGLang stand-in did not start")
        time.sleep(0.005)

    def stop() -> None:
        app.standin.stopping = True
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SGLang STAND-IN server for tests (not SGLang, no model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--router", action="store_true",
                        help="behave like sglang-router 0.3.2 in front of this server (typed /generate body)")
    parser.add_argument("--model-id", default=StandinOptions.model_id)
    parser.add_argument("--context-length", type=int, default=StandinOptions.context_length)
    parser.add_argument("--no-deterministic", action="store_true", help="ignore sampling_seed")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering /generate")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed events")
    args = parser.parse_args(argv)
    options = {"api_key": args.api_key, "router": args.router, "model_id": args.model_id,
                   "context_length": args.context_length, "deterministic": not args.no_deterministic,
                   "delay": args.delay, "token_delay": args.token_delay}
    app = make_app(**options)
    uvicorn.Server(_config(app, app.standin.options, host=args.host, port=args.port)).run()


if __name__ == "__main__":
    main()

