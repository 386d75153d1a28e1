"""Versioned migrations: a store made by the release before them is upgraded with its data intact."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import create_engine, text

from _web_helpers import drop_pg, pg_database
from rlhf_gym.store import AlreadyAnswered, FeedbackStore, hash_token, migrate, resolve_url
from rlhf_gym.store.audit import GENESIS, entry_hash, head_mac
from rlhf_gym.types import Feedback

PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


def make_previous_release_store(url: str) -> None:
    """The tables of revision 0001 with rows in them, and no alembic_version (as the old release left it)."""
    from alembic import command

    eng = create_engine(url)
    with eng.begin() as conn:
        command.upgrade(migrate._config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        now = time.time()
        conn.execute(text("INSERT INTO annotators (id, kind, token_hash, role, created_at) VALUES "
                          "('old-person', 'human', :h, 'annotator', :t)"), {"h": hash_token("tok-old-0123456789"),
                                                                            "t": now})
        conn.execute(text("INSERT INTO consents (annotator_id, version, text_hash, agreed, at) VALUES "
                          "('old-person', 'v1', 'x', :a, :t)"), {"a": True, "t": now})
        conn.execute(text("INSERT INTO runs (id, created_at, status) VALUES ('r0', :t, 'running')"), {"t": now})
        conn.execute(text("INSERT INTO queries (id, run_id, kind, payload, created_at) VALUES "
                          "('q0', 'r0', 'step', :p, :t)"),
                     {"p": '{"obs": [0.0, 1.0], "action": 1, "step": 0, "episode": 0}', "t": now})
        conn.execute(text("INSERT INTO feedback (query_id, annotator_id, value, asked_at, answered_at, client_key, "
                          "withdrawn) VALUES ('q0', 'old-person', 1.0, :t, :t, 'k0', :w)"), {"t": now, "w": False})
        h = entry_hash(1, now, "system", "feedback.add", {"feedback": 1}, GENESIS)
        conn.execute(text("INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES "
                          "(1, :t, 'system', 'feedback.add', :p, :g, :h)"),
                     {"t": now, "p": '{"feedback": 1}', "g": GENESIS, "h": h})
        conn.execute(text("INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, 1, :h, :m)"),
                     {"h": h, "m": head_mac(1, h)})
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield resolve_url(tmp_path / "old.db")
        return
    if not PG_URL:
        pytest.skip("RLHF_GYM_TEST_PG_URL not set")
    url, eng, name = pg_database(PG_URL)
    yield resolve_url(url)
    drop_pg(eng, name)


def test_previous_release_store_is_refused_then_upgraded_with_data_intact(db_url, capsys):
    from rlhf_gym.cli import main

    make_previous_release_store(db_url)
    with pytest.raises(migrate.SchemaOutOfDate, match="rlhf-gym db upgrade"):
        FeedbackStore(db_url)
    assert main(["db", "current", "--db", db_url]) == 0 and "revision 0001" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert f"to {migrate.head()}" in capsys.readouterr().out
    s = FeedbackStore(db_url)
    assert [(f.query_id, f.annotator_id, f.value) for f in s.feedback()] == [("q0", "old-person", 1.0)]
    assert s.annotator_by_token("tok-old-0123456789").id == "old-person"  # old invites keep working
    assert s.has_consent("old-person", "v1") and s.verify_audit().ok
    secret, _ = s.start_session("old-person")  # the new tables work
    assert s.annotator_by_session(secret).id == "old-person"
    with pytest.raises(AlreadyAnswered):  # the upgraded store enforces one answer per person and query
        s.add_feedback(Feedback("q0", "old-person", 0.0, 1.0, 2.0), client_key="k1")
    s.add_feedback(Feedback("q0", "old-person", 0.0, 1.0, 2.0))  # no client key: not a web answer
    assert len(s.feedback()) == 2 and s.verify_audit().ok
    assert main(["db", "upgrade", "--db", db_url]) == 0 and "already at" in capsys.readouterr().out
    s.close()


def test_migrated_schema_matches_the_models(db_url):
    """Upgrading from the baseline gives exactly the schema a new store gets (no drift between the two)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from rlhf_gym.store.schema import Base

    make_previous_release_store(db_url)
    eng = create_engine(db_url)
    migrate.upgrade(eng)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    eng.dispose()
    assert diff == []
