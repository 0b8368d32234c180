"""The admin-only Export tab in a real Chromium: preview counts (kept, skipped by reason) and first rows,
export, download one .zip of the data file and its dataset card, load the file with `datasets`; untrusted
text in the preview stays inert; annotators neither see the tab nor can call its handler, nor fetch the
admin's download link."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
from playwright.sync_api import Browser, Page, expect

from e2e_tests.conftest import (
    PASSWORDS,
    Server,
    critlab,
    gradio_call,
    login,
    settled,
    start_server,
)
from storage import annotators
from storage.db import Database

pytestmark = pytest.mark.e2e

STUDY = "exp"
BEACON = "http://127.0.0.1:9/x.png"
XSS = f"<img src={BEACON} onerror=alert(1)> <script>alert(2)</script> xss-marker"


def _item(iid: str, prompt: str, texts: list[str], picks: dict[str, str],
          ratings: dict[str, dict[str, int]]) -> dict:
    rs = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts, 1)]
    shown = [r["id"] for r in rs]
    js = [{"judge": who, "judge_kind": "human", "type": "best_of_n", "shown": shown, "winner": w}
          for who, w in picks.items()]
    js += [{"judge": who, "judge_kind": "human", "type": "likert", "response": rid, "score": s, "scale": [1, 7]}
           for who, rr in ratings.items() for rid, s in rr.items()]
    return {"item_id": iid, "prompt": prompt, "responses": rs, "judgments": js}


# With --min-annotators 2, DPO (best picks vs the strictly lowest mean rating) keeps p1 and p2 and skips
# one prompt for each of three reasons; SFT (the consensus pick, no rating needed) also keeps p4.
ITEMS = [
    _item("p1", "What is 2 + 2?", ["4.", "5, I think."], {"ann1": "r1", "ann2": "r1"},
          {"ann1": {"r1": 7, "r2": 1}, "ann2": {"r1": 6, "r2": 2}}),
    _item("p2", f"Say hi {XSS}", [f"Hi! {XSS}", "Go away."], {"ann1": "r1", "ann2": "r1"},
          {"ann1": {"r1": 6, "r2": 2}, "ann2": {"r1": 5, "r2": 1}}),
    _item("p3", "Name a colour.", ["Blue.", "Seven."], {"ann1": "r1"},  # too_few_annotators
          {"ann1": {"r1": 6, "r2": 2}}),
    _item("p4", "Pick a fruit.", ["Apple.", "Rock.", "Chair."], {"ann1": "r1", "ann2": "r1"},  # tied_lowest
          {"ann1": {"r1": 6, "r2": 2, "r3": 2}, "ann2": {"r1": 6, "r2": 2, "r3": 2}}),
    _item("p5", "Capital of France?", ["Paris.", "Lyon."], {"ann1": "r1", "ann2": "r2"},  # no_consensus
          {"ann1": {"r1": 6, "r2": 2}, "ann2": {"r1": 2, "r2": 6}}),
]


@pytest.fixture(scope="module")
def export_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("export")
    db_path = d / "export.duckdb"
    f = d / "judgments.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in ITEMS) + "\n")
    critlab("import", "judgments", str(f), "--study", STUDY, db=db_path)
    # In-process rather than two more CLI subprocesses: each one pays the full import time.
    db = Database(db_path)
    annotators.add_annotator(db, "admin", "admin", PASSWORDS["admin"])
    annotators.add_annotator(db, "ann", "annotator", PASSWORDS["ann"])
    db.close()
    srv = start_server(db_path, d / "server.log")
    yield srv
    srv.stop()


def _choose_study(page: Page) -> None:
    # The dropdown fills its choices on focus (a server round trip), so wait for the option itself.
    page.locator("#export-study input").click()
    page.get_by_role("option", name=STUDY, exact=True).click()
    expect(page.locator("#export-study input")).to_have_value(STUDY)


def _set_number(page: Page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(value)
    box.press("Tab")


def _counts(text: str) -> dict[str, int]:
    """The kept / skipped-by-reason table of the counts Markdown, as rendered text ("kept<TAB>2" lines)."""
    out = {}
    for line in text.splitlines():
        label, _, n = line.rpartition("\t")
        if label.startswith(("kept", "skipped: ")) and n.strip().isdigit():
            out[label.strip()] = int(n)
    return out


def _export_and_download(page: Page, tmp_path: Path, done: str) -> tuple[Path, Path, Path]:
    """Export, wait for this export's own status (`done`: an earlier export's status is still on screen),
    download the .zip through the browser and unpack it; the downloaded data file and card, and the path
    the server wrote (relative to the database's folder)."""
    page.locator("#export-write").click()
    status = page.locator("#export-status")
    expect(status).to_contain_text(done, timeout=30_000)
    written = Path(status.inner_text().split("written to ")[1].split()[0].strip("`"))
    card_name = f"{written.stem}.card.md"
    expect(status).to_contain_text(card_name)
    button = page.locator("#export-download")
    expect(button).to_have_text(f"Download {written.stem}.zip")
    with page.expect_download() as dl:
        button.click()
    assert dl.value.suggested_filename == f"{written.stem}.zip"
    # Served by the server's own admin-only route, never by Gradio's file route.
    assert "/api/downloads/" in dl.value.url and "gradio_api/file" not in dl.value.url
    saved = tmp_path / f"{written.stem}.zip"
    dl.value.save_as(saved)
    with zipfile.ZipFile(saved) as z:
        assert sorted(z.namelist()) == sorted([written.name, card_name])
        z.extractall(tmp_path / written.stem)
    return tmp_path / written.stem / written.name, tmp_path / written.stem / card_name, written


def test_admin_previews_exports_and_downloads(page: Page, export_server: Server, tmp_path: Path) -> None:
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login(page, export_server.url, "admin")
    page.get_by_role("tab", name="Export").click()
    _choose_study(page)
    expect(page.get_by_test_id("dpo-radio-label")).to_be_visible()
    page.get_by_test_id("dpo-radio-label").click()
    _set_number(page, "export-min-annotators", "2")

    page.locator("#export-preview").click()
    counts = page.locator("#export-counts")
    expect(counts).to_contain_text("kind dpo", timeout=30_000)
    shown = _counts(counts.inner_text())
    assert shown == {"kept": 2, "skipped: no_consensus": 1, "skipped: tied_lowest": 1,
                     "skipped: too_few_annotators": 1}, counts.inner_text()
    table = page.locator("#export-preview-table")
    expect(table.get_by_role("grid")).to_have_attribute("aria-rowcount", str(shown["kept"] + 1))  # + header
    expect(table).to_contain_text("What is 2 + 2?")
    expect(table).to_contain_text("xss-marker")
    # The payload is shown as its own characters: the tags are text, not elements.
    expect(table).to_contain_text("<script>alert(2)</script>")
    expect(table).to_contain_text(f"<img src={BEACON}")
    assert table.locator("img").count() == 0
    assert table.locator("script").count() == 0

    saved, saved_card, rel = _export_and_download(page, tmp_path, "2 pairs written")
    ds = datasets.load_dataset("json", data_files=str(saved), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == shown["kept"]
    assert ds.column_names == ["prompt", "chosen", "rejected", "meta"]
    assert {r["meta"]["prompt_id"] for r in ds} == {"p1", "p2"}
    assert all(r["meta"]["n_annotators"] == 2 for r in ds)
    card = saved_card.read_text()
    assert f'path: "{rel.name}"' in card and "too_few_annotators" in card
    # The server's copies sit under <db dir>/exports/, card beside the file; the zip holds the same bytes.
    dpo_file = export_server.db.parent / rel
    assert rel.parts[0] == "exports" and dpo_file.read_bytes() == saved.read_bytes()
    assert sorted(p.name for p in dpo_file.parent.iterdir()) == sorted([rel.name, saved_card.name])
    assert (dpo_file.parent / saved_card.name).read_bytes() == saved_card.read_bytes()

    # A second kind from the same data: SFT needs only the consensus pick, so the tied ratings of p4 no
    # longer matter.
    page.get_by_test_id("sft-radio-label").click()
    page.locator("#export-preview").click()
    expect(counts).to_contain_text("kind sft", timeout=30_000)
    shown = _counts(counts.inner_text())
    assert shown == {"kept": 3, "skipped: no_consensus": 1, "skipped: too_few_annotators": 1}, counts.inner_text()
    saved, saved_card, rel = _export_and_download(page, tmp_path, "3 examples written")
    ds = datasets.load_dataset("json", data_files=str(saved), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == shown["kept"]
    assert ds.column_names == ["prompt", "completion", "meta"]
    assert f'path: "{rel.name}"' in saved_card.read_text()
    # Each export keeps its own card: the SFT export did not replace the DPO file's.
    assert (dpo_file.parent / f"{dpo_file.stem}.card.md").read_text() == card

    settled(page)  # any late image load or handler has started by now
    assert dialogs == []
    assert not [u for u in requests if u.startswith("http://127.0.0.1:9/")]


def test_an_annotator_holding_the_admins_download_link_gets_403(page: Page, browser: Browser,
                                                               export_server: Server) -> None:
    """A fresh link is caught on its way out of the admin's page (not fetched), then tried from an
    annotator's browser: refused; the admin's browser gets the bytes, once."""
    login(page, export_server.url, "admin")
    page.get_by_role("tab", name="Export").click()
    _choose_study(page)
    page.locator("#export-write").click()
    expect(page.locator("#export-status")).to_contain_text("written to", timeout=30_000)
    # The page's download link is caught instead of followed, so it is still unused.
    page.evaluate("""() => { window.caughtLinks = []; const follow = HTMLAnchorElement.prototype.click;
      HTMLAnchorElement.prototype.click = function () {
        if (this.href.includes('/api/downloads/')) { window.caughtLinks.push(this.href); return; }
        return follow.call(this); }; }""")
    page.locator("#export-download").click()
    page.wait_for_function("() => window.caughtLinks.length === 1")
    link = page.evaluate("() => window.caughtLinks[0]")
    ann_ctx = browser.new_context()
    try:
        ann = ann_ctx.new_page()
        login(ann, export_server.url, "ann")
        r = ann.request.get(link)
        assert r.status == 403 and "admins only" in r.text()
    finally:
        ann_ctx.close()
    r = page.request.get(link)
    assert r.status == 200 and r.body()[:2] == b"PK"
    assert page.request.get(link).status == 404  # one download per link


def test_annotator_has_no_export_tab_and_cannot_export(page: Page, export_server: Server) -> None:
    login(page, export_server.url, "ann")
    expect(page.locator("#whoami")).to_contain_text("ann", timeout=30_000)
    expect(page.get_by_role("tab", name="Label")).to_be_visible()
    expect(page.get_by_role("tab", name="Export")).to_have_count(0)

    exports = export_server.db.parent / "exports"
    before = sorted(p.name for p in exports.iterdir()) if exports.exists() else []
    ann = export_server.login("ann")
    form = [STUDY, "dpo", "conversational", "human", "auto", ["sampled"], 1, 0.0, 0.0, "", False, False, False,
            "plurality", None]
    # With the study's name, Gradio itself refuses first: the annotator's session never had the study
    # among the dropdown's choices (they are filled per session, for admins only).
    stream = gradio_call(ann, export_server.url, "export-write", [*form, "jsonl"])
    assert '"success":false' in stream and "written to" not in stream, stream
    # With no study the call reaches the handler, whose role check comes before anything else (an admin
    # would be told to choose a study).
    form[0] = None
    stream = gradio_call(ann, export_server.url, "export-write", [*form, "jsonl"])
    assert "admins only" in stream, stream
    stream = gradio_call(ann, export_server.url, "export-preview", form)
    assert "admins only" in stream, stream
    after = sorted(p.name for p in exports.iterdir()) if exports.exists() else []
    assert after == before


def test_admin_exports_with_an_annotator_model_consensus(page: Page, export_server: Server, shot_dir: Path) -> None:
    """The consensus choice (plurality | dawid_skene | mace) reaches the export: the card names the model."""
    login(page, export_server.url, "admin")
    page.get_by_role("tab", name="Export").click()
    _choose_study(page)
    page.get_by_test_id("sft-radio-label").click()
    page.locator("#export-consensus input").click()
    page.get_by_role("option", name="dawid_skene", exact=True).click()
    expect(page.locator("#export-consensus input")).to_have_value("dawid_skene")
    page.locator("#export-preview").click()
    counts = page.locator("#export-counts")
    expect(counts).to_contain_text("kind sft", timeout=30_000)
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.locator("#export-consensus").scroll_into_view_if_needed()
        page.screenshot(path=str(shot_dir / f"export-consensus-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator("#export-write").click()
    status = page.locator("#export-status")
    expect(status).to_contain_text("examples written to", timeout=30_000)
    written = Path(status.inner_text().split("written to ")[1].split()[0].strip("`"))
    card = (export_server.db.parent / written.parent / f"{written.stem}.card.md").read_text()
    assert "the human consensus by Dawid–Skene" in card
    # a bad combination answers in the page, naming what is wrong
    page.locator("#export-per-annotator input").check()
    page.locator("#export-preview").click()
    expect(page.locator("body")).to_contain_text("use each person's own labels", timeout=30_000)
