"""Property-based fuzz of the whole API from its OpenAPI description (schemathesis): never a 5xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from _web_helpers import ADMIN, TOKENS, add_people, make_queries, post_queries

schemathesis = pytest.importorskip("schemathesis")

from rlhf_gym.store import FeedbackStore  # noqa: E402
from rlhf_gym.web.app import create_app  # noqa: E402


def _build(tmp_dir):
    store = FeedbackStore(tmp_dir / "fuzz.db")
    add_people(store)
    app = create_app(store, ADMIN, tmp_dir / "clips")
    c = TestClient(app)
    qs = make_queries(n_pairs=1, n_steps=1, seg_len=3)
    post_queries(c, qs["pair"] + qs["step"] + qs["demo"], assigned_to="alice")
    return store, app


_tmp = __import__("tempfile").TemporaryDirectory(prefix="rlhf-fuzz-")
_store, _app = _build(__import__("pathlib").Path(_tmp.name))
schema = schemathesis.openapi.from_asgi("/api/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case):
    token = ADMIN if case.path.startswith("/api/admin") else TOKENS["alice"]
    resp = case.call(headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code < 500, f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:300]}"
    # and without any token, every route refuses
    if case.path.startswith("/api/") and case.path != "/api/logout":
        anon = case.call(headers={})
        assert 400 <= anon.status_code < 500
