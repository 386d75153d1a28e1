"""The database refuses a forked audit chain: no two entries may follow the same predecessor.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as b:
        b.create_unique_constraint("uq_audit_prev_hash", ["prev_hash"])


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as b:
        b.drop_constraint("uq_audit_prev_hash", type_="unique")
