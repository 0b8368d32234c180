"""Downloads (issue 13): the Export tab's .zip and the Agreement tab's HTML report are served by the server's
own route, which checks the session, the role and the owner, never by Gradio's file route (which served
an admin's export to any logged-in person holding the link). The copies are deleted after a single-use
download, when their offer expires, and at shutdown."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.services.context import AppContext, PermissionDenied
from app.services.downloads import REUSABLE_SECONDS, SINGLE_USE_SECONDS, DownloadGone, Downloads
from storage import annotators, members, studies
from storage.db import Database
from storage.models import Annotator
from tests.builders import label, make_prompt, make_responses
from tests.clock import Clock
from tests.server_process import start_serve, stop

PASSWORD = "pass-word-123"
ADMIN = Annotator(id=1, name="root", role="admin")
OTHER_ADMIN = Annotator(id=2, name="root2", role="admin")
ANN = Annotator(id=3, name="ann", role="annotator")


def _offer(d: Downloads, text: str = "data", **kw: Any) -> tuple[str, Path]:
    path = d.new_file("x.zip")
    path.write_text(text)
    return d.offer(path, "root", **kw).rsplit("/", 1)[1], path


def _anyone(study_id: int, who: str) -> bool:
    return True


# -- the registry -----------------------------------------------------------------------------------------
def test_an_offer_is_for_its_owner_only_and_a_single_use_one_goes_once_sent() -> None:
    d = Downloads()
    token, path = _offer(d)
    assert oct(path.parent.parent.stat().st_mode & 0o777) == "0o700"  # a private folder
    for who in (ANN, ANN.model_copy(update={"name": "root"})):  # the owner's name, but not an admin now
        with pytest.raises(PermissionDenied, match="admins only"):
            d.take(token, who, _anyone)
    with pytest.raises(PermissionDenied, match="admins only"):
        d.take("no-such-token", ANN, _anyone)  # an annotator learns nothing about which links exist
    with pytest.raises(DownloadGone):
        d.take(token, OTHER_ADMIN, _anyone)  # another admin's link
    offer = d.take(token, ADMIN, _anyone)
    assert offer.path == path and path.read_text() == "data"
    with pytest.raises(DownloadGone, match="expired or was used"):
        d.take(token, ADMIN, _anyone)  # single use
    d.discard(offer)
    assert not path.exists()
    d.close()


def test_a_study_file_needs_access_to_the_study_still() -> None:
    d = Downloads()
    token, _ = _offer(d, study_id=7)
    with pytest.raises(PermissionDenied, match="not a member"):
        d.take(token, ADMIN, lambda study_id, who: False)
    assert d.take(token, ADMIN, lambda study_id, who: (study_id, who) == (7, "root")).study_id == 7
    d.close()


def test_offers_expire_and_their_copies_are_deleted_and_shutdown_deletes_everything() -> None:
    clock = Clock()
    d = Downloads(clock=clock)
    once, once_path = _offer(d)
    kept, kept_path = _offer(d, single_use=False)
    clock.now += SINGLE_USE_SECONDS + 1
    assert d.sweep() == 1 and not once_path.exists() and kept_path.exists()
    with pytest.raises(DownloadGone):
        d.take(once, ADMIN, _anyone)
    for _ in range(2):  # a reusable offer serves again until it expires
        assert d.take(kept, ADMIN, _anyone).path == kept_path
    clock.now += REUSABLE_SECONDS
    with pytest.raises(DownloadGone):
        d.take(kept, ADMIN, _anyone)
    assert not kept_path.exists()
    left, left_path = _offer(d, single_use=False)
    folder = left_path.parent.parent
    d.close()
    assert not folder.exists()
    with pytest.raises(DownloadGone):
        d.take(left, ADMIN, _anyone)


def test_closing_the_app_context_deletes_the_copies(tmp_path: Path) -> None:
    ctx = AppContext(db=Database(tmp_path / "c.duckdb"))
    _, path = _offer(ctx.downloads)
    ctx.close()
    assert not path.parent.parent.exists()


# -- a real server, real HTTP, the UI's own events ----------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("downloads")
    with Database(d / "d.duckdb") as db:
        s = studies.create_study(db, "dl")
        for i in range(2):
            p = make_prompt(db, s.id, f"q{i}", f"Question {i}?")
            a, b = make_responses(db, p, ["good answer", "bad answer"])
            for who in ("x1", "x2"):
                label(db, s.id, p, who, a, {a: 7, b: 1})
        for name, role in (("root", "admin"), ("root2", "admin"), ("ann", "annotator")):
            annotators.add_annotator(db, name, role, PASSWORD)
        members.add(db, s.id, "ann", "root")  # a member of the study, and still no reader of its exports
    proc, url = start_serve(d / "d.duckdb", d / "server.log")
    yield url
    stop(proc)


def _client(url: str, name: str | None) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60)
    if name:
        assert c.post("/api/login", json={"name": name, "password": PASSWORD}).status_code == 200
    return c


class Page:
    """One page session of the Gradio UI, spoken through its queue API (what the browser does)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client, self.session = client, uuid.uuid4().hex
        config = client.get("/ui/config").json()
        self.comps = {c["id"]: c for c in config["components"]}
        self.deps = config["dependencies"]
        self.call(next(i for i, d in enumerate(self.deps) if d.get("api_name") == "on_load"), {})

    def event(self, elem_id: str) -> int:
        comp = next(k for k, c in self.comps.items() if c.get("props", {}).get("elem_id") == elem_id)
        return next(i for i, d in enumerate(self.deps)
                    if d.get("backend_fn") and d["inputs"] and any(t[0] == comp for t in d["targets"]))

    def call(self, fn_index: int, values: dict[str, Any]) -> dict[str, Any]:
        dep = self.deps[fn_index]
        data = []
        for cid in dep["inputs"]:
            props = self.comps[cid].get("props", {})
            data.append(values.get(props.get("elem_id"), None if self.comps[cid]["type"] == "state"
                                   else props.get("value")))
        r = self.client.post("/ui/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": self.session, "event_data": None,
            "trigger_id": dep["targets"][0][0] if dep["targets"] else None})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        with self.client.stream("GET", "/ui/gradio_api/queue/data", params={"session_hash": self.session}) as s:
            for line in s.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    assert msg.get("success"), msg
                    return msg["output"]
        raise AssertionError("the event did not complete")


