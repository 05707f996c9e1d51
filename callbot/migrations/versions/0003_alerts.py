"""alerts (the outbox of escalations and their follow-up), committee_settings (webhook, duty
phone), attempts.transfer_* (转人工)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:56:38.122420
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('committee_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('full_phone', sa.Boolean(), nullable=False),
    sa.Column('duty_number', sa.String(length=200), nullable=True),
    sa.Column('transfer_timeout_s', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=True),
    sa.Column('committee', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('said', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('handled_by', sa.String(length=64), nullable=True),
    sa.Column('handled_at', sa.DateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('delivery', sa.String(length=16), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('next_try_at', sa.DateTime(), nullable=True),
    sa.Column('sending_since', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('destination', sa.String(length=300), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_campaign_contact', ['campaign_id', 'contact_id'], unique=False)
        batch_op.create_index('ix_alerts_delivery_next', ['delivery', 'next_try_at'], unique=False)
        batch_op.create_index('ix_alerts_state_urgent', ['state', 'urgent'], unique=False)

    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_to', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('transfer_answered', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('transfer_talk_s', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('transfer_talk_s')
        batch_op.drop_column('transfer_answered')
        batch_op.drop_column('transfer_to')

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_state_urgent')
        batch_op.drop_index('ix_alerts_delivery_next')
        batch_op.drop_index('ix_alerts_campaign_contact')

    op.drop_table('alerts')
    op.drop_table('committee_settings')
