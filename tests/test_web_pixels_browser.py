"""A pixel game's clip shown to a person in a real browser (Playwright driving Debian's chromium).

The clip is posted over HTTP (frames inline, compressed), stored as files beside the store, replayed from
(seed, actions) into the game's own picture, served as an animated WebP and labelled with a key press.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from _web_helpers import LiveServer, add_people, headers, post_queries, tmp_app
from test_web_browser import CHROMIUM, browser, shot, sign_in, wait_js, wait_until  # noqa: F401  (fixture)

pytest.importorskip("minatar")

ENV = "MinAtar/Breakout-v1"


def _pixel_pair(seed: int = 0):
    from rlhf_gym.envs import make_env
    from rlhf_gym.rollouts import rollout, segment_at
    from rlhf_gym.types import PairQuery

    env = make_env(ENV, seed=seed)
    traj = rollout(env, lambda _o: env.action_space.sample(), seed=seed, max_steps=40)
    env.close()
    return PairQuery.make(segment_at(traj, 0, 12), segment_at(traj, 0, 12), run_id="run-px")


def _first_frame(webp: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(webp))
    im.seek(0)
    return np.asarray(im.convert("RGB"), dtype=np.float64)


def test_pixel_clip_is_shown_as_the_game_and_labelled(browser, tmp_path):  # noqa: F811
    from rlhf_gym.envs import make_env
    from rlhf_gym.web.clips import _resize

    store, app = tmp_app(tmp_path)
    add_people(store, consent=False)
    q = _pixel_pair()
    body = json.dumps({"queries": [q.to_dict()]})
    assert "npz_b64" in body and len(body) < 200_000  # compressed frames on the wire, not pixel lists
    c = TestClient(app)
    assert post_queries(c, [q], run_id="run-px", assigned_to="alice", env_id=ENV).status_code == 200
    assert store.frames.size() > 0  # stored as files beside the store
    srv = LiveServer(app)
    try:
        ctx, page, errors = sign_in(browser, srv)
        page.goto(f"{srv.url}/preference")
        wait_js(page, "document.body.dataset.state === 'showing'")
        wait_js(page, "document.getElementById('left').complete && document.getElementById('left').naturalWidth > 0",
                30000)
        assert page.evaluate("document.body.dataset.query") == q.id
        shot(page, "pixel-preference")
        # what the browser shows is the game replayed from the stored clip, not a chart of the observation
        served = c.get(f"/api/clips/{q.id}/left", headers=headers("alice"))
        assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
        seg = store.query(q.id).left
        assert seg.start == 0
        env = make_env(ENV, render_mode="rgb_array")  # the game's own first picture, rendered here
        env.reset(seed=seg.seed)
        want = np.asarray(_resize(env.render()).convert("RGB"), dtype=np.float64)
        env.close()
        got = _first_frame(served.content)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.abs(got - want).mean() < 12, np.abs(got - want).mean()  # lossy WebP, same picture
        assert page.evaluate("document.getElementById('left').naturalWidth") == want.shape[1]
        page.keyboard.press("ArrowLeft")
        wait_until(lambda: len(store.feedback(kind="pair")) == 1)
        fb = store.feedback(kind="pair")[0]
        assert fb.query_id == q.id and fb.value == 1.0 and fb.annotator_id == "alice"
        assert errors == []
        ctx.close()
    finally:
        srv.stop()
        store.close()


def test_pixel_clip_is_not_served_to_another_annotator(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store, consent=True)
    q = _pixel_pair(seed=1)
    c = TestClient(app)
    assert post_queries(c, [q], run_id="run-px", assigned_to="alice", env_id=ENV).status_code == 200
    assert c.get(f"/api/clips/{q.id}/left", headers=headers("alice")).status_code == 200
    assert c.get(f"/api/clips/{q.id}/left", headers=headers("bob")).status_code in (403, 404)
    store.close()
