"""Untrusted text in a real Chromium, beyond e2e_tests/test_untrusted_text.py: payloads in prompt ids,
model-written checklist questions, critiques and error messages, and judge names render inert in the
Label tab (with the model's view and the status line) and in the Agreement tab (the most disagreed
items and the full report), and the browser sends no request anywhere but the critlab server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from e2e_tests.conftest import PASSWORDS, Server, login, settled, start_server, submit_anyway, wait_idle
from storage import annotators, checklists, judgments, members, prompts, responses, studies
from storage.db import Database
from storage.models import ChatMessage, JudgmentIn, PromptIn, ResponseIn, StudyConfig

pytestmark = pytest.mark.e2e

TRACKER = "tracker.invalid"  # every remote URL in the payloads points here


def payloads(where: str) -> list[str]:
    """Script, event-handler, link and remote-load payloads, each tagged with where it was planted."""
    return [
        f"<img src=http://{TRACKER}/{where}-img.png onerror=\"window.__xss='{where}-img'\"> {where} raw img",
        f"<script>window.__xss='{where}-script'</script> {where} script",
        f"![{where}](http://{TRACKER}/{where}-md.png) {where} markdown image",
        # Inert for markdown-it, but a second Markdown pass (Gradio's) would turn it into an image.
        f"!\\[{where}\\](http://{TRACKER}/{where}-escaped.png) {where} escaped image",
        f"[{where} link](javascript:window.__xss='{where}-link') <javascript:window.__xss='{where}-auto'>",
        (f"<iframe src=http://{TRACKER}/{where}-frame></iframe><style>@import url(http://{TRACKER}/{where}.css)"
         f"</style><svg onload=\"window.__xss='{where}-svg'\"></svg> {where} frame"),
    ]


# Prompt ids come from imported files; an id is shown in the Label tab's header and status line and in
# the Agreement tab's list of disagreed items.
IDS = [f"<img src=http://{TRACKER}/id-img.png onerror=\"window.__xss='id-img'\">",
       f"!\\[id\\](http://{TRACKER}/id-escaped.png)", f"![id](http://{TRACKER}/id-md.png)"]
# Judges of imported judgments carry any name; an annotator's name only needs to have no spaces.
JUDGES = [f"<img/src=http://{TRACKER}/judge.png/onerror=window.__xss='judge'>", f"![j](http://{TRACKER}/j.png)"]


@pytest.fixture(scope="module")
def xss2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A study that is not blind (the model's view shows at once) whose every text is a payload: prompts,
    responses, guidelines, the model's checklist, critiques, a failed score's error, judge names."""
    d = tmp_path_factory.mktemp("xss2")
    db = Database(d / "xss2.duckdb")
    s = studies.create_study(db, "xss2", guidelines="\n\n".join(payloads("guide")), config=StudyConfig(
        blind=False, questions=["best", "rating", "checklist", "critique", "comment"]))
    prompts.insert_prompts(db, s.id, [
        PromptIn(external_id=ext, messages=[ChatMessage(role="user", content="\n\n".join(payloads(f"prompt{i}")))])
        for i, ext in enumerate(IDS)])
    for p in prompts.list_prompts(db, s.id):
        rids = responses.insert_responses(db, [ResponseIn(prompt_id=p.id, origin="imported", text=t)
                                               for t in payloads("resp")[:4]])
        cl = checklists.create_checklist(db, p.id, "model", payloads("check")[:3], method="checklist")
        model = {"study_id": s.id, "prompt_id": p.id, "judge_kind": "model", "judge": JUDGES[1]}
        rows = [JudgmentIn(**model, method="checklist_item", response_id=rid, checklist_item_id=item.id,
                           label="YES" if k % 2 else "NO", value=float(k % 2), idempotency_key=uuid.uuid4().hex)
                for k, rid in enumerate(rids) for item in cl.items]
        rows += [JudgmentIn(**model, method="critique", variant="s0", response_id=rid, label="incorrect", value=0.0,
                            rationale="\n\n".join(payloads("critique")), idempotency_key=uuid.uuid4().hex)
                 for rid in rids]
        rows += [JudgmentIn(**model, method="p_true", response_id=rids[0], status="failed",
                            error=" ".join(payloads("error")), idempotency_key=uuid.uuid4().hex),
                 JudgmentIn(**model, method="select_usc", response_id=rids[1], idempotency_key=uuid.uuid4().hex)]
        for judge, pick in ((JUDGES[0], rids[0]), ("carol", rids[2])):  # two people who disagree
            rows.append(JudgmentIn(study_id=s.id, prompt_id=p.id, judge_kind="human", judge=judge, method="best_of_n",
                                   response_id=pick, shown_order=rids, stage="revealed",
                                   idempotency_key=uuid.uuid4().hex))
        judgments.record(db, rows)
    for name in ("admin", "ann"):
        annotators.add_annotator(db, name, "admin" if name == "admin" else "annotator", PASSWORDS[name])
    members.add(db, s.id, "ann", "admin")
    db.close()
    srv = start_server(d / "xss2.duckdb", d / "server.log")
    yield srv
    srv.stop()


