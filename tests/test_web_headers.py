"""Issue 13, finding 9: no answer lets another origin read it (Gradio's own CORS handling reflected any
localhost origin with credentials, and any origin when Host was not localhost), writes from another origin
are refused, and every answer, /ui/ included, carries the security headers.

Real HTTP requests against `critlab serve`, as a browser on another origin would send them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage import annotators
from storage.db import Database
from tests.server_process import ENV, start_serve, stop
from tests.security_server import PASSWORDS, seed, serve

PASSWORD = "admin-pass-12"
ORIGINS = ["http://localhost:9999", "http://127.0.0.1:9999", "http://evil.example", "null"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, httpx.Client]]:
    d = tmp_path_factory.mktemp("headers")
    db = Database(d / "h.duckdb")
    annotators.add_annotator(db, "admin", "admin", PASSWORD)
    db.close()
    uploads = d / "uploads"
    proc, url = start_serve(d / "h.duckdb", d / "server.log", env={**ENV, "GRADIO_TEMP_DIR": str(uploads)})
    admin = httpx.Client(base_url=url, timeout=60)
    try:
        assert admin.post("/api/login", json={"name": "admin", "password": PASSWORD}).status_code == 200
        yield url, uploads, admin
    finally:
        admin.close()
        stop(proc)


PATHS = ["/ui/gradio_api/user", "/ui/", "/ui/config", "/api/me", "/login", "/api/health", "/ui/assets/nope.js"]


def _cors(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-allow")}


def test_no_origin_may_read_an_answer(served: tuple[str, Path, httpx.Client]) -> None:
    url, _, admin = served
    anonymous = httpx.Client(base_url=url, timeout=60)
    for client in (admin, anonymous):  # with the session cookie, and without
        for path in PATHS:
            for origin in ORIGINS:
                for host in (None, "evil.example", "localhost"):  # Gradio allowed any origin for a foreign Host
                    headers = {"Origin": origin, **({"Host": host} if host else {})}
                    r = client.get(path, headers=headers)
                    assert _cors(r) == {}, (path, origin, host, r.status_code, _cors(r))
                    pre = client.options(path, headers={**headers, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "content-type"})
                    assert "access-control-allow-origin" not in pre.headers, (path, origin, host, _cors(pre))
                    assert "access-control-allow-credentials" not in pre.headers
    anonymous.close()
    # The read the report made: the logged-in person's name, from a page on another local port.
    r = admin.get("/ui/gradio_api/user", headers={"Origin": "http://localhost:9999"})
    assert r.status_code == 200 and "admin" in r.text and _cors(r) == {}


def test_a_page_on_another_origin_cannot_upload_or_post(served: tuple[str, Path, httpx.Client]) -> None:
    url, uploads, admin = served
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    files = {"files": ("x.jsonl", b'{"id": "a", "prompt": "hi"}\n', "application/octet-stream")}
    for headers in ({"Origin": "http://localhost:9999"}, {"Origin": "null"},
                    {"Origin": "http://localhost:9999", "Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = admin.post("/ui/gradio_api/upload", files=files, headers=headers)
        assert r.status_code == 403 and r.json() == {"error": "cross-origin request refused"}, (headers, r.text)
        r = admin.post("/ui/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"},
                       headers=headers)
        assert r.status_code == 403, (headers, r.text)
    assert (sorted(uploads.rglob("*")) if uploads.exists() else []) == before  # nothing was stored
    # The page's own origin (and a script, which sends no Origin) uploads as before.
    assert admin.post("/ui/gradio_api/upload", files=files, headers={"Origin": url,
                                                                     "Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert admin.post("/ui/gradio_api/upload", files=files).status_code == 200


def test_every_answer_carries_the_security_headers(served: tuple[str, Path, httpx.Client]) -> None:
    url, _, admin = served
    anonymous = httpx.Client(base_url=url, timeout=60)
    for client in (admin, anonymous):
        for path in PATHS + ["/", "/ui", "/api/nope"]:
            r = client.get(path)
            policies = r.headers.get_list("content-security-policy")
            assert any("frame-ancestors 'none'" in p for p in policies), (path, r.status_code, policies)
            assert any("img-src 'self' data: blob:" in p for p in policies), (path, policies)
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["referrer-policy"] == "same-origin", path
    anonymous.close()
    # The login page keeps its own stricter policy next to the common one.
    assert "img-src 'none'" in " ".join(admin.get("/login").headers.get_list("content-security-policy"))


def test_an_unexpected_error_answers_500_with_the_headers_and_no_details(tmp_path: Path) -> None:
    """A bug in a route (an exception no handler expects) was answered by Starlette's outermost error
    middleware, outside every other one: a 500 with none of the security headers. A real server in this
    process, with one route added that fails."""
    db = Database(tmp_path / "e.duckdb")
    seed(db)
    live = serve(db)
    admin = next(n for n in PASSWORDS if n.startswith("admin"))
    try:
        @live.app.get("/api/test-only-fails")
        def fails() -> None:
            raise RuntimeError("secret detail /srv/critlab.duckdb")

        r = live.login(admin).get("/api/test-only-fails")
        assert r.status_code == 500
        assert r.json() == {"error": "internal error: the server's log has the details"}
        assert "secret detail" not in r.text
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        # The server goes on (uvicorn closes the connection that met the error: a new one).
        assert live.login(admin).get("/api/me").status_code == 200
    finally:
        live.stop()
        db.close()
