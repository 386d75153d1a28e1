"""Baseline: the schema of the release before migrations (stores made by it are stamped at this revision).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('annotators',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('withdrawn_at', sa.Float(), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_log',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index(op.f('ix_audit_log_action'), 'audit_log', ['action'], unique=False)
    op.create_table('runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('consents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('annotator_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('agreed', sa.Boolean(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_consents_annotator_id'), 'consents', ['annotator_id'], unique=False)
    op.create_table('models',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('flagged', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_models_run_id'), 'models', ['run_id'], unique=False)
    op.create_table('queries',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('assigned_to', sa.String(length=64), nullable=True),
    sa.Column('gold_value', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['assigned_to'], ['annotators.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_queries_assigned_to'), 'queries', ['assigned_to'], unique=False)
    op.create_index(op.f('ix_queries_run_id'), 'queries', ['run_id'], unique=False)
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('query_id', sa.String(length=64), nullable=False),
    sa.Column('annotator_id', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('asked_at', sa.Float(), nullable=False),
    sa.Column('answered_at', sa.Float(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('client_key', sa.String(length=128), nullable=True),
    sa.Column('withdrawn', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotators.id'], ),
    sa.ForeignKeyConstraint(['query_id'], ['queries.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('annotator_id', 'client_key', name='uq_feedback_client_key')
    )
    op.create_index(op.f('ix_feedback_annotator_id'), 'feedback', ['annotator_id'], unique=False)
    op.create_index('ix_feedback_query_annotator', 'feedback', ['query_id', 'annotator_id'], unique=False)
    op.create_index(op.f('ix_feedback_query_id'), 'feedback', ['query_id'], unique=False)
    op.create_index(op.f('ix_feedback_withdrawn'), 'feedback', ['withdrawn'], unique=False)
    op.create_table('lineage',
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('feedback_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], ),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('model_id', 'feedback_id')
    )
    op.create_index(op.f('ix_lineage_feedback_id'), 'lineage', ['feedback_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_lineage_feedback_id'), table_name='lineage')
    op.drop_table('lineage')
    op.drop_index(op.f('ix_feedback_withdrawn'), table_name='feedback')
    op.drop_index(op.f('ix_feedback_query_id'), table_name='feedback')
    op.drop_index('ix_feedback_query_annotator', table_name='feedback')
    op.drop_index(op.f('ix_feedback_annotator_id'), table_name='feedback')
    op.drop_table('feedback')
    op.drop_index(op.f('ix_queries_run_id'), table_name='queries')
    op.drop_index(op.f('ix_queries_assigned_to'), table_name='queries')
    op.drop_table('queries')
    op.drop_index(op.f('ix_models_run_id'), table_name='models')
    op.drop_table('models')
    op.drop_index(op.f('ix_consents_annotator_id'), table_name='consents')
    op.drop_table('consents')
    op.drop_table('runs')
    op.drop_index(op.f('ix_audit_log_action'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('audit_head')
    op.drop_table('annotators')
