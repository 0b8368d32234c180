"""Request bodies of the JSON API: bounded in size before they are read, and checked to be JSON critlab
can hold before any route parses them.

Without a cap a route reads the whole body into memory: four concurrent 100 MB bodies to /api/login
(which needs no session) took the server from 0.9 to 2.1 GB. The guard answers 413 from the
Content-Length header alone when it is too large, and stops reading a body sent without one (chunked)
as soon as it passes the cap. A JSON body is then parsed once with storage.fileio's strict rules, so
nesting deeper than 200 levels, a lone UTF-16 surrogate (which UTF-8 cannot store) or a duplicate key
is a clear 400 instead of an error deep in a route.

Gradio's own routes (/ui/...) are left to Gradio (uploads have their own limit).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.fileio import json_error, loads

LOGIN_MAX_BYTES = 64 * 1024  # a name and a password
API_MAX_BYTES = 1024 * 1024  # a label (answers, a comment) or an admin operation's settings
_LIMITS = {"/api/login": LOGIN_MAX_BYTES, "/api/logout": LOGIN_MAX_BYTES}


def body_limit(path: str) -> int | None:
    """The most bytes a request body to `path` may have (None: not this guard's business).

    >>> body_limit("/api/login"), body_limit("/api/admin/op/export"), body_limit("/ui/gradio_api/upload")
    (65536, 1048576, None)
    """
    if path in _LIMITS:
        return _LIMITS[path]
    return API_MAX_BYTES if path.startswith("/api/") else None


def _kib(n: int) -> str:
    return f"{n // 1024} KiB"


class BodyGuard:
    """ASGI middleware: cap and pre-check the bodies of /api/ requests, then hand the body on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = body_limit(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(scope, receive, send, 400, "Content-Length must be a number of bytes")
                return
            if int(declared) > limit:
                await _answer(scope, receive, send, 413, f"the request body is {int(declared):,} bytes; "
                              f"{scope['path']} takes at most {_kib(limit)}")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(scope, receive, send, 413, f"the request body is larger than {_kib(limit)}, "
                              f"the most {scope['path']} takes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype == b"application/json" and body:
            problem = _json_problem(body)
            if problem:
                await _answer(scope, receive, send, 400, f"the request body is not JSON critlab can read: {problem}")
                return
        await self.app(scope, _replay(body, receive), send)


def _json_problem(body: bytes) -> str | None:
    try:
        loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        return f"not UTF-8 (byte 0x{body[e.start]:02x} at byte {e.start + 1})"
    except ValueError as e:  # syntax, nesting, lone surrogates, duplicate keys
        return json_error(e)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body in one message, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    headers: MutableMapping[str, Any] = {"connection": "close"} if status == 413 else {}
    await JSONResponse({"error": error}, status_code=status, headers=dict(headers))(scope, receive, send)
