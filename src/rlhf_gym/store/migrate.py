"""Versioned schema migrations (Alembic) of the feedback store, run by ``rlhf-gym db upgrade``.

Opening a store checks its revision (:func:`ensure`): a new, empty database gets the current schema
and is stamped at the newest revision; a store made by the release before migrations (tables but no
``alembic_version``) counts as the baseline revision ``0001``; a store behind the newest revision is
refused with a message naming the command that upgrades it, so no code ever runs on a schema it
does not know. ``upgrade`` applies the missing migrations in one transaction per step, data intact.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

BASELINE = "0001"
_DIR = Path(__file__).parent / "migrations"


class SchemaOutOfDate(ValueError):
    """The store's schema is older than this release's; ``rlhf-gym db upgrade`` brings it up to date."""


def _config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@functools.lru_cache(maxsize=1)
def head() -> str:
    """The newest revision this release knows (read once per process)."""
    from alembic.script import ScriptDirectory

    h = ScriptDirectory.from_config(_config()).get_current_head()
    assert h is not None
    return h


def current(engine: Engine) -> str | None:
    """The store's revision: None for an empty database, ``0001`` for a store from before migrations."""
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return BASELINE if "feedback" in tables else None


def upgrade(engine: Engine, to: str = "head") -> tuple[str | None, str]:
    """Bring the store to revision ``to``; returns (revision before, revision after)."""
    from alembic import command

    before = current(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727273)"))
        rev = _current(conn)
        cfg = _config(conn)
        if rev is None:
            _create_new(conn)
        else:
            if "alembic_version" not in set(inspect(conn).get_table_names()):
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, to)
    return before, current(engine) or ""


def _create_new(conn: Connection) -> None:
    from alembic import command

    from rlhf_gym.store.schema import Base

    Base.metadata.create_all(conn)
    command.stamp(_config(conn), "head")


def ensure(engine: Engine, url_for_message: str) -> None:
    """Create a new store's schema, or check that an existing one is at the newest revision."""
    want = head()
    for attempt in range(3):
        try:
            rev = current(engine)
            if rev == want:
                return
            if rev is None:
                with engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(727273)"))
                    if _current(conn) is None:  # nobody created it while we waited for the lock
                        _create_new(conn)
                continue
            break
        except Exception:  # another process created the tables between our look and our create
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    rev = current(engine)
    if rev != want:
        raise SchemaOutOfDate(f"the store {url_for_message} has schema revision {rev}, this release needs {want}; "
                              f"upgrade it (data is kept) with: rlhf-gym db upgrade --db {url_for_message}")
