"""Three annotators label one imported study at the same time, in three browser contexts: overlap
routing gives every prompt exactly two annotators, nobody sees anyone else's labels, and the
pairwise and blind/reveal questions are stored as judgments."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e_tests.conftest import PASSWORDS, Server, critlab, login, start_server

pytestmark = pytest.mark.e2e
PEOPLE = ("ann", "bob", "cy")


@pytest.fixture(scope="module")
def study_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("three")
    db = d / "three.duckdb"
    items = []
    for i in range(4):
        items.append({"item_id": f"t{i}", "prompt": f"Question {i}: what is {i} + {i}?",
                      "responses": [{"id": f"t{i}a", "text": f"It is {2 * i}."}, {"id": f"t{i}b", "text": "No idea."}],
                      "judgments": [{"judge": "gpt-x", "judge_kind": "model", "type": "p_true",
                                     "response": f"t{i}a", "prob": 0.8}]})
    f = d / "items.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    critlab("import", "judgments", str(f), "--study", "three", db=db)
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    for who in PEOPLE:
        critlab("annotators", "add", who, "--study", "three", "--password-stdin", db=db, stdin=PASSWORDS[who])
    srv = start_server(db, d / "server.log")
    admin = srv.login("admin")
    r = admin.post("/api/admin/op/configure", json={"study": "three", "config": {
        "overlap": 2, "questions": ["best", "rating", "pairwise"], "blind": True, "reveal": True}})
    assert r.status_code == 200, r.text
    yield srv
    srv.stop()


def _label_one(page: Page) -> bool:
    """Label the current item with the keyboard (and confirm after reveal); False when none is left."""
    if "Nothing to label" in page.locator("#prompt").inner_text():
        return False
    page.locator("#progress").click()
    page.keyboard.press("1")
    page.keyboard.press("Shift+Digit6")
    page.keyboard.press("j")
    page.keyboard.press("Shift+Digit3")
    page.locator("#pairwise").get_by_text("Tie").click()
    page.locator("#progress").click()
    # The status line names the prompt: wait for this item's own answer (while a submit runs, Gradio only
    # overlays the previous item's status, which must not pass for this one).
    item = re.search(r"Prompt (\S+)", page.locator("#prompt").inner_text()).group(1)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text(f"Saved prompt {item}")
    if "model's view is now shown" in page.locator("#status").inner_text():
        expect(page.get_by_text("Model's view").first).to_be_visible(timeout=15_000)
        page.keyboard.press("Control+Enter")  # keep the label as it is: stored as the revealed stage
        expect(page.locator("#status")).to_contain_text(f"Saved prompt {item} (revised label after reveal)")
    return True


def test_three_annotators_label_in_parallel(browser: Browser, study_server: Server) -> None:
    pages = {}
    for who in PEOPLE:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        pages[who] = ctx.new_page()
        login(pages[who], study_server.url, who)
        expect(pages[who].locator("#prompt")).to_contain_text("Question", timeout=30_000)
    active = set(PEOPLE)
    while active:  # round-robin: the three sessions submit interleaved, against one server
        for who in list(active):
            if not _label_one(pages[who]):
                active.discard(who)
    admin = study_server.login("admin")
    rows = admin.get("/api/studies/three/judgments").json()["judgments"]
    human = [j for j in rows if j["judge_kind"] == "human"]
    per_prompt: dict[int, set[str]] = {}
    for j in human:
        per_prompt.setdefault(j["prompt_id"], set()).add(j["judge"])
    assert len(per_prompt) == 4 and all(len(v) == 2 for v in per_prompt.values())  # overlap 2
    blind_picks = [j for j in human if j["method"] == "best_of_n" and j["stage"] == "blind"]
    revealed_picks = [j for j in human if j["method"] == "best_of_n" and j["stage"] == "revealed"]
    assert len(blind_picks) == 8 and len(revealed_picks) == 8
    assert {j["label"] for j in human if j["method"] == "pairwise"} == {"tie"}
    for who in PEOPLE:  # each annotator reads only their own labels
        c = study_server.login(who)
        mine = c.get("/api/studies/three/judgments").json()["judgments"]
        assert {j["judge"] for j in mine} <= {who}
        other = next(p for p in PEOPLE if p != who)
        assert c.get("/api/studies/three/judgments", params={"judge": other}).status_code == 403


def test_agreement_report_in_the_tab_the_cli_and_as_html(page: Page, study_server: Server, tmp_path: Path) -> None:
    login(page, study_server.url, "admin")
    page.get_by_role("tab", name="Agreement").click()
    study = page.locator("#agr-study input")
    study.click()
    page.get_by_role("option", name="three").click()
    page.locator("#agr-boot input").fill("50")
    page.locator("#agr-compute").click()
    expect(page.locator("#agr-status")).to_contain_text("4 with human labels", timeout=60_000)
    expect(page.locator("#agr-headline")).to_contain_text("p_true")
    expect(page.locator("#agr-download")).to_contain_text("agreement-three.html")
    with page.expect_download() as dl:
        page.locator("#agr-download").click()
    assert dl.value.suggested_filename == "agreement-three.html" and "/api/downloads/" in dl.value.url
    assert "Agreement report: three" in Path(dl.value.path()).read_text()
    out = tmp_path / "report.html"
    r = critlab("agreement", "--study", "three", "--format", "html", "--out", str(out), "--bootstrap", "50",
                db=study_server.db)
    assert "sent to the critlab server" in r.stderr
    html = out.read_text()
    assert "Agreement report: three" in html and "http://" not in html and "https://" not in html
    r = critlab("agreement", "--study", "three", "--format", "json", "--bootstrap", "0", db=study_server.db)
    rep = json.loads(r.stdout)
    assert rep["format"] == "critlab.agreement/3"
    assert rep["pairwise"]["units"]["n_units"] == 4
