"""triggers and event ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:01:12.934034
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('trigger_id', sa.UUID(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('script_path', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('dedup_key', sa.Text(), nullable=True),
    sa.Column('job_id', sa.UUID(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('replay_of', sa.UUID(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('events_by_job', 'events', ['job_id'], unique=False, postgresql_where=sa.text('job_id IS NOT NULL'))
    op.create_index('events_by_received', 'events', ['received_at'], unique=False)
    op.create_index('events_by_script', 'events', ['workspace_id', 'script_path', sa.literal_column('received_at DESC')], unique=False)
    op.create_index('events_by_trigger', 'events', ['trigger_id', sa.literal_column('received_at DESC')], unique=False)
    op.create_index('events_dedup', 'events', ['workspace_id', 'source', 'dedup_key'], unique=True, postgresql_where=sa.text('dedup_key IS NOT NULL'))
    op.create_table('triggers',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('script_path', sa.Text(), nullable=False),
    sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('mode', sa.Text(), server_default='enabled', nullable=False),
    sa.Column('error_handler_path', sa.Text(), nullable=True),
    sa.Column('error_handler_args', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('summary', sa.Text(), server_default='', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('triggers_by_path', 'triggers', ['workspace_id', 'kind', 'path'], unique=True)


def downgrade() -> None:
    op.drop_index('triggers_by_path', table_name='triggers')
    op.drop_table('triggers')
    op.drop_index('events_dedup', table_name='events', postgresql_where=sa.text('dedup_key IS NOT NULL'))
    op.drop_index('events_by_trigger', table_name='events')
    op.drop_index('events_by_script', table_name='events')
    op.drop_index('events_by_received', table_name='events')
    op.drop_index('events_by_job', table_name='events', postgresql_where=sa.text('job_id IS NOT NULL'))
    op.drop_table('events')
