"""campaigns.tts_personal: online (default, as before) or offline — a contact's name, address
and other fields in a prompt are synthesised on this box by espeak-ng, only the rest goes to the
online engine (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('tts_personal', sa.String(length=16), nullable=False,
                                         server_default='online'))


def downgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_column('tts_personal')
