"""The database enforces one answer per annotator and query for answers given with a client key.

Every answer from the web app carries a client key, so with several server processes a second answer
of the same person to the same query is refused by the database itself, not by a process lock.
Simulated teachers (no client key) are not constrained.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_feedback_one_answer", "feedback", ["query_id", "annotator_id"], unique=True,
                    sqlite_where=sa.text("client_key IS NOT NULL"), postgresql_where=sa.text("client_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("uq_feedback_one_answer", table_name="feedback")
