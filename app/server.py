"""The web server: FastAPI with the JSON API, the login page, and the Gradio UI mounted at /ui.

Every route checks the caller server-side: a session cookie (people) or the admin token from the
lock file (the CLI while the server runs).
"""

from __future__ import annotations

import contextlib
import hmac
import math
import secrets
from collections.abc import AsyncIterator, Callable, MutableMapping
from importlib import resources
from typing import Annotated, Any

import anyio.to_thread
import gradio as gr
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.types import ASGIApp, Receive, Scope, Send

from app import lockfile
from app.api_label import label_router
from app.body_guard import BodyGuard
from app.auth import COOKIE, LoginLimiter, Sessions, is_public, load_or_create_key
from app.services.context import AppContext, PermissionDenied, ServiceError, TooManyRequests
from app.services.downloads import DownloadGone
from app.services.ops import run_op
from app.services.paths import web_paths
from app.services.rate import LIVE_TOKEN_CAP, SUBMITS_PER_MINUTE, RateLimit
from app.web_headers import add_web_headers
from backend.engines.base import EngineError
from storage import annotators, jobs, judgments, members, studies
from storage import sessions as login_sessions
from storage.db import DatabaseFatalError, DatabaseReopened
from storage.fileio import SPACE_ERRNOS, json_error, kind, loads
from storage.models import Annotator
from storage.studies import NotFoundError

CLI_USER = "cli-admin"
# Where the session gate leaves the user it checked, so the route's dependency does not look them up again
# (each lookup is a database round trip). Set only by the gate, for this one request.
USER_SCOPE_KEY = "critlab.user"
MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number in a path is refused before it reaches DuckDB


class ServerState:
    def __init__(self, ctx: AppContext, sessions: Sessions, admin_token: str):
        self.ctx, self.sessions, self.admin_token = ctx, sessions, admin_token
        self.limiter = LoginLimiter()
        # Password checks in flight (each scrypt takes 128 MiB): the rest wait on the event loop, not in
        # worker threads that every other request needs. Made on first use, inside the event loop.
        self.login_slots: anyio.CapacityLimiter | None = None

    def is_cli(self, request: Request) -> bool:
        """Whether the request carries the admin token from the lock file (the CLI, as the database owner)."""
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), self.admin_token.encode())

    def user_from_request(self, request: Request) -> Annotator | None:
        """The person of a live session (cookie) or the CLI (admin bearer token), else None."""
        if self.is_cli(request):
            return Annotator(id=0, name=CLI_USER, role="admin")
        return self.sessions.check(self.ctx.db, request.cookies.get(COOKIE))


