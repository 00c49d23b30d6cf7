"""One visibility rule: uploads belong to their conversation once sent.

``uploads.conversation_id`` and ``uploads.contact_id`` record the conversation a file was sent in
(or received in, for inbound media); a member may then download it exactly when they may see
that conversation, and an unsent upload only its uploader (``created_by``) and those who see
everything. Both cascade with their conversation and contact, and a contact merge moves them like
every other reference. Existing uploads are attached to the conversation of the first message
whose media names them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("conversation_id", "fk_uploads_conversation_id_conversations", "conversations"),
    ("contact_id", "fk_uploads_contact_id_contacts", "contacts"),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        # SQLite names a foreign key only in a table constraint, which ALTER TABLE cannot add:
        # rebuild the table (nothing references uploads, and it has no triggers).
        with op.batch_alter_table("uploads", recreate="always") as batch:
            for column, constraint, table in _COLUMNS:
                batch.add_column(sa.Column(column, sa.String(36)))
                batch.create_foreign_key(constraint, table, [column], ["id"], ondelete="CASCADE")
    else:
        for column, constraint, table in _COLUMNS:
            op.add_column("uploads", sa.Column(column, sa.String(36)))
            op.create_foreign_key(constraint, "uploads", table, [column], ["id"], ondelete="CASCADE")
    op.execute("CREATE INDEX ix_uploads_ws_conversation ON uploads (workspace_id, conversation_id)")
    # Files already sent or received: the earliest message that carries them (one pass over messages).
    media_id = "json_extract(media, '$.id')" if op.get_bind().dialect.name == "sqlite" else "media ->> 'id'"
    op.execute(
        "UPDATE uploads SET conversation_id = first.conversation_id, contact_id = first.contact_id FROM ("
        f" SELECT workspace_id, {media_id} AS upload_id, conversation_id, contact_id,"
        f" row_number() OVER (PARTITION BY workspace_id, {media_id} ORDER BY created_at, id) AS n"
        f" FROM messages WHERE {media_id} IS NOT NULL) AS first"
        " WHERE first.n = 1 AND first.workspace_id = uploads.workspace_id AND first.upload_id = uploads.id"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_uploads_ws_conversation")
    if _sqlite():
        with op.batch_alter_table("uploads", recreate="always") as batch:
            for column, constraint, _ in reversed(_COLUMNS):
                batch.drop_constraint(constraint, type_="foreignkey")
                batch.drop_column(column)
    else:
        for column, constraint, _ in reversed(_COLUMNS):
            op.drop_constraint(constraint, "uploads", type_="foreignkey")
            op.drop_column("uploads", column)
