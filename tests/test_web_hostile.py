"""Hostile input and hostile pages: what the app refuses before anything is stored, on both backends.

NaN, Infinity, NUL and lone surrogates parse as JSON in Python but cannot be stored or served as
standard JSON; each is refused with 422 naming the field, the answers feed keeps serving, and an
export stays valid JSONL. Oversized bodies without the admin token are refused before parsing;
cookie POSTs from another origin are refused; every response carries the security headers.
"""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient

from _web_helpers import (
    add_people,
    admin_headers,
    drop_pg,
    headers,
    make_queries,
    pg_database,
    post_queries,
    tmp_app,
)
from rlhf_gym.store import FeedbackStore

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def web(request, tmp_path):
    if request.param == "sqlite":
        store = FeedbackStore(tmp_path / "h.db")
        cleanup = None
    else:
        if not PG_URL:
            pytest.skip("RLHF_GYM_TEST_PG_URL not set (no PostgreSQL server for this run)")
        url, eng, name = pg_database(PG_URL)
        store = FeedbackStore(url)
        cleanup = (eng, name)
    store, app = tmp_app(tmp_path, store)
    add_people(store)
    client = TestClient(app)
    qs = make_queries(n_pairs=2, n_steps=4)
    assert post_queries(client, qs["pair"] + qs["step"]).status_code == 200
    yield store, client, qs, tmp_path
    store.close()
    if cleanup:
        drop_pg(*cleanup)


def raw_label(client, text: str, who: str = "alice"):
    return client.post("/api/feedback", content=text.encode("utf-8", "surrogatepass"),
                       headers={**headers(who), "Content-Type": "application/json"})


HOSTILE = [  # (JSON text of the body after the query id, field the 422 must name)
    ('"value": 1, "client_key": "k1", "data": {"n": "\\udfff"}', "data.n"),
    ('"value": 1, "client_key": "k2", "data": {"n": "a\\ud800b"}', "data.n"),
    ('"value": 1, "client_key": "k3", "data": {"n": NaN}', "data.n"),
    ('"value": 1, "client_key": "k4", "data": {"n": Infinity}', "data.n"),
    ('"value": 1, "client_key": "k5", "data": {"n": -Infinity}', "data.n"),
    ('"value": 1, "client_key": "k6", "data": {"n": "a\\u0000b"}', "data.n"),
    ('"value": 1, "client_key": "k7", "data": {"\\u0000": 1}', "data (a key)"),
    ('"value": 1, "client_key": "k8", "data": {"\\udfff": 1}', "data (a key)"),
    ('"value": 1, "client_key": "k\\u0000"', "client_key"),
    ('"value": 1, "client_key": "\\udfffk"', "client_key"),
    ('"value": NaN, "client_key": "k9"', "value"),
    ('"value": Infinity, "client_key": "k10"', "value"),
    ('"value": 1, "client_key": "k11", "shown_at": NaN', "shown_at"),
]


@pytest.mark.parametrize("rest,field", HOSTILE, ids=[h[0][-28:] for h in HOSTILE])
def test_hostile_values_get_422_naming_the_field_and_nothing_is_stored(web, rest, field):
    store, c, qs, tmp = web
    qid = qs["pair"][0].id
    r = raw_label(c, f'{{"query_id": "{qid}", {rest}}}')
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"], r.json()["detail"]
    assert store.feedback(include_withdrawn=True) == []
    # the person can still answer properly, the feed keeps serving, and the export is valid JSONL
    assert raw_label(c, f'{{"query_id": "{qid}", "value": 1, "client_key": "ok", "data": {{"n": "fine"}}}}'
                     ).status_code == 201
    feed = c.get("/api/admin/answers", headers=admin_headers())
    assert feed.status_code == 200 and [a["data"]["n"] for a in feed.json()["answers"]] == ["fine"]
    n = store.export_jsonl(tmp / "out.jsonl")
    lines = (tmp / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert n == 1 and [json.loads(x, parse_constant=_no_constants)["feedback"]["value"] for x in lines] == [1.0]


def _no_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name} in the export")


def test_hostile_consent_version_and_admin_queries(web):
    store, c, qs, _ = web
    r = c.post("/api/consent", content=b'{"agree": true, "version": "v\\u0000"}',
               headers={**headers("bob"), "Content-Type": "application/json"})
    assert r.status_code == 422 and "version" in r.json()["detail"]
    q = make_queries(run_id="run-x", n_pairs=1, n_steps=1)["step"][0].to_dict()
    text = json.dumps({"run_id": "run-x", "queries": [q]}).replace('"obs": [', '"obs": [NaN, ', 1)
    r = c.post("/api/admin/queries", content=text.encode(), headers={**admin_headers(), "Content-Type": "application/json"})
    assert r.status_code == 422 and "queries[0]" in r.json()["detail"] and "finite" in r.json()["detail"]
    assert store.queries(run_id="run-x") == []


