"""line_workers.line_down_since / line_down_reason (the worker's SIP peer does not answer),
campaigns.pause_reason (paused by the dispatcher while every line is down; resumed by it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('line_workers', sa.Column('line_down_since', sa.DateTime(), nullable=True))
    op.add_column('line_workers', sa.Column('line_down_reason', sa.Text(), nullable=True))
    op.add_column('campaigns', sa.Column('pause_reason', sa.Text(), nullable=True))
    op.add_column('campaigns', sa.Column('paused_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_column('paused_at')
        batch.drop_column('pause_reason')
    with op.batch_alter_table('line_workers') as batch:
        batch.drop_column('line_down_reason')
        batch.drop_column('line_down_since')
