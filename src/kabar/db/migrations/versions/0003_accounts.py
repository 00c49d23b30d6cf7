"""Accounts: verified emails, single-use account tokens (password reset, email verification), the mail outbox.

Users that exist before this revision were made by an operator (``kabar user create``, the demo
seed) or linked by the identity provider under the old rules; they are marked verified, as
operator-made users are from now on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# One DDL for both backends; only the timestamp type differs.
_TABLES = [
    """CREATE TABLE account_tokens (
    id VARCHAR(36) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    purpose VARCHAR(20) NOT NULL,
    email VARCHAR(320) NOT NULL,
    secret_hash VARCHAR(64) NOT NULL,
    expires_at {ts} NOT NULL,
    used_at {ts},
    created_at {ts} NOT NULL,
    CONSTRAINT pk_account_tokens PRIMARY KEY (id),
    CONSTRAINT ck_account_tokens_purpose CHECK (purpose IN ('password_reset', 'verify_email')),
    CONSTRAINT fk_account_tokens_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
)""",
    "CREATE INDEX ix_account_tokens_user_id ON account_tokens (user_id, purpose)",
    """CREATE TABLE mail_outbox (
    id VARCHAR(36) NOT NULL,
    to_addr VARCHAR(320) NOT NULL,
    subject VARCHAR(300) NOT NULL,
    body TEXT,
    kind VARCHAR(40) NOT NULL,
    status VARCHAR(10) DEFAULT 'outbox' NOT NULL,
    last_error TEXT,
    created_at {ts} NOT NULL,
    sent_at {ts},
    CONSTRAINT pk_mail_outbox PRIMARY KEY (id),
    CONSTRAINT ck_mail_outbox_status CHECK (status IN ('outbox', 'queued', 'sent', 'failed'))
)""",
    "CREATE INDEX ix_mail_outbox_created_at ON mail_outbox (created_at)",
    "ALTER TABLE users ADD COLUMN email_verified_at {ts}",
    "UPDATE users SET email_verified_at = created_at",
]

_DOWNGRADE = [
    "ALTER TABLE users DROP COLUMN email_verified_at",
    "DROP TABLE mail_outbox",
    "DROP TABLE account_tokens",
]


def _timestamp(dialect: str) -> str:
    return "DATETIME" if dialect == "sqlite" else "TIMESTAMP WITH TIME ZONE"


def upgrade() -> None:
    bind = op.get_bind()
    for statement in _TABLES:
        bind.exec_driver_sql(statement.format(ts=_timestamp(bind.dialect.name)))


def downgrade() -> None:
    bind = op.get_bind()
    for statement in _DOWNGRADE:
        bind.exec_driver_sql(statement)
