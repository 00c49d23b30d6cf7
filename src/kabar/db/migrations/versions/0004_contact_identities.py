"""Contacts known by a WhatsApp business-scoped user id and username as well as (or instead of) a phone.

``contacts.whatsapp_user_id`` (Meta's BSUID) and ``contacts.username`` are new, each unique per
workspace when set (partial unique indexes); ``phone_e164``/``phone_raw`` become nullable, since a
customer who adopted a username may reach the business without a phone number.

SQLite cannot drop a NOT NULL constraint with ALTER TABLE, and rebuilding ``contacts`` would change
its rowids (the FTS5 search table is keyed by them), drop its triggers (0001's search triggers,
0002's lead-status copy) and, with foreign keys on, cascade the implicit delete of DROP TABLE to
conversations and messages. SQLite documents a safe way for exactly this change (removing NOT
NULL constraints, https://www.sqlite.org/lang_altertable.html#otheralter): rewrite the table's
CREATE statement in ``sqlite_schema`` and bump ``schema_version``; rows, rowids, indexes and
triggers stay as they are.

BSUIDs that ingest kept in ``attributes.whatsapp_user_id`` move to the column (one contact per id
and workspace: the oldest keeps it; the others keep the attribute).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from kabar.db.types import JSONType

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NULLABLE = (("phone_e164 VARCHAR(20) NOT NULL", "phone_e164 VARCHAR(20)"), ("phone_raw VARCHAR(64) NOT NULL", "phone_raw VARCHAR(64)"))

INDEXES = [
    "CREATE UNIQUE INDEX uq_contacts_ws_whatsapp_user_id ON contacts (workspace_id, whatsapp_user_id) WHERE whatsapp_user_id IS NOT NULL",
    "CREATE UNIQUE INDEX uq_contacts_ws_username ON contacts (workspace_id, username) WHERE username IS NOT NULL",
]


def _rewrite_sqlite_table(bind: Any, replacements: tuple[tuple[str, str], ...]) -> None:
    """Edit ``contacts``' CREATE statement in place (see the module docstring)."""
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'contacts'").scalar_one()
    for old, new in replacements:
        assert old in sql, old
        sql = sql.replace(old, new)
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'contacts'", (sql,))
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    assert problems == ["ok"], problems


_SET_USER_ID = sa.text("UPDATE contacts SET whatsapp_user_id = :user_id, attributes = :attributes WHERE id = :id").bindparams(
    sa.bindparam("attributes", type_=JSONType)
)


def _move_attribute(bind: Any) -> None:
    sqlite = bind.dialect.name == "sqlite"
    where = "json_type(attributes, '$.whatsapp_user_id') = 'text'" if sqlite else "jsonb_typeof(attributes -> 'whatsapp_user_id') = 'string'"
    rows = bind.exec_driver_sql(f"SELECT id, workspace_id, attributes FROM contacts WHERE {where} ORDER BY created_at, id").all()
    taken: set[tuple[str, str]] = set()
    for contact_id, workspace_id, attributes in rows:
        attributes = json.loads(attributes) if isinstance(attributes, str) else dict(attributes)
        user_id = str(attributes.pop("whatsapp_user_id"))[:256]
        if not user_id or (workspace_id, user_id) in taken:
            continue
        taken.add((workspace_id, user_id))
        bind.execute(_SET_USER_ID, {"user_id": user_id, "attributes": attributes, "id": contact_id})


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("ALTER TABLE contacts ADD COLUMN whatsapp_user_id VARCHAR(256)")
    bind.exec_driver_sql("ALTER TABLE contacts ADD COLUMN username VARCHAR(100)")
    if bind.dialect.name == "sqlite":
        _rewrite_sqlite_table(bind, _NULLABLE)
    else:
        bind.exec_driver_sql("ALTER TABLE contacts ALTER COLUMN phone_e164 DROP NOT NULL, ALTER COLUMN phone_raw DROP NOT NULL")
    for statement in INDEXES:
        bind.exec_driver_sql(statement)
    _move_attribute(bind)


def downgrade() -> None:
    """Contacts known only by their WhatsApp user id cannot exist without the columns: they are
    deleted (with their conversations, through the foreign keys); the ids of the others go back
    to ``attributes``."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    bind.exec_driver_sql("DELETE FROM contacts WHERE phone_e164 IS NULL")
    if sqlite:
        bind.exec_driver_sql(
            "UPDATE contacts SET attributes = json_set(attributes, '$.whatsapp_user_id', whatsapp_user_id) WHERE whatsapp_user_id IS NOT NULL"
        )
    else:
        bind.exec_driver_sql(
            "UPDATE contacts SET attributes = attributes || jsonb_build_object('whatsapp_user_id', whatsapp_user_id) WHERE whatsapp_user_id IS NOT NULL"
        )
    bind.exec_driver_sql("DROP INDEX uq_contacts_ws_username")
    bind.exec_driver_sql("DROP INDEX uq_contacts_ws_whatsapp_user_id")
    if sqlite:
        _rewrite_sqlite_table(bind, tuple((new, old) for old, new in _NULLABLE))
        bind.exec_driver_sql("ALTER TABLE contacts DROP COLUMN username")
        bind.exec_driver_sql("ALTER TABLE contacts DROP COLUMN whatsapp_user_id")
    else:
        bind.exec_driver_sql("ALTER TABLE contacts ALTER COLUMN phone_e164 SET NOT NULL, ALTER COLUMN phone_raw SET NOT NULL")
        bind.exec_driver_sql("ALTER TABLE contacts DROP COLUMN username, DROP COLUMN whatsapp_user_id")
