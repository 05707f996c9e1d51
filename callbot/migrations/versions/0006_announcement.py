"""attempts.announcement: what a carrier announcement or a voice assistant said on the call
(issue 11), shown beside the outcome it decided

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('attempts', sa.Column('announcement', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts') as batch:
        batch.drop_column('announcement')