class Watch:
    """Every request the page sends and every dialog it opens."""

    def __init__(self, page: Page, server: Server) -> None:
        self.host = urlparse(server.url).netloc
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def check(self, page: Page) -> None:
        settled(page)  # any late image load or handler has started by now
        assert page.evaluate("window.__xss") is None
        assert self.dialogs == []
        remote = [u for u in self.requests if urlparse(u).scheme not in ("data", "blob")
                  and urlparse(u).netloc != self.host]
        assert not remote, remote
        assert not [u for u in self.requests if TRACKER in u]


UNSAFE = "img, script, iframe, style, svg, object, embed, a[href^='javascript'], [onerror], [onload]"


def test_label_tab_renders_model_text_ids_and_status_inert(page: Page, xss2_server: Server) -> None:
    watch = Watch(page, xss2_server)
    login(page, xss2_server.url, "ann")
    expect(page.locator("#prompt")).to_contain_text("prompt", timeout=30_000)
    expect(page.locator("#view-md-1")).to_contain_text("Checklist")  # the model's view is open
    expect(page.locator("#view-md-1")).to_contain_text("critique script")
    for k in range(1, 5):
        expect(page.locator(f"#resp-{k}")).to_be_visible()
    areas = page.locator("#prompt, #guidelines, #status, [id^='resp-'], [id^='view-md-'], [id^='checklist-'], "
                         "#invalid-items, #title-1")
    watch.check(page)
    assert areas.locator(UNSAFE).count() == 0
    # Stored text shows as text: the tags, and a removed image's alt text (cards are shuffled per person).
    cards = page.locator("div[id^='resp-']")
    expect(cards.filter(has_text="resp script")).to_contain_text("<script>")
    expect(cards.filter(has_text="resp markdown image")).to_contain_text("[image removed: resp]")
    expect(page.locator("#checklist-1")).to_contain_text("<img src=")
    expect(page.locator("#prompt")).to_contain_text("Prompt")

    # Submitting puts the prompt's id into the status line; skipping shows the next ids in the header.
    page.locator("#progress").click()
    page.keyboard.press("1")
    submit_anyway(page)
    page.locator("#skip-btn").click()
    expect(page.locator("#status")).to_contain_text("Skipped prompt")
    page.locator("#skip-btn").click()
    expect(page.locator("#status")).to_contain_text("Skipped prompt")
    wait_idle(page)
    watch.check(page)
    assert areas.locator(UNSAFE).count() == 0


def test_agreement_tab_renders_disagreed_ids_and_judge_names_inert(page: Page, xss2_server: Server) -> None:
    watch = Watch(page, xss2_server)
    login(page, xss2_server.url, "admin")
    page.get_by_role("tab", name="Agreement").click()
    study = page.locator("#agr-study input")
    study.click()
    page.get_by_role("option", name="xss2").click()
    page.locator("#agr-stage input[value='revealed']").check()
    page.locator("#agr-boot input").fill("0")
    page.locator("#agr-compute").click()
    expect(page.locator("#agr-status")).to_contain_text("Study xss2", timeout=60_000)
    table = page.locator("#agr-disagreed")
    expect(table).to_contain_text("humans vs humans")
    expect(table).to_contain_text("humans vs model")
    for ext in IDS[:1]:
        expect(table).to_contain_text(ext)  # the id as text, not as an element
    page.get_by_text("Full report").click()
    expect(page.locator("#agr-full")).to_contain_text("Most disagreed items")
    wait_idle(page)
    watch.check(page)
    # Table cells only: the tables' own toolbars hold Gradio's SVG icons.
    areas = page.locator("#agr-disagreed td, #agr-headline td, #agr-full, #agr-status")
    assert areas.count() > 3
    assert areas.locator(UNSAFE).count() == 0
    expect(page.locator("#agr-full")).to_contain_text(IDS[0])  # an escaped tag shows as text
    expect(page.locator("#agr-full")).to_contain_text("[image removed: j]")  # a judge named as an image
