"""recordings: reply audio and whole-call recordings (audio_blobs: the database store),
answers.recording_id (the reply an answer came from), campaigns.record_calls (off)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:49:05.683852
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audio_blobs',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('recordings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=100), nullable=False),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('pinyin', sa.Text(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('intent', sa.String(length=32), nullable=True),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('start_s', sa.Float(), nullable=False),
    sa.Column('end_s', sa.Float(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('mime', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('store', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_attempt_id'), ['attempt_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_phone'), ['phone'], unique=False)

    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_answers_recording_id'), ['recording_id'], unique=False)
        batch_op.create_foreign_key('fk_answers_recording_id', 'recordings', ['recording_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_calls', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('record_calls')

    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_constraint('fk_answers_recording_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_answers_recording_id'))
        batch_op.drop_column('recording_id')

    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_phone'))
        batch_op.drop_index(batch_op.f('ix_recordings_created_at'))
        batch_op.drop_index(batch_op.f('ix_recordings_contact_id'))
        batch_op.drop_index(batch_op.f('ix_recordings_campaign_id'))
        batch_op.drop_index(batch_op.f('ix_recordings_attempt_id'))

    op.drop_table('recordings')
    op.drop_table('audio_blobs')
