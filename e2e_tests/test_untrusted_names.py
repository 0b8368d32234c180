"""Issue 13, finding 6: a person's name and the import error status are literal text in a real Chromium.

A name such as `![x](http://127.0.0.1:PORT/name.png)` once became an image in the "Signed in as" header,
fetched on every page load, and so did an id quoted by an import error. A local HTTP listener records
every request it gets: after the page has shown both texts, it has seen only the test's own control
request (which proves it would have seen the images).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, login, start_server
from storage import annotators, studies
from storage.db import Database

pytestmark = pytest.mark.e2e


class Listener:
    """An HTTP server on 127.0.0.1 that answers every GET with a 1-pixel GIF and records the path."""

    GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00" \
          b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.got = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with listener.got:
                    listener.paths.append(self.path)
                    listener.got.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(Listener.GIF)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path: str) -> None:
        with self.got:
            assert self.got.wait_for(lambda: path in self.paths, timeout=30), self.paths

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    li = Listener()
    yield li
    li.close()


@pytest.fixture(scope="module")
def names_server(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("names")
    db = Database(d / "names.duckdb")
    studies.create_study(db, "names")
    annotators.add_annotator(db, f"![x]({listener.url}/name.png)", "admin", PASSWORDS["admin"])
    db.close()
    srv = start_server(d / "names.duckdb", d / "server.log")
    yield srv
    srv.stop()


def test_a_name_and_an_import_error_fetch_nothing(page: Page, names_server: Server, listener: Listener,
                                                  tmp_path: Path) -> None:
    name = f"![x]({listener.url}/name.png)"
    PASSWORDS[name] = PASSWORDS["admin"]
    try:
        login(page, names_server.url, name)
    finally:
        del PASSWORDS[name]
    whoami = page.locator("#whoami")
    expect(whoami).to_contain_text(f"Signed in as {name} (admin)")
    assert whoami.locator("img").count() == 0

    # An import error quotes the file's id: literal text too.
    bad_id = f"![i]({listener.url}/import.png)"
    f = tmp_path / "dup.jsonl"
    f.write_text(f'{{"id": "{bad_id}", "prompt": "one"}}\n{{"id": "{bad_id}", "prompt": "two"}}\n')
    page.get_by_role("tab", name="Studies").click()
    page.locator("#import-study input").fill("names")
    page.locator("#prompts-file input[type=file]").set_input_files(str(f))
    expect(page.locator("#prompts-file")).to_contain_text("dup")  # the upload has arrived
    page.locator("#import-btn").click()
    status = page.locator("#import-status")
    expect(status).to_contain_text(f"dup.jsonl:2: field 'id': duplicate id '{bad_id}'", timeout=30_000)
    assert status.locator("img").count() == 0 and page.locator("img[src*='127.0.0.1']").count() == 0

    # The listener answers the browser (the control request arrives), and it is all it ever got.
    page.evaluate("url => fetch(url, {mode: 'no-cors'})", f"{listener.url}/control")
    listener.wait_for("/control")
    assert listener.paths == ["/control"]
