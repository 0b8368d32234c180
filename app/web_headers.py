"""Browser-facing rules for every request: no cross-origin reads or writes, no framing, no MIME sniffing.

Gradio adds its own CORS handling to the mounted UI: it reflects any localhost origin with credentials
(a page on another local port could read `/ui/gradio_api/user` and upload files as the logged-in
person) and any origin at all when the Host header is not localhost. It steps aside when the parent
app has Starlette's CORSMiddleware, so critlab installs one that allows no origin: nothing the server
sends carries Access-Control-Allow-Origin, and a cross-origin preflight is refused.

CORS only keeps the answer from the other page. A form-encoded or multipart POST (Gradio's upload) needs
no preflight, and the SameSite=Strict cookie goes along from another port of the same host (same site),
so writes from another origin are refused here outright.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# What the UI needs still loads: Gradio's scripts and styles (inline ones included) come from this
# server, and its images are this server's files or data:/blob: URLs. Images from anywhere else (a
# Markdown image in some text) are not fetched; no page may frame critlab's (clickjacking).
CSP = "frame-ancestors 'none'; img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; form-action 'self'"
HEADERS = {
    b"x-frame-options": b"DENY",  # frame-ancestors for browsers that predate it
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"cross-origin-opener-policy": b"same-origin",
}


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_origin(scope: Scope) -> bool:
    """Whether a browser sent this request from another origin (by its Origin or Sec-Fetch-Site header).
    Scripts and the CLI send neither and are not affected."""
    request = Request(scope)
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.headers.get('host', '')}":
        return True
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


class SecurityHeaders:
    """Refuses unsafe methods from another origin (403), and adds HEADERS (unless the response set its own)
    and CSP to every HTTP response. A route with a stricter policy of its own (the login page) keeps it: the
    browser enforces both."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and cross_origin(scope):
            refusal = JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS.items() if k not in present]
                headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        return with_headers


def _all_headers() -> dict[str, str]:
    return {**{k.decode(): v.decode() for k, v in HEADERS.items()}, "content-security-policy": CSP}


async def internal_error(_: Request, exc: Exception) -> JSONResponse:
    """A bug's answer. Starlette sends it from its own error middleware, which sits outside every added
    one, so it carries the headers itself; the exception (which may name paths or data) stays in the log."""
    return JSONResponse({"error": "internal error: the server's log has the details"}, status_code=500,
                        headers=_all_headers())


def add_web_headers(api: FastAPI) -> None:
    """Install both on the app, outermost, so every answer (a refusal by the session gate too) has them."""
    api.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    api.add_middleware(SecurityHeaders)
    api.add_exception_handler(Exception, internal_error)