def _check_json_post(request: Request) -> None:
    """JSON POST routes take only same-origin application/json, so a cross-site form cannot post."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPException(415, "send Content-Type: application/json")
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.headers.get('host', '')}":
        raise HTTPException(403, "cross-origin request refused")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site request refused")


class SessionGate:
    """Deny by default: every non-public path needs a live session (or the admin token) before any route
    runs. Gradio leaves some of its routes open (cancel, heartbeat, openapi.json ...), and a route added
    later must not be reachable without a session by forgetting a check.

    A plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and stream wrappers per request);
    for the JSON routes the user lookup runs in a worker thread, not on the event loop.
    """

    def __init__(self, app: ASGIApp, *, state: ServerState, gradio_user: Callable[[Request], str | None]) -> None:
        self.app, self.state, self.gradio_user = app, state, gradio_user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # as before (BaseHTTPMiddleware passed these through)
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = request.url.path
        if is_public(path):
            await self.app(scope, receive, send)
            return
        if path == "/ui" or path.startswith("/ui/"):
            # Inline, in arrival order: checked in worker threads, Gradio's queue requests (join, data
            # stream, heartbeat) could overtake each other, and a submit then ran twice in the browser
            # (e2e_tests/test_three_annotators.py caught it).
            user = self.state.user_from_request(request)
            allowed = user is not None and user.name != CLI_USER  # the admin token is not a person
        else:
            user = await anyio.to_thread.run_sync(self.state.user_from_request, request)
            allowed = user is not None
        # For the route (and Gradio's auth_dependency) not to look the session up a second time.
        scope[USER_SCOPE_KEY] = user
        if not allowed:
            if request.method == "GET" and path in ("/ui", "/ui/"):  # a person: send them to the login page
                response: Response = RedirectResponse("/login", status_code=303)
            else:
                response = JSONResponse({"error": "log in first"}, status_code=401)
            await response(scope, receive, send)
            return
        if request.method == "GET" and path in ("/ui", "/ui/"):
            await self.app(scope, receive, _no_store(send))
            return
        await self.app(scope, receive, send)


def _no_store(send: Send) -> Send:
    """The UI's page is never kept by the browser: Back after logging out asks the server again (and the
    gate sends the visitor to the login page) instead of showing the old page from the cache."""
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
        await send(message)
    return wrapped


def create_app(ctx: AppContext, *, admin_token: str | None = None, sessions: Sessions | None = None,
               url: str | None = None, on_start: Callable[[], None] | None = None,
               session_idle: float | None = None, session_lifetime: float | None = None,
               submits_per_minute: int = SUBMITS_PER_MINUTE, live_token_cap: int = LIVE_TOKEN_CAP) -> FastAPI:
    """Build the app. With `url`, the lock file is written at start-up and removed at shutdown;
    `on_start` runs once the server owns the database (the demo starts its generation job there).
    `session_idle` / `session_lifetime` (seconds) override the defaults of app.auth unless `sessions` is given;
    `submits_per_minute`: the labels one person may submit per minute (0: no limit); `live_token_cap`: the
    tokens (samples x max tokens) one Live generation may ask for (0: no cap)."""
    timeouts = {k: v for k, v in (("idle", session_idle), ("lifetime", session_lifetime)) if v is not None}
    ctx.submit_limit = RateLimit(submits_per_minute) if submits_per_minute else None
    ctx.live_token_cap = live_token_cap
    state = ServerState(ctx, sessions or Sessions(load_or_create_key(ctx.db.path), **timeouts),
                        admin_token or secrets.token_urlsafe(32))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs.fail_interrupted(ctx.db)
        login_sessions.housekeep(ctx.db, idle=state.sessions.idle, lifetime=state.sessions.lifetime,
                                 now=state.sessions.now())
        if url:
            lockfile.write_lock(ctx.db.path, url, state.admin_token, engine=ctx.default_engine.describe())
        if on_start:
            on_start()
        try:
            yield
        finally:
            if url:
                lockfile.remove_lock(ctx.db.path)
            state.sessions.close()  # its queued writes land before the database closes
            ctx.close()  # cancels jobs, deletes download copies, CHECKPOINT, close

    api = FastAPI(title="critlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.critlab = state

    # Async, with no I/O: a sync dependency costs a worker-thread round trip per request.
    async def current_user(request: Request) -> Annotator:
        # The gate looked this request's user up moments ago (a route behind the gate never sees None
        # there: the gate answered 401 itself); anything else is looked up now.
        user = request.scope.get(USER_SCOPE_KEY)
        if user is None:
            user = await anyio.to_thread.run_sync(state.user_from_request, request)
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    # Dependency markers as values (not calls in the signatures), so each route names its check plainly.
    needs_user = Depends(current_user)

    async def admin_user(user: Annotator = needs_user) -> Annotator:
        if user.role != "admin":
            raise HTTPException(403, "admins only")
        return user

    needs_admin = Depends(admin_user)

    @api.exception_handler(ServiceError)
    @api.exception_handler(NotFoundError)
    @api.exception_handler(EngineError)
    @api.exception_handler(ValueError)
    async def _user_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @api.exception_handler(TooManyRequests)
    async def _too_many(_: Request, exc: Exception) -> JSONResponse:
        wait = exc.retry_after if isinstance(exc, TooManyRequests) else 60
        return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(wait)})

    @api.exception_handler(DatabaseReopened)
    @api.exception_handler(DatabaseFatalError)
    async def _database_gone(_: Request, exc: Exception) -> JSONResponse:
        # Reopened: the next request works. Fatal: the server is stopping (the CLI's on_fatal).
        return JSONResponse({"error": str(exc)}, status_code=503)

    @api.exception_handler(PermissionDenied)
    @api.exception_handler(members.NotMember)
    async def _denied(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=403)

    @api.exception_handler(DownloadGone)
    async def _gone(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @api.exception_handler(OSError)
    async def _storage_error(_: Request, exc: Exception) -> JSONResponse:
        # Disk full, size limit, read-only storage: the operation failed as a whole, the server is fine.
        full = isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS
        return JSONResponse({"error": str(exc)}, status_code=507 if full else 500)

    @api.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @api.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        return RedirectResponse("/ui/" if state.user_from_request(request) else "/login", status_code=303)

    @api.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        page = resources.files("app.ui").joinpath("login.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline';"
                                                                      " style-src 'unsafe-inline'; img-src 'none'"})

    @api.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        _check_json_post(request)
        name, password = _login_fields(await request.body())  # at most 64 KiB: BodyGuard
        # The client's own address: uvicorn rewrites it from X-Forwarded-For only for the proxies named by
        # `critlab serve --forwarded-allow-ips` (none by default).
        client = request.client.host if request.client else "?"
        keys = (f"name:{name}", f"ip:{client}")
        limiter = state.limiter
        if not limiter.check_slot():
            return JSONResponse({"error": "too many logins at once; try again in a few seconds"}, status_code=503,
                                headers={"Retry-After": "2"})
        try:
            ticket = limiter.reserve(*keys)  # counted before the password is checked: see LoginLimiter
            if ticket is None:
                wait = limiter.retry_after(*keys)
                return JSONResponse({"error": f"too many failed logins; try again in {math.ceil(wait / 60)} min"},
                                    status_code=429, headers={"Retry-After": str(wait)})
            # scrypt takes ~0.5 s by design: in a worker thread, or every other request would wait behind it;
            # at most two at once (128 MiB each), the others of the admitted logins wait on the event loop.
            state.login_slots = state.login_slots or anyio.CapacityLimiter(2)
            user = await anyio.to_thread.run_sync(annotators.authenticate, ctx.db, name, password,
                                                  limiter=state.login_slots)
        finally:
            limiter.end_check()
        if user is None:
            return JSONResponse({"error": "wrong name or password"}, status_code=401)
        limiter.release(ticket)  # a right password is no failed attempt
        token = await anyio.to_thread.run_sync(state.sessions.issue, ctx.db, user.name)
        resp = JSONResponse({"name": user.name, "role": user.role})
        resp.set_cookie(COOKIE, token, max_age=state.sessions.max_age, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
        return resp

    # Logging out ends the session on the server: a copy of the cookie (another tab, a script, a stolen
    # header) stops working too, not only the browser's.
    @api.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        _check_json_post(request)
        state.sessions.end(ctx.db, request.cookies.get(COOKIE))
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @api.get("/logout", include_in_schema=False)
    def logout_page(request: Request) -> RedirectResponse:
        state.sessions.end(ctx.db, request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @api.get("/api/me")
    def me(user: Annotator = needs_user) -> dict[str, Any]:
        return user.model_dump()

    @api.get("/api/studies/{study}/judgments")
    def study_judgments(study: str, judge: str | None = None, include_superseded: bool = False,
                        user: Annotator = needs_user) -> dict[str, Any]:
        # Annotators read only their own labels, so nobody sees another's in a blind study, and only in a
        # study they are a member of.
        s = studies.get_study(ctx.db, study)
        if user.role != "admin":
            if judge not in (None, user.name):
                raise HTTPException(403, "annotators can read only their own judgments")
            judge = user.name
            members.check(ctx.db, s.id, user.name)
        rows = (judgments.all_rows(ctx.db, study_id=s.id, judge=judge) if include_superseded
                else judgments.current(ctx.db, study_id=s.id, judge=judge, stage=None))
        return {"study": s.name, "judgments": [j.model_dump(mode="json") for j in rows]}

    api.include_router(label_router(ctx, current_user, _check_json_post, machine_user=CLI_USER))

    @api.get("/api/downloads/{token}")
    def download(token: str, user: Annotator = needs_user) -> FileResponse:
        """A file the UI offered to this person (app/services/downloads.py): checked again for their role and,
        for a study's file, their membership; anyone else's link, a used or an expired one answers 404."""
        offer = ctx.downloads.take(token, user, lambda study_id, who: members.can_label(ctx.db, study_id, who))
        after = BackgroundTask(ctx.downloads.discard, offer) if offer.single_use else None
        return FileResponse(offer.path, media_type=offer.media_type, filename=offer.filename, background=after,
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @api.get("/api/jobs/{job_id}")
    def job(job_id: Annotated[int, FastAPIPath(ge=1, le=MAX_ID)], _: Annotator = needs_admin) -> dict[str, Any]:
        try:
            return jobs.get_job(ctx.db, job_id).model_dump(mode="json")
        except LookupError as e:
            raise HTTPException(404, str(e)) from None

    @api.post("/api/admin/op/{name}")
    async def admin_op(name: str, request: Request, user: Annotator = needs_admin) -> dict[str, Any]:
        _check_json_post(request)
        payload = await request.json()
        if not isinstance(payload, dict):
            raise HTTPException(400, "the body must be a JSON object")
        # A login session names files only in the uploads and exports folders; the admin token (the CLI, run
        # by the database owner) names any. Decided by how the caller authenticated, not by their name.
        web = None if state.is_cli(request) else web_paths(ctx)
        # Runs in a worker thread: ops touch the database and may take a while.
        return await anyio.to_thread.run_sync(lambda: run_op(ctx, user.name, name, payload, web=web))

    from app.ui.layout import CSS, HEAD, build_ui

    blocks = build_ui(ctx, role_of=lambda name: _role(ctx, name))
    blocks.queue(default_concurrency_limit=8, max_size=256)

    def gradio_user(request: Request) -> str | None:
        # Gradio asks this for every one of its requests, which the session gate has just checked.
        user = request.scope[USER_SCOPE_KEY] if USER_SCOPE_KEY in request.scope else state.user_from_request(request)
        return user.name if user and user.name != CLI_USER else None

    # Added first, so it runs inside the gate: a request without a session is refused before its body is read.
    api.add_middleware(BodyGuard)
    api.add_middleware(SessionGate, state=state, gradio_user=gradio_user)
    add_web_headers(api)  # after the gate: outermost, so its refusals carry the headers too

    return gr.mount_gradio_app(api, blocks, path="/ui", auth_dependency=gradio_user, footer_links=[],
                               head=HEAD, css=CSS, ssr_mode=False, run_history=False,
                               theme=gr.themes.Soft())


def _login_fields(raw: bytes) -> tuple[str, str]:
    """(name, password) of a login body, or a 400 naming what is wrong with it."""
    try:
        body = loads(raw.decode("utf-8"))
    except ValueError as e:  # includes UnicodeDecodeError; BodyGuard has usually refused these already
        raise HTTPException(400, f"the login body is not JSON: {json_error(e)}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, f'send a JSON object {{"name": ..., "password": ...}}, not {kind(body)}')
    name, password = body.get("name", ""), body.get("password", "")
    if not isinstance(name, str) or not isinstance(password, str):
        raise HTTPException(400, "name and password must be text")
    if len(name) > annotators.MAX_NAME:
        raise HTTPException(400, f"the name is longer than {annotators.MAX_NAME} characters")
    if len(password) > annotators.MAX_PASSWORD:
        raise HTTPException(400, f"the password is longer than {annotators.MAX_PASSWORD} characters")
    return name, password


def _role(ctx: AppContext, name: str | None) -> str | None:
    a = annotators.get_annotator(ctx.db, name) if name else None
    return a.role if a and not a.disabled else None
