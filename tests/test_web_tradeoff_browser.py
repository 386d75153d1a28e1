"""The trade-off page in a real browser (Playwright driving Debian's chromium): a person choosing between
two outcomes at their own pace with the keyboard, and on a phone by tapping. Screenshots go to
``test-artifacts/``."""

from __future__ import annotations

import time

import pytest

from test_web_browser import (  # noqa: F401 (the browser fixture)
    CHROMIUM,
    assert_tappable,
    browser,
    live_site,
    press_at_pace,
    shot,
    sign_in,
    wait_js,
    wait_until,
)
from test_web_tradeoff import ENV, outcome_queries

pytestmark = [pytest.mark.browser]


@pytest.fixture
def site(tmp_path):
    with live_site(tmp_path, outcome_queries(n=3), run_id="run-t", env_id=ENV) as s:
        yield s


def test_outcomes_chosen_by_keyboard_at_a_persons_pace(browser, site):  # noqa: F811
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv, height=760)
    assert "(3 waiting)" in page.inner_text("#n-outcome")
    page.keyboard.press("4")
    page.wait_for_url("**/tradeoff")
    wait_js(page, "document.body.dataset.state === 'showing'")
    wait_js(page, "document.getElementById('left').complete && document.getElementById('left').naturalWidth > 0")
    assert page.evaluate("document.body.dataset.clips") == "yes"
    table = page.inner_text("#left-table")
    assert "treasure" in table and "time" in table and f"{qs[0].left[1]:.2f}" in table
    assert f"{qs[0].right[1]:.2f}" in page.inner_text("#right-table")
    boxes = [page.locator(s).bounding_box() for s in ("#left-box", "#right-box")]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] and abs(boxes[0]["y"] - boxes[1]["y"]) < 2  # side by side
    shot(page, "tradeoff")
    time.sleep(2.0)  # a person thinking: nothing moves on, nothing is sent
    assert store.feedback(kind="outcome", include_skipped=True) == []
    assert page.evaluate("document.body.dataset.query") == qs[0].id
    ids = press_at_pace(page, (("ArrowRight", 1.2), ("=", 1.6), ("s", 1.0)), saved=3)
    assert ids == [q.id for q in qs]
    got = {f.query_id: f.value for f in store.feedback(kind="outcome", include_skipped=True)}
    assert got == {qs[0].id: 0.0, qs[1].id: 0.5, qs[2].id: None}
    assert "No outcomes are waiting" in page.inner_text("#status")
    assert errors == []
    ctx.close()


def test_phone_viewport_chooses_outcomes_by_tapping(browser, site):  # noqa: F811
    srv, store, qs = site
    ctx, page, errors = sign_in(browser, srv, phone=True)
    page.tap("#go-outcome")
    page.wait_for_url("**/tradeoff")
    wait_js(page, "document.body.dataset.state === 'showing' && document.getElementById('left').naturalWidth > 0")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing cut off
    assert page.evaluate("document.getElementById('left').getBoundingClientRect().width") >= 0.85 * 390
    assert_tappable(page, ("#btn-left", "#btn-right", "#btn-equal", "#btn-skip"))
    assert page.locator("#right-table").is_visible()
    shot(page, "phone-tradeoff")
    first = page.evaluate("document.body.dataset.query")
    page.tap("#btn-left")
    wait_js(page, f"document.body.dataset.query !== '{first}'")
    page.tap("#btn-equal")
    wait_until(lambda: len(store.feedback(kind="outcome")) == 2)
    assert {f.query_id: f.value for f in store.feedback(kind="outcome")} == {qs[0].id: 1.0, qs[1].id: 0.5}
    assert errors == []
    ctx.close()
