"""Sessions: the cookie is a server-side session id; logout, withdrawal and revoked/expired invites end access."""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient

from _web_helpers import (
    TOKENS,
    add_people,
    drop_pg,
    headers,
    make_queries,
    pg_database,
    post_queries,
    tmp_app,
)
from rlhf_gym.store import FeedbackStore
from rlhf_gym.web import auth

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")
SAME = {"Origin": "http://testserver"}


def _browser(app, who="alice") -> TestClient:
    c = TestClient(app)
    r = c.get(f"/?token={TOKENS[who]}", follow_redirects=False)
    assert r.status_code == 303
    return c


@pytest.fixture
def web(tmp_path):
    store, app = tmp_app(tmp_path)
    add_people(store)
    c = TestClient(app)
    qs = make_queries(n_pairs=2, n_steps=2)
    post_queries(c, qs["pair"] + qs["step"])
    yield store, app, qs
    store.close()


def test_cookie_is_a_session_id_and_logout_ends_every_session(web):
    store, app, qs = web
    laptop, phone = _browser(app), _browser(app)
    cookie = laptop.cookies.get(auth.COOKIE)
    assert cookie and cookie != TOKENS["alice"] and TOKENS["alice"] not in cookie
    assert cookie != phone.cookies.get(auth.COOKIE)  # one session per browser
    assert laptop.get("/api/me").json()["annotator_id"] == "alice" and phone.get("/api/me").status_code == 200
    r = laptop.post("/api/logout", headers=SAME)
    assert r.status_code == 200 and r.json()["sessions_ended"] == 2
    # the old cookie fails, even when sent again by hand, and so does the other browser's
    stale = TestClient(app)
    stale.cookies.set(auth.COOKIE, cookie)
    for c in (stale, phone):
        r = c.get("/api/me")
        assert r.status_code == 401 and "session has ended" in r.json()["detail"]
        assert c.get(f"/api/clips/{qs['pair'][0].id}/left").status_code == 401
        assert c.post("/api/feedback", json={"query_id": qs["pair"][0].id, "value": 1, "client_key": "k"},
                      headers=SAME).status_code == 401
    assert store.feedback() == []
    # the invite link itself still opens a new session (an invite ends by expiry, revocation or withdrawal)
    again = _browser(app)
    assert again.get("/api/me").status_code == 200
    assert [e["action"] for e in store.audit_entries()].count("session.end") == 1


def test_withdrawal_ends_sessions_and_revokes_the_invite(web):
    store, app, qs = web
    laptop, phone = _browser(app), _browser(app)
    cookie = laptop.cookies.get(auth.COOKIE)
    r = laptop.post("/api/withdraw", json={"confirm": True}, headers=SAME)
    assert r.status_code == 200 and r.json()["withdrawn"] is True
    stale = TestClient(app)
    stale.cookies.set(auth.COOKIE, cookie)
    for c in (stale, phone):
        assert c.get("/api/me").status_code == 401
        assert c.get("/api/queries?kind=pair").status_code == 401
    assert TestClient(app).get("/api/me", headers=headers("alice")).status_code == 401
    assert TestClient(app).get(f"/?token={TOKENS['alice']}", follow_redirects=False).status_code == 401
    assert TestClient(app).get("/api/me", headers=headers("bob")).status_code == 200  # others unaffected


def test_revoked_and_expired_invites_fail(web):
    store, app, _qs = web
    app.state.web.token_cache.ttl = 0  # revocation from another process (the CLI) is seen at once
    phone = _browser(app, "bob")
    assert store.revoke_invite("bob", reason="lost phone") == 1
    assert phone.get("/api/me").status_code == 401
    assert TestClient(app).get("/api/me", headers=headers("bob")).status_code == 401
    assert TestClient(app).get(f"/?token={TOKENS['bob']}", follow_redirects=False).status_code == 401
    new = store.reissue_invite("bob", ttl=3600)
    c = TestClient(app)
    assert c.get(f"/?token={new}", follow_redirects=False).status_code == 303 and c.get("/api/me").status_code == 200
    store.add_annotator("carol", kind="human", token="tok-carol-0123456789", token_ttl=-1.0)
    r = TestClient(app).get("/?token=tok-carol-0123456789", follow_redirects=False)
    assert r.status_code == 401 and "expired" in r.text
    acts = [e["action"] for e in store.audit_entries()]
    assert "invite.revoke" in acts and "invite.reissue" in acts


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_store(request, tmp_path):
    if request.param == "sqlite":
        s = FeedbackStore(tmp_path / "s.db")
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set")
    url, eng, name = pg_database(PG_URL)
    s = FeedbackStore(url)
    yield s
    s.close()
    drop_pg(eng, name)


def test_store_sessions_on_each_backend(backend_store):
    s = backend_store
    s.add_annotator("p", kind="human", token="tok-p-0123456789", token_ttl=100.0)
    assert s.annotator_by_token("tok-p-0123456789").id == "p"
    assert s.annotator_by_token("tok-p-0123456789", now=time.time() + 200) is None  # expired
    a, exp_a = s.start_session("p")
    b, _ = s.start_session("p", ttl=10.0)
    assert exp_a <= time.time() + 100.0  # a session never outlives its invite
    assert s.annotator_by_session(a).id == "p" and s.annotator_by_session(b).id == "p"
    assert s.annotator_by_session(b, now=time.time() + 20) is None and s.annotator_by_session("nope") is None
    assert s.end_sessions("p", actor="p") == 2
    assert s.annotator_by_session(a) is None and s.annotator_by_session(b) is None
    c, _ = s.start_session("p")
    out = s.withdraw_annotator("p")
    assert out["sessions_ended"] == 1 and s.annotator_by_session(c) is None
    assert s.annotator_by_token("tok-p-0123456789") is None
    with pytest.raises(ValueError, match="withdrawn"):
        s.start_session("p")
    assert s.verify_audit().ok


def test_cli_invite_expiry_revoke_and_reinvite(tmp_path, capsys):
    from rlhf_gym.cli import main

    db = str(tmp_path / "cli.db")
    assert main(["annotators", "invite", "--db", db, "--id", "dana", "--expires-days", "2", "--json"]) == 0
    import json

    tok = json.loads(capsys.readouterr().out)["token"]
    store = FeedbackStore(db)
    row = store.annotator_by_token(tok)
    assert row is not None and abs(row.token_expires_at - time.time() - 2 * 86400) < 60
    assert main(["annotators", "revoke", "--db", db, "dana"]) == 0 and store.annotator_by_token(tok) is None
    assert main(["annotators", "reinvite", "--db", db, "dana", "--expires-days", "0"]) == 0
    link = capsys.readouterr().out.strip().splitlines()[-1]
    new = link.split("token=")[1]
    assert store.annotator_by_token(new).token_expires_at is None
    assert main(["annotators", "invite", "--db", db, "--expires-days", "-1"]) == 2
