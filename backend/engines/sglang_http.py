"""The HTTP side of the SGLang client: one pooled httpx client with retries on transient failures
(connection errors, timeouts, 408/429/5xx, honouring Retry-After up to a bound) and SGLang's error
messages surfaced as `SGLangHTTPError`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.engines.base import EngineError

log = logging.getLogger(__name__)

API_KEY_ENV = "CRITLAB_SGLANG_API_KEY"
# Names the client in the server's (and a proxy's) logs, and lets the test stand-in tell critlab's requests
# from a test's own (tests/standin_body_log.py).
USER_AGENT = "critlab-sglang-client"

# SGLang's uvicorn closes idle keep-alive connections after 5 s; reusing one the server is closing at that
# moment fails with "Server disconnected" (reference §8.5), so the pool forgets idle connections first.
KEEPALIVE_EXPIRY_S = 2.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # 408: router queue timeout (reference §6.3)
_MAX_BACKOFF_S = 10.0
# The longest Retry-After obeyed: a server asking for minutes is tried again sooner, and if it still refuses
# when the retries run out, the job fails with its message instead of sitting silent.
_MAX_RETRY_AFTER_S = 30.0


class SGLangHTTPError(EngineError):
    """The server answered with an HTTP error status (after any retries)."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


# ---------------------------------------------------------------------------------------------------------
# HTTP with retries

def _server_message(resp: httpx.Response) -> str:
    """The human part of an SGLang / router / FastAPI error body, whatever its shape."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is body:
            err = body.get("message") or body.get("detail") or body
        return str(err)[:500]
    return str(body)[:500]


class Http:
    """httpx with retries. Transient failures are retried with exponential backoff and jitter (at least
    what a `Retry-After` asks for): connection errors (refused, reset, a kept-alive connection the server
    dropped), timeouts (the client's disconnect aborts the request on the server, so the retry does not
    queue behind its own ghost), `_RETRY_STATUSES`, and 2xx bodies that are not the JSON they should be
    (truncated or garbled on the way). Everything else fails at once with the server's message."""

    def __init__(self, *, api_key: str | None, timeout: float, max_retries: int, backoff: float,
                 max_connections: int) -> None:
        headers = {"User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S))

    def __repr__(self) -> str:
        return "<Http>"  # the default repr could lead someone to print headers; the key lives there

    def close(self) -> None:
        self.client.close()

    def _wait(self, what: str, url: str, attempt: int, reason: str, resp: httpx.Response | None = None) -> None:
        delay = min(_MAX_BACKOFF_S, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.5)
        asked = _retry_after(resp.headers.get("retry-after")) if resp is not None else None
        if asked is not None:
            delay = max(delay, min(asked, _MAX_RETRY_AFTER_S))
        log.info("%s: %s from %s; retry %d of %d in %.3g s", what, reason, url, attempt + 1, self.max_retries,
                 delay, extra={"retry_delay": delay, "retry_reason": reason, "retry_after": asked})
        time.sleep(delay)

    def _status_error(self, what: str, url: str, resp: httpx.Response, attempts: int) -> SGLangHTTPError:
        msg = _server_message(resp)
        hint = ""
        if resp.status_code == 401:
            hint = f" Check the API key (${API_KEY_ENV})."
        elif resp.status_code == 429:
            hint = " The server (or router) is over its request limit; lower the concurrency or try later."
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        return SGLangHTTPError(f"{what}: {url} answered HTTP {resp.status_code}{tried}: {msg}.{hint}",
                               resp.status_code, msg)

    def _transport_error(self, what: str, url: str, exc: httpx.HTTPError, attempts: int) -> EngineError:
        tried = f"{attempts} attempt(s)"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return EngineError(f"{what}: no answer from {url} within {self.timeout:g} s, {tried} (the server may "
                               "be overloaded; raise the timeout)")
        detail = f"{type(exc).__name__}: {exc or 'no details'}"
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return EngineError(f"{what}: cannot connect to {url} after {tried} ({detail})")
        return EngineError(f"{what}: lost the connection to {url} after {tried} ({detail})")

    def _call(self, method: str, url: str, what: str, body: Any, retry_statuses: frozenset[int],
              parse: bool) -> tuple[httpx.Response, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                resp = self.client.request(method, url, json=body)
            # DecodingError: a body that fails its Content-Encoding, i.e. damaged on the way.
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if last:
                    raise self._transport_error(what, url, exc, attempt + 1) from exc
                self._wait(what, url, attempt, type(exc).__name__)
                continue
            if resp.status_code >= 400:
                if resp.status_code in retry_statuses and not last:
                    self._wait(what, url, attempt, f"HTTP {resp.status_code}", resp)
                    continue
                raise self._status_error(what, url, resp, attempt + 1)
            if not parse:
                return resp, None
            try:
                return resp, resp.json()
            except ValueError as exc:  # incl. UnicodeDecodeError
                if last:
                    start = resp.text[:200] + ("..." if len(resp.text) > 200 else "")  # a proxy's page says who
                    raise EngineError(
                        f"{what}: {url} answered with a body that is not valid JSON, {attempt + 1} attempt(s) "
                        f"({len(resp.content)} bytes: {start!r})") from exc
                self._wait(what, url, attempt, "a body that is not valid JSON")
        raise AssertionError("unreachable")

    def request(self, method: str, url: str, what: str, body: Any = None,
                retry_statuses: frozenset[int] = _RETRY_STATUSES) -> httpx.Response:
        """A response below 400, after retries (see the class)."""
        return self._call(method, url, what, body, retry_statuses, parse=False)[0]

    def post_json(self, url: str, what: str, body: Any) -> Any:
        """The decoded JSON answer to a POST, after retries (see the class)."""
        return self._call("POST", url, what, body, _RETRY_STATUSES, parse=True)[1]

    def stream_events(self, url: str, what: str, body: Any) -> Iterator[dict[str, Any]]:
        """SSE `data:` payloads until `[DONE]`. Retries only until the first event: after that a retry would
        replay text the caller has already shown."""
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            started = False
            try:
                with self.client.stream("POST", url, json=body) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        if resp.status_code in _RETRY_STATUSES and not last:
                            self._wait(what, url, attempt, f"HTTP {resp.status_code}", resp)
                            continue
                        raise self._status_error(what, url, resp, attempt + 1)
                    for line in resp.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        try:
                            event = json.loads(data)
                        except ValueError as exc:
                            raise EngineError(f"{what}: malformed stream event from {url}: {data[:200]!r}") \
                                from exc
                        started = True
                        yield event
                    return
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if started or last:
                    raise self._transport_error(what, url, exc, attempt + 1) from exc
                self._wait(what, url, attempt, type(exc).__name__)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
