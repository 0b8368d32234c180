"""A real critlab server (subprocess) on a free port with a fresh database, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.server_process import start_serve, stop

CHROMIUM = "/usr/bin/chromium"
# Playwright's 5 s default is met only on an idle machine: a loaded run (the suite next to two busy
# cores) once missed a refresh-driven picker update by a margin. Every check still waits on state.
expect.set_options(timeout=15_000)
# Cheaper password hashes for the suite's many accounts and logins (see tests/conftest.py, docs/security.md).
os.environ.setdefault("CRITLAB_TEST_ONLY_SCRYPT_N", str(2**14))
PASSWORDS = {"admin": "admin-pass-1", "ann": "ann-pass-12", "bob": "bob-pass-12", "cy": "cy-pass-1234"}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run"]}


@pytest.fixture
def shot_dir(tmp_path: Path) -> Path:
    """Where a test saves the screenshots the README shows: tmp_path, so a test run writes no tracked file;
    `make screenshots` sets CRITLAB_SCREENSHOTS=docs to refresh docs/*.png."""
    target = Path(os.environ.get("CRITLAB_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def review_shot(page: Page, name: str) -> None:
    """A full-page screenshot for a person to look at (the 1400 / 800 px walks) in $CRITLAB_SHOTS; nothing
    when it is not set."""
    folder = os.environ.get("CRITLAB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def kept_shot(target: Page | Locator, tmp_path: Path, name: str) -> None:
    """A screenshot of a page (whole) or of one element, always taken (so the rendering is exercised), written
    under tmp_path and copied to $CRITLAB_SHOTS for a person to look at when that is set."""
    out = tmp_path / name
    target.screenshot(path=str(out), **({"full_page": True} if isinstance(target, Page) else {}))
    if os.environ.get("CRITLAB_SHOTS"):
        Path(os.environ["CRITLAB_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(os.environ["CRITLAB_SHOTS"]) / name)


def choose(page: Page, elem_id: str, option: str) -> None:
    """Pick `option` in the Gradio dropdown `elem_id` (its choices may arrive on focus: the option is waited
    for) and wait until the box shows it."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(option)


def compute_agreement(page: Page, url: str, study: str, status: str, *, annotator_models: bool = False,
                      judges: bool = False, pre: tuple[int, float] | None = None) -> None:
    """Log in as admin, compute the Agreement tab's report of `study` with 100 resamples (`pre`: PRE's exam
    seed and threshold, typed into the inputs the judges box shows), and wait until the status line shows
    `status` and the page is idle."""
    login(page, url, "admin")
    page.get_by_role("tab", name="Agreement").click()
    page.locator("#agr-study input").click()
    page.get_by_role("option", name=study, exact=True).click()
    page.locator("#agr-boot input").fill("100")
    if annotator_models:
        page.locator("#agr-em input").check()
    if judges:
        page.locator("#agr-judges-on input").check()
    if pre is not None:
        page.locator("#agr-pre-seed input").fill(str(pre[0]))
        page.locator("#agr-pre-threshold input").fill(str(pre[1]))
    page.locator("#agr-compute").click()
    expect(page.locator("#agr-status")).to_contain_text(status, timeout=90_000)
    wait_idle(page)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


def critlab(*args: str, db: Path, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    r = subprocess.run([sys.executable, "-m", "app.cli", *args, "--db", str(db)], input=stdin, text=True,
                       capture_output=True, env=env, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"critlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@dataclass
class Server:
    url: str
    db: Path
    proc: subprocess.Popen
    log: Path

    def login(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
        assert r.status_code == 200, r.text
        return c

    def stop(self) -> None:
        stop(self.proc, timeout=20)


def start_server(db: Path, log: Path) -> Server:
    proc, url = start_serve(db, log, timeout=60)
    return Server(url, db, proc, log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an admin and two annotators and no studies."""
    d = tmp_path_factory.mktemp("e2e")
    db = d / "e2e.duckdb"
    critlab("annotators", "add", "admin", "--role", "admin", "--password-stdin", db=db, stdin=PASSWORDS["admin"])
    for name in ("ann", "bob"):
        critlab("annotators", "add", name, "--role", "annotator", "--password-stdin", db=db, stdin=PASSWORDS[name])
    srv = start_server(db, d / "server.log")
    yield srv
    srv.stop()


def login(page, url: str, name: str) -> None:  # noqa: ANN001
    page.goto(f"{url}/")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/**")


@contextlib.contextmanager
def logged_in(browser: Browser, url: str, name: str) -> Iterator[Page]:
    """A second person's page, in a browser context of its own (its own cookies), closed afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        login(page, url, name)
        yield page
    finally:
        context.close()


def wait_idle(page) -> None:  # noqa: ANN001
    """Wait until no Gradio event is pending."""
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))")


def wait_until(page, ready, what: str, timeout_s: float = 30) -> None:  # noqa: ANN001
    """Wait until `ready()` is true for state the test itself holds (a route handler's list, say): the
    sync API runs such handlers only while it pumps events, so this pumps in short steps until the state
    is reached, and fails naming `what` if it never is."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(25)


def settled(page) -> None:  # noqa: ANN001
    """Wait until no Gradio event is pending and then until the page's main thread has nothing queued (an
    idle callback runs only then), so an image load or handler that some rendered text would start has
    started, before a check that none did. A state to wait on, where a fixed pause would only guess."""
    wait_idle(page)
    page.evaluate("() => new Promise((done) => requestIdleCallback(() => requestAnimationFrame(() => "
                  "requestIdleCallback(() => done(), {timeout: 10000})), {timeout: 10000}))")


def gradio_call(client: httpx.Client, url: str, button_id: str, data: list,
                session: str = "attacker-session") -> str:
    """Call the event bound to a (possibly hidden) Gradio button through the raw queue API, as a script
    could without the UI; returns the raw event stream."""
    config = client.get(f"{url}/ui/config").json()
    comp = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == button_id)
    fn_index = next(i for i, d in enumerate(config["dependencies"])
                    if any(t[0] == comp for t in d["targets"]) and d.get("backend_fn"))
    r = client.post(f"{url}/ui/gradio_api/queue/join",
                    json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                          "trigger_id": comp})
    assert r.status_code == 200, r.text
    with client.stream("GET", f"{url}/ui/gradio_api/queue/data", params={"session_hash": session}) as s:
        return "".join(s.iter_text())


def submit_anyway(page, saved: str = "Saved prompt") -> None:  # noqa: ANN001
    """Ctrl+Enter, and once more if the Label tab asks to confirm unfinished answers; waits for `saved`."""
    page.keyboard.press("Control+Enter")
    status = page.locator("#status")
    page.wait_for_function(
        "([saved]) => { const t = document.querySelector('#status')?.innerText || '';"
        " return t.includes(saved) || t.includes('press Ctrl+Enter again'); }", arg=[saved])
    if "press Ctrl+Enter again" in status.inner_text():
        wait_idle(page)
        page.keyboard.press("Control+Enter")
    expect(status).to_contain_text(saved)
