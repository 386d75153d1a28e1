"""``rlhf-gym db``: the store's schema revision and its upgrade (versioned Alembic migrations)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("db", help="the feedback store's schema: show its revision, upgrade it")
    dsub = d.add_subparsers(dest="db_command", required=True)
    for name, func, help_ in (("upgrade", cmd_upgrade, "apply the missing migrations (data is kept)"),
                              ("current", cmd_current, "print the store's revision and this release's")):
        p = dsub.add_parser(name, help=help_)
        p.add_argument("--db", default="feedback.db",
                       help="store: SQLite file, run folder (uses its feedback.db) or postgresql:// URL")
        p.set_defaults(func=func)


def _open(db: str) -> FeedbackStore:
    from rlhf_gym.governance.cli import resolve_db
    from rlhf_gym.store import FeedbackStore

    return FeedbackStore(resolve_db(db, must_exist=True), check_schema=False)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from rlhf_gym.store import migrate

    store = _open(args.db)
    before, after = migrate.upgrade(store.engine)
    if before == after:
        print(f"{store.display_url}: already at revision {after}")
    else:
        print(f"{store.display_url}: upgraded from revision {before or '(empty)'} to {after}")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    from rlhf_gym.store import migrate

    store = _open(args.db)
    rev = migrate.current(store.engine)
    want = migrate.head()
    print(f"{store.display_url}: revision {rev or '(empty)'}; this release needs {want}"
          + ("" if rev == want else " (run: rlhf-gym db upgrade)"))
    return 0
