"""The Studies tab's import in a real Chromium: the kind of file is chosen (prompts or a judgments format),
Label Studio asks for its labelling config as a second file, the summary line says what was mapped, kept
aside and ignored, and a malformed record is named by the uploaded file's own name, line and field with
nothing stored. Screenshots at 1400 and 800 px go to tmp_path (CRITLAB_SHOTS_DIR to keep them)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import Server, choose, critlab, login, wait_idle

pytestmark = [pytest.mark.e2e]

SAMPLES = Path(__file__).parent.parent / "tests" / "data" / "formats"


def _study(page: Page, name: str) -> None:
    box = page.locator("#import-study input")
    box.fill(name)
    box.press("Enter")


def _shots(page: Page, name: str) -> None:
    if not os.environ.get("CRITLAB_SHOTS_DIR"):
        return
    folder = Path(os.environ["CRITLAB_SHOTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.locator("#import-status").scroll_into_view_if_needed()
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=False)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_fastchat_and_label_studio_uploads(page: Page, server: Server) -> None:
    login(page, server.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    _study(page, "mtbench")
    choose(page, "import-kind", "Judgments: FastChat / MT-Bench")
    expect(page.locator("#import-companion")).to_be_hidden()
    page.locator("#prompts-file input[type=file]").set_input_files(str(SAMPLES / "fastchat_mtbench.jsonl"))
    expect(page.locator("#prompts-file")).to_contain_text(re.compile(r"fastchat_mtbench\s*\.jsonl"))
    page.locator("#import-btn").click()
    status = page.locator("#import-status")
    expect(status).to_contain_text("Imported 3 items, 7 responses and 14 judgments into study 'mtbench' from "
                                   "fastchat", timeout=90_000)
    expect(status).to_contain_text("ignored: 1 pair judgments of answers this file has no text for")
    _shots(page, "import-fastchat")

    _study(page, "ls")
    choose(page, "import-kind", "Judgments: Label Studio (+ config .xml)")
    second = page.locator("#import-companion")
    expect(second).to_be_visible()
    expect(second).to_contain_text("Labelling config (.xml)")
    page.locator("#prompts-file").get_by_role("button", name="Clear").click()  # the first upload goes
    page.locator("#prompts-file input[type=file]").set_input_files(str(SAMPLES / "label_studio_tasks.json"))
    expect(page.locator("#prompts-file")).to_contain_text(re.compile(r"label_studio_tasks\s*\.json"))
    page.locator("#import-btn").click()
    expect(status).to_contain_text("needs two files: label_studio_tasks.json and its labelling config (.xml)",
                                   timeout=90_000)
    second.locator("input[type=file]").set_input_files(str(SAMPLES / "label_studio_tasks.config.xml"))
    expect(second).to_contain_text(re.compile(r"label_studio_tasks\.config\s*\.xml"))
    page.locator("#import-btn").click()
    expect(status).to_contain_text("Imported 2 items, 4 responses and 18 judgments into study 'ls' from "
                                   "label_studio", timeout=90_000)
    _shots(page, "import-label-studio")


def test_a_malformed_record_is_named_and_nothing_is_stored(page: Page, server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "my votes.jsonl"
    lines = (SAMPLES / "fastchat_mtbench.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec["winner"] = "model_c"
    lines[3] = json.dumps(rec)
    bad.write_text("\n".join(lines) + "\n")
    control = tmp_path / "control.jsonl"
    control.write_text('{"id": "c1", "prompt": "Hi?"}\n')
    critlab("import", "prompts", str(control), "--study", "control", db=server.db)
    login(page, server.url, "admin")
    page.get_by_role("tab", name="Studies").click()
    _study(page, "broken")
    choose(page, "import-kind", "Judgments: FastChat / MT-Bench")
    page.locator("#prompts-file input[type=file]").set_input_files(str(bad))
    expect(page.locator("#prompts-file")).to_contain_text(re.compile(r"my votes\s*\.jsonl"))
    page.locator("#import-btn").click()
    status = page.locator("#import-status")
    expect(status).to_contain_text("my votes.jsonl:4: field 'winner': expected one of model_a, model_b",
                                   timeout=90_000)
    assert "/tmp" not in status.inner_text()
    _shots(page, "import-error")
    wait_idle(page)
    listed = critlab("studies", "list", db=server.db).stdout
    assert "control" in listed and "broken" not in listed  # the study the failed import would have created is not there either
