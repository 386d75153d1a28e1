"""The governance paths on PostgreSQL (run when RLHF_GYM_TEST_PG_URL points at a scratch database)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import delete, func, select

from _web_helpers import drop_pg, pg_database
from govsim import PLANTED, populate
from rlhf_gym.cli import main
from rlhf_gym.governance.report import annotator_report
from rlhf_gym.store import FeedbackStore
from rlhf_gym.store.schema import AuditRow

URL = os.environ.get("RLHF_GYM_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not URL, reason="RLHF_GYM_TEST_PG_URL not set")]


@pytest.fixture
def db():
    url, eng, name = pg_database(URL)  # a fresh database of its own: starts empty
    yield url
    drop_pg(eng, name)


def test_report_withdrawal_export_and_truncation_on_postgres(tmp_path, db):
    URL = db
    s = FeedbackStore(URL)
    populate(s, seed=0, n_queries=40, per_person=30)
    assert set(annotator_report(s)["flagged"]) == set(PLANTED)
    assert main(["annotators", "withdraw", "random", "--db", URL]) == 0
    assert main(["export", "--db", URL, "--out", str(tmp_path)]) == 0
    assert "random" not in (tmp_path / "labels.jsonl").read_text()
    assert main(["audit", "verify", "--db", URL]) == 0
    with s.session() as ss, ss.begin():
        n = ss.execute(select(func.count()).select_from(AuditRow)).scalar_one()
        ss.execute(delete(AuditRow).where(AuditRow.seq == n))
    res = s.verify_audit()
    assert not res.ok and res.first_bad_seq == n
    assert main(["audit", "verify", "--db", URL]) == 1