def test_nul_in_the_url_is_refused(web):
    store, c, qs, _ = web
    assert c.get("/api/admin/answers?run_id=a%00b", headers=admin_headers()).status_code == 400
    assert c.get("/api/frames/ab%00cd", headers=headers("alice")).status_code == 400
    assert c.get("/api/admin/answers", headers=admin_headers()).status_code == 200


def test_rows_from_before_the_checks_do_not_break_the_feed_or_the_export(tmp_path):
    """A NaN and a lone surrogate already in an old SQLite store: the feed serves, the export is valid."""
    from sqlalchemy import text

    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    q = make_queries(n_pairs=1, n_steps=0)["pair"][0]
    post_queries(c, [q])
    assert raw_label(c, f'{{"query_id": "{q.id}", "value": 1, "client_key": "k"}}').status_code == 201
    with store.engine.begin() as conn:  # what an older release let through
        conn.execute(text("UPDATE feedback SET data = :d"), {"d": '{"n": NaN, "s": "\\udfff"}'})
    feed = c.get("/api/admin/answers", headers=admin_headers())
    assert feed.status_code == 200 and feed.json()["answers"][0]["data"] == {"n": None, "s": "\ufffd"}
    store.export_jsonl(tmp_path / "old.jsonl")
    [line] = (tmp_path / "old.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line, parse_constant=_no_constants)["feedback"]["data"]["n"] is None


def test_body_limits_are_checked_before_parsing(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    big = b"{" + b" " * (2 * 1024 * 1024)  # not even JSON: a 413 shows it was never parsed
    for hdrs in ({}, headers("alice"), {"Authorization": "Bearer wrong-token-123"}):
        r = c.post("/api/admin/queries", content=big, headers={**hdrs, "Content-Type": "application/json"})
        assert r.status_code == 413 and "65536" in r.json()["detail"], r.text
    # without a Content-Length (chunked), the body is cut off at the small limit too
    def chunks():
        for _ in range(64):
            yield b" " * 65536

    r = c.post("/api/admin/queries", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # with the admin token the large limit applies: the same body reaches the parser (422, not 413)
    r = c.post("/api/admin/queries", content=big, headers={**admin_headers(), "Content-Type": "application/json"})
    assert r.status_code == 422
    # annotator routes: the small limit
    r = c.post("/api/feedback", content=b"{" + b" " * 70000, headers={**headers("alice"),
                                                                      "Content-Type": "application/json"})
    assert r.status_code == 413


def test_cross_origin_cookie_posts_are_refused(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    q = make_queries(n_pairs=1, n_steps=0)["pair"][0]
    post_queries(c, [q])
    assert c.get(f"/?token={auth_token()}", follow_redirects=False).status_code == 303
    body = {"query_id": q.id, "value": 1, "client_key": "x1"}
    for bad in ({"Origin": "http://testserver:9999"}, {"Origin": "null"}, {"Origin": "http://evil.example"},
                {"Sec-Fetch-Site": "same-site"}, {}):
        r = c.post("/api/feedback", json=body, headers=bad)
        assert r.status_code == 403 and "cookie-authenticated" in r.json()["detail"], (bad, r.text)
    assert store.feedback(include_withdrawn=True) == []
    assert c.post("/api/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert c.post("/api/feedback", json=body, headers={"Origin": "http://testserver"}).status_code == 201
    assert c.post("/api/feedback", json={**body, "client_key": "x2", "query_id": q.id},
                  headers={"Sec-Fetch-Site": "same-origin"}).status_code == 409  # passed the check; answered
    # a bearer token needs no Origin (scripts, the training run): a cookie is what a page can be tricked into
    c.cookies.clear()
    assert c.post("/api/feedback", json={**body, "client_key": "x3"}, headers=headers("bob")).status_code == 201


def auth_token() -> str:
    from _web_helpers import TOKENS

    return TOKENS["alice"]


def test_security_headers_on_pages_api_and_errors(tmp_path):
    _store, app = tmp_app(tmp_path)
    c = TestClient(app)
    for path in ("/", "/evaluative", "/admin", "/api/health", "/api/me", "/static/common.js", "/nope"):
        r = c.get(path)
        h = r.headers
        assert "frame-ancestors 'none'" in h["content-security-policy"] and "script-src 'self'" in h[
            "content-security-policy"], path
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff", path
        assert h["referrer-policy"] == "no-referrer", path
    # the pages themselves carry no inline script (the policy would block it)
    for page in ("/", "/preference", "/evaluative", "/demo", "/admin"):
        assert "<script>" not in c.get(page).text, page