def _links(output: Any) -> list[str]:
    """Every download link an event handed to the page: a URL string of ours, or a file Gradio would serve."""
    text = json.dumps(output)
    return re.findall(r'"(/api/downloads/[^"]+)"', text) + re.findall(r'"url": "(http[^"]+)"', text)


def test_an_export_download_is_for_the_admin_who_made_it(served: str) -> None:
    root = _client(served, "root")
    page = Page(root)
    out = page.call(page.event("export-write"), {"export-study": "dl", "export-min-annotators": 1})
    assert "written to" in json.dumps(out)
    if "export-download-url" in json.dumps([c.get("props", {}) for c in page.comps.values()]):
        out = page.call(page.event("export-download"), {})  # the Download button asks for a fresh link
    links = _links(out)
    assert len(links) == 1, out
    link = links[0]
    others = {"annotator": _client(served, "ann"), "another admin": _client(served, "root2"),
              "no session": _client(served, None)}
    try:
        for who, c in others.items():
            r = c.get(link)
            assert r.status_code in (401, 403, 404), (who, r.status_code)
            assert b"PK" not in r.content[:2] and "good answer" not in r.text, who
        assert others["annotator"].get(link).status_code == 403
        r = root.get(link)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        assert r.headers["cache-control"] == "no-store"
        name = re.search(r'filename="([^"]+)"', r.headers["content-disposition"]).group(1)
        assert name.startswith("dl-dpo-") and name.endswith(".zip")
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            assert sorted(n.rsplit(".", 1)[-1] for n in z.namelist()) == ["jsonl", "md"]
            assert b"good answer" in z.read(next(n for n in z.namelist() if n.endswith(".jsonl")))
        assert root.get(link).status_code == 404  # used: the copy is gone
        again = _links(page.call(page.event("export-download"), {}))  # the button works again
        assert again and again[0] != link and root.get(again[0]).status_code == 200
    finally:
        for c in (root, *others.values()):
            c.close()


def test_the_agreement_report_download_is_for_the_admin_who_computed_it(served: str) -> None:
    root, ann = _client(served, "root"), _client(served, "ann")
    try:
        page = Page(root)
        out = page.call(page.event("agr-compute"), {"agr-study": "dl", "agr-boot": 0})
        links = _links(out)
        assert len(links) == 1, out
        assert ann.get(links[0]).status_code in (403, 404)
        for _ in range(2):  # the page's button may be pressed again while the report is offered
            r = root.get(links[0])
            assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment")
            assert "Agreement report: dl" in r.text
    finally:
        root.close()
        ann.close()
