"""The whole loop in a real Chromium: an admin imports and generates with the embedded model, an
annotator labels with the keyboard only, the CLI exports through the running server, and an
annotator cannot reach admin actions by any route."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import Server, critlab, gradio_call, login, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.model]

PROMPTS = [
    {"id": "e1", "prompt": "Name a fruit that is yellow."},
    {"id": "e2", "prompt": "What is 2 + 2?", "reference": "4"},
    {"id": "e3", "prompt": "Say hello in French."},
]


def test_admin_imports_and_generates_in_the_studies_tab(page: Page, server: Server, tmp_path: Path) -> None:
    f = tmp_path / "three.jsonl"
    f.write_text("\n".join(json.dumps(p) for p in PROMPTS) + "\n")
    login(page, server.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    study = page.locator("#import-study input")
    study.click()
    study.fill("e2e")
    study.press("Enter")
    page.locator("#prompts-file input[type=file]").set_input_files(str(f))
    wait_idle(page)
    page.locator("#import-btn").click()
    expect(page.locator("#import-status")).to_contain_text("Imported 3 prompts into e2e", timeout=30_000)
    # A new study has no members: the annotators are added (through the running server).
    r = critlab("studies", "members", "add", "e2e", "ann", "bob", db=server.db)
    assert "ann is now a member of 'e2e'" in r.stdout and "sent to the critlab server" in r.stderr

    gen = page.locator("#gen-study input")
    gen.click()
    page.get_by_role("option", name="e2e").click()
    page.locator("#gen-n input[type=range]").fill("2")
    page.locator("#gen-max-tokens input").fill("32")
    page.locator("#gen-max-tokens input").press("Tab")
    page.locator("#gen-seed input, #gen-seed textarea").fill("7")
    page.locator("#gen-start").click()
    expect(page.locator("#job-progress")).to_contain_text("done", timeout=180_000)
    expect(page.locator("#job-progress")).to_contain_text("6 / 6")
    expect(page.locator("#studies-table")).to_contain_text("e2e")


def _rate_and_submit(page: Page, best: int, ratings: dict[int, int]) -> None:
    """Pick with a digit, move with J/K, rate with Shift+digit, submit with Ctrl+Enter."""
    page.keyboard.press(str(best))
    expect(page.locator(f"#best input[value='{best}']")).to_be_checked()
    active = 1  # a digit picks the best; the highlight stays where it was (card 1 on a new item)
    for card, rating in ratings.items():
        while active != card:
            page.keyboard.press("j")
            active = active % len(ratings) + 1
        page.keyboard.press(f"Shift+Digit{rating}")
        expect(page.locator(f"#rating-{card} input[value='{rating}']")).to_be_checked()
    page.keyboard.press("Control+Enter")


def test_annotator_labels_with_the_keyboard_and_edits(page: Page, server: Server) -> None:
    login(page, server.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("Prompt e", timeout=30_000)
    expect(page.locator("#progress")).to_contain_text("0 / 3 labelled by you")
    page.locator("#progress").click()  # focus the page, not a field
    first = page.locator("#prompt").inner_text()
    _rate_and_submit(page, 1, {1: 6, 2: 2})
    expect(page.locator("#status")).to_contain_text("Saved prompt")
    expect(page.locator("#progress")).to_contain_text("1 / 3 labelled by you")
    second = page.locator("#prompt").inner_text()
    assert second != first
    _rate_and_submit(page, 2, {1: 3, 2: 5})
    expect(page.locator("#progress")).to_contain_text("2 / 3 labelled by you")

    page.keyboard.press("ArrowLeft")  # back to the second item, prefilled
    expect(page.locator("#status")).to_contain_text("Editing")
    expect(page.locator("#prompt")).to_contain_text(second.splitlines()[0])  # "Prompt e2"
    expect(page.locator("#best input[value='2']")).to_be_checked()
    expect(page.locator("#rating-2 input[value='5']")).to_be_checked()
    _rate_and_submit(page, 1, {1: 7, 2: 1})
    expect(page.locator("#status")).to_contain_text("Saved prompt")
    expect(page.locator("#progress")).to_contain_text("2 / 3 labelled by you")

    page.keyboard.press("s")  # skip the third; with nothing else left it comes straight back
    expect(page.locator("#status")).to_contain_text("Skipped")

    r = page.request.get(f"{server.url}/api/studies/e2e/judgments")
    assert r.status == 200
    current = r.json()["judgments"]
    assert {j["judge"] for j in current} == {"ann"}
    keys = [(j["method"], j["target_key"]) for j in current]
    assert len(keys) == len(set(keys)) == 6  # 2 best picks + 4 ratings, one current row each
    assert sorted(j["value"] for j in current if j["method"] == "likert") == [1.0, 2.0, 6.0, 7.0]
    everything = page.request.get(f"{server.url}/api/studies/e2e/judgments?include_superseded=true").json()
    superseded = [j for j in everything["judgments"] if j["superseded_at"]]
    assert len(superseded) == 3  # the edit replaced one pick and two ratings, kept as history


# Every test here takes `page` so that pytest-playwright's browser parametrisation keeps them in file
# order: each step builds on the one before (import, then labels, then export).
def test_cli_export_goes_through_the_running_server(page: Page, server: Server, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    r = critlab("export", "dpo", "--study", "e2e", "--out", str(out), db=server.db)
    assert "sent to the critlab server" in r.stderr
    assert "2 pairs" in r.stdout, r.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["meta"]["chosen_rating"] > row["meta"]["rejected_rating"]
        assert row["meta"]["annotator"] != "ann"


def test_annotator_cannot_reach_admin_actions(page: Page, server: Server) -> None:
    ann = server.login("ann")
    assert ann.post("/api/admin/op/list_studies", json={}).status_code == 403
    assert ann.post("/api/admin/op/add_annotator", json={"name": "mallory", "role": "admin"}).status_code == 403
    assert ann.get("/api/jobs/1").status_code == 403
    assert ann.get("/api/studies/e2e/judgments", params={"judge": "bob"}).status_code == 403
    stream = gradio_call(ann, server.url, "create-study-btn", ["hacked", "", ""])
    assert "admins only" in stream
    stream = gradio_call(ann, server.url, "ann-add", ["mallory", "admin"])
    assert "admins only" in stream
    admin = server.login("admin")
    names = [s["name"] for s in admin.post("/api/admin/op/list_studies", json={}).json()["studies"]]
    assert "hacked" not in names
    people = [a["name"] for a in admin.post("/api/admin/op/list_annotators", json={}).json()["annotators"]]
    assert "mallory" not in people
    anon = httpx.Client(base_url=server.url)
    assert anon.get("/api/studies/e2e/judgments").status_code == 401
    assert anon.get("/ui/config").status_code in (401, 403)
    # JSON POST routes refuse other content types and other origins.
    assert admin.post("/api/admin/op/list_studies", content="{}",
                      headers={"content-type": "text/plain"}).status_code == 415
    assert admin.post("/api/admin/op/list_studies", json={},
                      headers={"origin": "http://evil.example"}).status_code == 403
