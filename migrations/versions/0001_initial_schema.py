"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 12:52:41.583918
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('completed_jobs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('script_path', sa.Text(), nullable=True),
    sa.Column('script_hash', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=False),
    sa.Column('args', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('tag', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('parent_job', sa.UUID(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('completed_by_ws', 'completed_jobs', ['workspace_id', sa.literal_column('completed_at DESC')], unique=False)
    op.create_table('job_logs',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.UUID(), nullable=False),
    sa.Column('chunk', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('job_logs_by_job', 'job_logs', ['job_id', 'id'], unique=False)
    op.create_table('queue',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('script_path', sa.Text(), nullable=True),
    sa.Column('script_hash', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=False),
    sa.Column('args', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('tag', sa.Text(), server_default='default', nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.Text(), server_default='admin', nullable=False),
    sa.Column('parent_job', sa.UUID(), nullable=True),
    sa.Column('running', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.Text(), nullable=True),
    sa.Column('last_ping', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fence', sa.Integer(), server_default='0', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_retries', sa.Integer(), server_default='0', nullable=False),
    sa.Column('retry_delay_ms', sa.Integer(), server_default='1000', nullable=False),
    sa.Column('timeout_s', sa.Integer(), nullable=True),
    sa.Column('canceled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('canceled_reason', sa.Text(), nullable=True),
    sa.Column('notify_done', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('queue_ready', 'queue', ['tag', sa.literal_column('priority DESC'), 'scheduled_for'], unique=False, postgresql_where=sa.text('NOT running'))
    op.create_index('queue_running', 'queue', ['worker'], unique=False, postgresql_where=sa.text('running'))
    op.create_table('workspaces',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('scripts',
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('parent_hash', sa.Text(), nullable=True),
    sa.Column('language', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), server_default='', nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('schema', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('lock', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('archived', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', 'hash')
    )
    op.create_index('scripts_by_path', 'scripts', ['workspace_id', 'path', sa.literal_column('created_at DESC')], unique=False)
    op.create_table('tokens',
    sa.Column('hash', sa.Text(), nullable=False),
    sa.Column('prefix', sa.Text(), nullable=False),
    sa.Column('workspace_id', sa.Text(), nullable=False),
    sa.Column('label', sa.Text(), server_default='', nullable=False),
    sa.Column('owner', sa.Text(), server_default='admin', nullable=False),
    sa.Column('scopes', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('script_path', sa.Text(), nullable=True),
    sa.Column('job_id', sa.UUID(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hash')
    )
    op.create_index('tokens_job_id', 'tokens', ['job_id'], unique=False, postgresql_where=sa.text('job_id IS NOT NULL'))
    # A fresh instance has one workspace, `main`.
    op.execute("INSERT INTO workspaces (id, name) VALUES ('main', 'main')")


def downgrade() -> None:
    op.drop_index('tokens_job_id', table_name='tokens', postgresql_where=sa.text('job_id IS NOT NULL'))
    op.drop_table('tokens')
    op.drop_index('scripts_by_path', table_name='scripts')
    op.drop_table('scripts')
    op.drop_table('workspaces')
    op.drop_index('queue_running', table_name='queue', postgresql_where=sa.text('running'))
    op.drop_index('queue_ready', table_name='queue', postgresql_where=sa.text('NOT running'))
    op.drop_table('queue')
    op.drop_index('job_logs_by_job', table_name='job_logs')
    op.drop_table('job_logs')
    op.drop_index('completed_by_ws', table_name='completed_jobs')
    op.drop_table('completed_jobs')
