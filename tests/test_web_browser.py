"""Each page labelled with the keyboard alone in a real browser (Playwright driving Debian's chromium).

Screenshots go to ``test-artifacts/``. Skipped only where no chromium binary is installed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from _web_helpers import TOKENS, LiveServer, add_people, make_queries, post_queries, tmp_app

CHROMIUM = os.environ.get("RLHF_GYM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def site(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store, consent=False)
    qs = make_queries(n_pairs=3, n_steps=4)
    c = TestClient(app)
    assert post_queries(c, qs["pair"] + qs["step"] + qs["demo"], assigned_to="alice").status_code == 200
    srv = LiveServer(app)
    yield srv, store, qs
    srv.stop()
    store.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(browser, srv, consent: bool = True):
    ctx = browser.new_context(viewport={"width": 1000, "height": 720})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{srv.url}/?token={TOKENS['alice']}")
    page.wait_for_selector("#consent:not(.hidden)")
    if consent:
        page.keyboard.press("a")
        page.wait_for_selector("#home:not(.hidden)")
    return ctx, page, errors


def wait_js(page, expr: str, timeout: float = 10000) -> None:
    """Wait until a JS expression is true, polling from Python.

    ``page.wait_for_function`` polls with ``eval`` inside the page, which the app's Content-Security-Policy
    (rightly) blocks; ``page.evaluate`` goes through the DevTools protocol and is not affected.
    """
    end = time.monotonic() + timeout / 1000
    while time.monotonic() < end:
        if page.evaluate(expr):
            return
        time.sleep(0.05)
    raise AssertionError(f"not true in time: {expr}")


def wait_until(fn, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_consent_then_preference_pairs_by_keyboard(browser, site):
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv, consent=False)
    assert store.feedback() == []
    assert "voluntary" in page.inner_text("#consent-text")
    shot(page, "consent")
    page.keyboard.press("a")
    page.wait_for_selector("#home:not(.hidden)")
    assert store.has_consent("alice")
    assert "0 labels given / 8 wanted" in page.inner_text("#progress")
    shot(page, "home")
    page.keyboard.press("1")
    page.wait_for_url("**/preference")
    ids = []
    for key in ("ArrowLeft", "=", "s"):
        wait_js(page, "document.body.dataset.state === 'showing'")
        wait_js(page, "document.getElementById('left').complete && document.getElementById('left').naturalWidth > 0")
        ids.append(page.evaluate("document.body.dataset.query"))
        if key == "ArrowLeft":
            shot(page, "preference")
        page.keyboard.press(key)
        wait_js(page, f"document.body.dataset.query !== '{ids[-1]}' || document.body.dataset.state === 'empty'")
    wait_js(page, "document.body.dataset.state === 'empty' && (window.labelsSaved || 0) >= 3")
    shot(page, "preference-done")
    got = {f.query_id: f.value for f in store.feedback(kind="pair")}
    assert ids == [q.id for q in qs["pair"]]
    assert got == {ids[0]: 1.0, ids[1]: 0.5, ids[2]: None}
    assert "2 labels given" in page.inner_text("#progress")
    assert errors == []
    ctx.close()


def test_evaluative_steps_marked_by_keyboard(browser, site):
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv)
    page.goto(f"{srv.url}/evaluative?speed=2")
    wait_js(page, "document.body.dataset.state === 'showing' && document.body.dataset.step === '0'")
    page.keyboard.press("ArrowUp")  # step 0 good
    shot(page, "evaluative")
    wait_js(page, "document.body.dataset.step === '1'")
    page.keyboard.press("b")  # step 1 bad
    wait_js(page, "document.body.dataset.state === 'empty'", 15000)
    wait_until(lambda: len(store.feedback(kind="step")) == 4)
    fbs = {f.data["query_step"]: f for f in store.feedback(kind="step")}
    assert (fbs[0].value, fbs[0].step) == (1.0, 0) and (fbs[1].value, fbs[1].step) == (0.0, 1)
    assert fbs[2].value is None and fbs[3].value is None  # passed without a key: skipped
    assert fbs[0].answered_at < fbs[1].answered_at and fbs[0].data["speed_fps"] == 2
    assert errors == []
    ctx.close()


def test_demonstration_played_by_keyboard(browser, site):
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv)
    page.keyboard.press("3")
    page.wait_for_url("**/demo")
    wait_js(page, "document.body.dataset.state === 'ready'")
    page.keyboard.press("Enter")
    wait_js(page, "document.body.dataset.state === 'playing'")
    keys = ["ArrowRight", "ArrowLeft", "ArrowRight", "ArrowLeft"]
    for i, k in enumerate(keys, 1):
        page.keyboard.press(k)
        wait_js(page, f"document.body.dataset.step === '{i}'")
    shot(page, "demo")
    page.keyboard.press("Escape")
    wait_js(page, "document.body.dataset.state === 'saved'")
    [fb] = store.feedback(kind="demo")
    t = fb.data["trajectory"]
    assert t["acts"] == [1, 0, 1, 0] and len(t["obs"]) == 5 and t["truncated"]
    assert errors == []
    ctx.close()


def test_withdraw_by_keyboard(browser, site):
    srv, store, qs = site
    ctx, page, _errors = sign_in(browser, srv)
    page.focus("#withdraw")
    page.keyboard.press("Enter")
    page.wait_for_selector("#withdraw-confirm:not(.hidden)")
    page.keyboard.press("Enter")  # the confirm button has focus now
    wait_js(page, "document.getElementById('status').textContent.includes('Withdrawn')")
    shot(page, "withdrawn")
    assert store.annotator("alice").withdrawn_at is not None
    ctx.close()
