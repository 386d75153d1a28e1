"""Each page labelled with the keyboard alone in a real browser (Playwright driving Debian's chromium).

Screenshots go to ``test-artifacts/``. Skipped only where no chromium binary is installed.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def live_site(tmp_path, queries, **post):
    """A live app with the usual people (consent not yet given) and ``queries`` posted for alice;
    yields (server, store, queries)."""
    store, app = tmp_app(tmp_path)
    add_people(store, consent=False)
    assert post_queries(TestClient(app), queries, assigned_to="alice", **post).status_code == 200
    srv = LiveServer(app)
    try:
        yield srv, store, queries
    finally:
        srv.stop()
        store.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def sign_in(browser, srv, consent: bool = True, phone: bool = False, height: int = 720):
    """Alice's browser at the start page, page errors collected; consent given (a key press, or a tap on a
    phone-sized touch viewport) unless ``consent=False``. Returns (context, page, errors)."""
    ctx = browser.new_context(**PHONE) if phone else browser.new_context(viewport={"width": 1000, "height": height})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{srv.url}/?token={TOKENS['alice']}")
    page.wait_for_selector("#consent:not(.hidden)")  # consent first, as on every page
    if consent:
        if phone:
            page.tap("#agree")
        else:
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


def press_at_pace(page, presses, saved: int) -> list[str]:
    """Answer the shown queries by key presses a person's pause apart ((key, seconds) pairs); returns the
    ids of the queries answered, after the page has saved ``saved`` labels and has nothing left to show."""
    ids = []
    for key, pause in presses:
        wait_js(page, "document.body.dataset.state === 'showing'")
        ids.append(page.evaluate("document.body.dataset.query"))
        page.keyboard.press(key)
        time.sleep(pause)
    wait_js(page, f"document.body.dataset.state === 'empty' && (window.labelsSaved || 0) >= {saved}")
    return ids


def assert_tappable(page, selectors) -> None:
    """Every button is at least 44 x 44 CSS pixels (the usual smallest touch target)."""
    for sel in selectors:
        box = page.locator(sel).bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44, (sel, box)


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


def test_evaluative_waits_for_a_person_at_their_own_pace(browser, site):
    """Default page, key presses 1-2 s apart: every step pressed is an answer, nothing passes by itself."""
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv)
    page.goto(f"{srv.url}/evaluative")
    wait_js(page, "document.body.dataset.state === 'showing' && document.body.dataset.step === '0'")
    assert page.evaluate("document.body.dataset.mode") == "step"
    acts = {q.step: q.action for q in qs["step"]}
    meaning = {0: "push cart left", 1: "push cart right"}
    assert page.inner_text("#action") == f"Action: {meaning[acts[0]]}"
    time.sleep(2.5)  # a person looking at the first step: nothing moves on, nothing is sent
    assert store.feedback(kind="step") == [] and page.evaluate("document.body.dataset.step") == "0"
    shot(page, "evaluative-waiting")
    for i, (key, pause) in enumerate([("ArrowUp", 1.0), ("b", 1.6), ("ArrowUp", 2.0), ("s", 1.2)]):
        wait_js(page, f"document.body.dataset.step === '{i}'")
        assert page.inner_text("#action") == f"Action: {meaning[acts[i]]}"
        page.keyboard.press(key)
        time.sleep(pause)
    wait_js(page, "document.body.dataset.state === 'empty'")
    wait_until(lambda: len(store.feedback(kind="step")) == 4)
    fbs = {f.data["query_step"]: f for f in store.feedback(kind="step")}
    assert [fbs[t].value for t in range(4)] == [1.0, 0.0, 1.0, None]  # the last: "can't tell", chosen
    assert all(fbs[t].data["mode"] == "step" and fbs[t].data["key"] != "passed" for t in range(4))
    assert [fbs[t].step for t in range(4)] == [0, 1, 2, 3]
    assert "No steps are waiting" in page.inner_text("#status")
    assert errors == []
    ctx.close()


def test_evaluative_playing_is_chosen_and_passed_steps_count_as_skips(browser, site):
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv)
    page.goto(f"{srv.url}/evaluative")
    wait_js(page, "document.body.dataset.state === 'showing'")
    page.keyboard.press("ArrowUp")  # step 0 answered while waiting
    wait_js(page, "document.body.dataset.step === '1'")
    page.keyboard.press("+")  # 2 steps/s
    page.keyboard.press(" ")  # the person chooses to play
    assert page.evaluate("document.body.dataset.mode") == "play"
    wait_js(page, "document.body.dataset.state === 'empty'", 15000)
    wait_until(lambda: len(store.feedback(kind="step")) == 4)
    fbs = {f.data["query_step"]: f for f in store.feedback(kind="step")}
    assert fbs[0].value == 1.0 and fbs[0].data["mode"] == "step"
    assert all(fbs[t].value is None and fbs[t].data == {**fbs[t].data, "mode": "play", "key": "passed", "speed_fps": 2}
               for t in (1, 2, 3))
    assert errors == []
    ctx.close()


def test_waiting_notice_is_cleared_when_steps_arrive(browser, tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store, consent=False)
    srv = LiveServer(app)
    try:
        ctx, page, errors = sign_in(browser, srv)
        page.goto(f"{srv.url}/evaluative")
        wait_js(page, "document.body.dataset.state === 'empty'")
        assert "No steps are waiting" in page.inner_text("#status")
        qs = make_queries(n_pairs=0, n_steps=2)
        assert post_queries(TestClient(app), qs["step"], assigned_to="alice").status_code == 200
        wait_js(page, "document.body.dataset.state === 'showing'", 10000)
        assert "No steps are waiting" not in page.inner_text("#status")
        assert errors == []
        ctx.close()
    finally:
        srv.stop()
        store.close()


def test_phone_viewport_labels_by_tapping(browser, site):
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv, phone=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # the header fits
    page.tap("#go-pair")
    page.wait_for_url("**/preference")
    wait_js(page, "document.body.dataset.state === 'showing' && document.getElementById('left').naturalWidth > 0")
    width = page.evaluate("document.getElementById('left').getBoundingClientRect().width")
    assert width >= 0.85 * 390, width  # the clip fills the width (was about 80 px)
    assert_tappable(page, ("#btn-left", "#btn-right", "#btn-equal", "#btn-skip"))
    shot(page, "phone-preference")
    first = page.evaluate("document.body.dataset.query")
    page.tap("#btn-left")
    wait_js(page, f"document.body.dataset.query !== '{first}'")
    page.tap("#btn-right")
    wait_until(lambda: len(store.feedback(kind="pair")) == 2)
    page.goto(f"{srv.url}/evaluative")
    wait_js(page, "document.body.dataset.state === 'showing'")
    assert page.evaluate("document.getElementById('frame').getBoundingClientRect().width") >= 0.85 * 390
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "phone-evaluative")
    page.tap("#good")
    wait_js(page, "document.body.dataset.step === '1'")
    page.tap("#bad")
    wait_until(lambda: len(store.feedback(kind="step")) == 2)
    assert sorted(f.value for f in store.feedback(kind="step")) == [0.0, 1.0]
    assert sorted(f.value for f in store.feedback(kind="pair")) == [0.0, 1.0]
    assert errors == []
    ctx.close()


def test_admin_report_fits_its_frame(browser, tmp_path):
    from _web_helpers import ADMIN
    from govsim import populate

    store, app = tmp_app(tmp_path)
    populate(store, seed=0, n_queries=20, per_person=15)
    srv = LiveServer(app)
    try:
        ctx = browser.new_context(viewport={"width": 1200, "height": 900})
        page = ctx.new_page()
        page.goto(f"{srv.url}/admin")
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
        wait_js(page, "document.getElementById('report').srcdoc.length > 0")
        frame = page.frame_locator("#report")
        frame.locator("table").first.wait_for()
        inner = next(f for f in page.frames if f != page.main_frame)
        fits = inner.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert fits[0] <= fits[1], fits  # no column (the flags) cut off
        assert "flag" in inner.content()
        shot(page, "admin-report")
        ctx.close()
    finally:
        srv.stop()
        store.close()


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
