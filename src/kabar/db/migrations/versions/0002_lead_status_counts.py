"""Conversations carry their contact's lead status and tags; the inbox counts are kept per lead
status, and per tag.

``conversations.lead_status`` and ``conversations.tags`` are copies of the contact's, kept in
step by triggers (whoever writes: a contact's lead status or tags changing, a conversation
created or moved to another contact by a merge). ``conversation_counts`` gains ``lead_status``
in its key, and ``conversation_tag_counts`` holds the same buckets per tag, so the inbox's total
and unread counts under a lead-status or single-tag filter read a few bucket rows instead of
counting the conversations–contacts join. (Several tags match conversations with any of them,
which per-tag counts cannot add up; those are counted from conversations.tags.)

SQLite cannot set NEW in a trigger, so a new conversation first counts under the inserted value
and an AFTER trigger then corrects it (an UPDATE, which the update trigger counts). Triggers on
one table fire in an order SQLite does not document, so the bucket changes must commute: a
decrement is an upsert (a bucket may go below zero for a moment), guarded by the workspace still
existing so that a workspace's deletion, which removes its buckets, never recreates one.
PostgreSQL sets NEW.lead_status and NEW.tags in a BEFORE trigger and keeps 0001's ordered
bucket updates. The tag buckets of a change are applied as one upsert of the net differences
(old tags -1, new tags +1), in key order on PostgreSQL so that concurrent changes lock them in
the same order, guarded the same way.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import importlib

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_0001 = importlib.import_module("kabar.db.migrations.versions.0001_baseline")


def _baseline(statements: list[str], prefix: str) -> list[str]:
    """0001's statements that start with ``prefix`` (what a downgrade restores), in its order."""
    found = [statement for statement in statements if statement.startswith(prefix)]
    assert found, prefix
    return found


# SQLite: a conversation whose copies differ from its contact's values, and the statement copying
# them (a missing contact copies nothing: the foreign key fails that insert).
_STALE_COPY = "EXISTS (SELECT 1 FROM contacts WHERE contacts.id = new.contact_id AND (contacts.lead_status IS NOT new.lead_status OR contacts.tags IS NOT new.tags))"
_COPY_CONTACT = "UPDATE conversations SET (lead_status, tags) = (SELECT lead_status, tags FROM contacts WHERE contacts.id = new.contact_id) WHERE id = new.id;"
# A conversation's buckets in conversation_tag_counts change with these.
_TAG_BUCKETS_CHANGED = (
    "old.status IS NOT new.status OR old.assignee_id IS NOT new.assignee_id OR (old.unread_count > 0) IS NOT (new.unread_count > 0)"
    " OR old.lead_status IS NOT new.lead_status OR old.tags IS NOT new.tags"
)


def _tag_rows(row: str, delta: str, elements: str) -> str:
    """One row per distinct tag of ``row`` (new/old): its bucket in conversation_tag_counts and
    ``delta``. ``elements`` reads a JSON array's elements as a ``value`` column (``_SQLITE_TAGS``,
    ``_POSTGRESQL_TAGS``)."""
    return (
        f"SELECT {row}.workspace_id AS w, tags.value AS tag, {row}.status AS s, coalesce({row}.assignee_id, '') AS a,"
        f" {row}.unread_count > 0 AS u, {row}.lead_status AS l, {delta} AS d"
        f" FROM (SELECT DISTINCT value FROM {elements.format(row=row)}) AS tags"
    )


_SQLITE_TAGS = "json_each({row}.tags)"
_POSTGRESQL_TAGS = "jsonb_array_elements_text({row}.tags) AS element(value)"


def _tag_counts_apply(rows: str) -> str:
    """Add the net change of ``rows`` to conversation_tag_counts, in key order, unless the
    workspace is being deleted (its buckets go with it)."""
    return (
        "INSERT INTO conversation_tag_counts (workspace_id, tag, status, assignee_key, unread, lead_status, n)"
        f" SELECT w, tag, s, a, u, l, sum(d) FROM ({rows}) AS change WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = change.w)"
        " GROUP BY w, tag, s, a, u, l HAVING sum(d) <> 0 ORDER BY w, tag, s, a, u, l"
        " ON CONFLICT (workspace_id, tag, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_tag_counts.n + excluded.n"
    )


_TAG_COUNTS_TABLE = """CREATE TABLE conversation_tag_counts (
    workspace_id VARCHAR(36) NOT NULL,
    tag TEXT NOT NULL,
    status VARCHAR(10) NOT NULL,
    assignee_key VARCHAR(36) NOT NULL,
    unread BOOLEAN NOT NULL,
    lead_status VARCHAR(20) NOT NULL,
    n INTEGER NOT NULL,
    CONSTRAINT pk_conversation_tag_counts PRIMARY KEY (workspace_id, tag, status, assignee_key, unread, lead_status),
    CONSTRAINT fk_conversation_tag_counts_workspace_id_workspaces FOREIGN KEY(workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE
)"""
# Both backends: the tag buckets of the existing conversations.
_TAG_COUNTS_BACKFILL = """INSERT INTO conversation_tag_counts (workspace_id, tag, status, assignee_key, unread, lead_status, n)
SELECT conversations.workspace_id, tags.value, status, coalesce(assignee_id, ''), unread_count > 0, lead_status, count(DISTINCT conversations.id)
FROM conversations, {elements}
GROUP BY conversations.workspace_id, tags.value, status, coalesce(assignee_id, ''), unread_count > 0, lead_status"""

SQLITE_UPGRADE = [
    "ALTER TABLE conversations ADD COLUMN lead_status VARCHAR(20) DEFAULT 'prospect' NOT NULL",
    "ALTER TABLE conversations ADD COLUMN tags JSON DEFAULT '[]' NOT NULL",
    "UPDATE conversations SET (lead_status, tags) = (SELECT lead_status, tags FROM contacts WHERE contacts.id = conversations.contact_id)",
    "DROP TRIGGER conversation_counts_insert",
    "DROP TRIGGER conversation_counts_delete",
    "DROP TRIGGER conversation_counts_update",
    "DROP TABLE conversation_counts",
    """CREATE TABLE conversation_counts (
    workspace_id VARCHAR(36) NOT NULL,
    status VARCHAR(10) NOT NULL,
    assignee_key VARCHAR(36) NOT NULL,
    unread BOOLEAN NOT NULL,
    lead_status VARCHAR(20) NOT NULL,
    n INTEGER NOT NULL,
    CONSTRAINT pk_conversation_counts PRIMARY KEY (workspace_id, status, assignee_key, unread, lead_status),
    CONSTRAINT fk_conversation_counts_workspace_id_workspaces FOREIGN KEY(workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE
)
 WITHOUT ROWID""",
    """INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n)
SELECT workspace_id, status, coalesce(assignee_id, ''), unread_count > 0, lead_status, count(*) FROM conversations
GROUP BY workspace_id, status, coalesce(assignee_id, ''), unread_count > 0, lead_status""",
    """CREATE TRIGGER conversation_counts_insert AFTER INSERT ON conversations BEGIN INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n) VALUES (new.workspace_id, new.status, coalesce(new.assignee_id, ''), new.unread_count > 0, new.lead_status, 1) ON CONFLICT (workspace_id, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_counts.n + 1; END""",
    """CREATE TRIGGER conversation_counts_delete AFTER DELETE ON conversations BEGIN INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n) SELECT old.workspace_id, old.status, coalesce(old.assignee_id, ''), old.unread_count > 0, old.lead_status, -1 WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = old.workspace_id) ON CONFLICT (workspace_id, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_counts.n - 1; END""",
    """CREATE TRIGGER conversation_counts_update AFTER UPDATE OF status, assignee_id, unread_count, lead_status ON conversations WHEN old.status IS NOT new.status OR old.assignee_id IS NOT new.assignee_id OR (old.unread_count > 0) IS NOT (new.unread_count > 0) OR old.lead_status IS NOT new.lead_status BEGIN INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n) SELECT old.workspace_id, old.status, coalesce(old.assignee_id, ''), old.unread_count > 0, old.lead_status, -1 WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = old.workspace_id) ON CONFLICT (workspace_id, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_counts.n - 1; INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n) VALUES (new.workspace_id, new.status, coalesce(new.assignee_id, ''), new.unread_count > 0, new.lead_status, 1) ON CONFLICT (workspace_id, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_counts.n + 1; END""",
    f"""CREATE TRIGGER conversations_copy_contact_insert AFTER INSERT ON conversations WHEN {_STALE_COPY} BEGIN {_COPY_CONTACT} END""",
    f"""CREATE TRIGGER conversations_copy_contact_move AFTER UPDATE OF contact_id ON conversations WHEN {_STALE_COPY} BEGIN {_COPY_CONTACT} END""",
    """CREATE TRIGGER contacts_copy_to_conversation AFTER UPDATE OF lead_status, tags ON contacts WHEN old.lead_status IS NOT new.lead_status OR old.tags IS NOT new.tags BEGIN UPDATE conversations SET lead_status = new.lead_status, tags = new.tags WHERE workspace_id = new.workspace_id AND contact_id = new.id; END""",
    _TAG_COUNTS_TABLE + "\n WITHOUT ROWID",
    _TAG_COUNTS_BACKFILL.format(elements="json_each(conversations.tags) AS tags"),
    f"""CREATE TRIGGER conversation_tag_counts_insert AFTER INSERT ON conversations BEGIN {_tag_counts_apply(_tag_rows("new", "1", _SQLITE_TAGS))}; END""",
    f"""CREATE TRIGGER conversation_tag_counts_delete AFTER DELETE ON conversations BEGIN {_tag_counts_apply(_tag_rows("old", "-1", _SQLITE_TAGS))}; END""",
    f"""CREATE TRIGGER conversation_tag_counts_update AFTER UPDATE OF status, assignee_id, unread_count, lead_status, tags ON conversations WHEN {_TAG_BUCKETS_CHANGED} BEGIN {_tag_counts_apply(_tag_rows("old", "-1", _SQLITE_TAGS) + " UNION ALL " + _tag_rows("new", "1", _SQLITE_TAGS))}; END""",
]

# 0001's table and triggers (its own DDL), refilled from the conversations.
_REFILL_0001 = """INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, n)
SELECT workspace_id, status, coalesce(assignee_id, ''), unread_count > 0, count(*) FROM conversations
GROUP BY workspace_id, status, coalesce(assignee_id, ''), unread_count > 0"""
SQLITE_DOWNGRADE = [
    "DROP TRIGGER conversation_tag_counts_insert",
    "DROP TRIGGER conversation_tag_counts_delete",
    "DROP TRIGGER conversation_tag_counts_update",
    "DROP TABLE conversation_tag_counts",
    "DROP TRIGGER contacts_copy_to_conversation",
    "DROP TRIGGER conversations_copy_contact_move",
    "DROP TRIGGER conversations_copy_contact_insert",
    "DROP TRIGGER conversation_counts_insert",
    "DROP TRIGGER conversation_counts_delete",
    "DROP TRIGGER conversation_counts_update",
    "DROP TABLE conversation_counts",
    *_baseline(_0001.SQLITE, "CREATE TABLE conversation_counts "),
    _REFILL_0001,
    *_baseline(_0001.SQLITE, "CREATE TRIGGER conversation_counts_"),
    "ALTER TABLE conversations DROP COLUMN tags",
    "ALTER TABLE conversations DROP COLUMN lead_status",
]

# PostgreSQL: the bucket of a row, as the function below writes it (OLD or NEW).
_PG_KEY = "{r}.workspace_id, {r}.status, coalesce({r}.assignee_id, ''), {r}.unread_count > 0, {r}.lead_status"
_PG_INC = (
    "INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n) VALUES ("
    + _PG_KEY.format(r="NEW")
    + ", 1) ON CONFLICT (workspace_id, status, assignee_key, unread, lead_status) DO UPDATE SET n = conversation_counts.n + 1;"
)
_PG_DEC = (
    "UPDATE conversation_counts SET n = n - 1 WHERE workspace_id = OLD.workspace_id AND status = OLD.status"
    " AND assignee_key = coalesce(OLD.assignee_id, '') AND unread = (OLD.unread_count > 0) AND lead_status = OLD.lead_status;"
)

POSTGRESQL_UPGRADE = [
    "ALTER TABLE conversations ADD COLUMN lead_status VARCHAR(20) DEFAULT 'prospect' NOT NULL",
    "ALTER TABLE conversations ADD COLUMN tags JSONB DEFAULT '[]' NOT NULL",
    "UPDATE conversations SET lead_status = contacts.lead_status, tags = contacts.tags FROM contacts WHERE contacts.id = conversations.contact_id",
    "DELETE FROM conversation_counts",
    "ALTER TABLE conversation_counts ADD COLUMN lead_status VARCHAR(20) NOT NULL",
    "ALTER TABLE conversation_counts DROP CONSTRAINT pk_conversation_counts",
    "ALTER TABLE conversation_counts ADD CONSTRAINT pk_conversation_counts PRIMARY KEY (workspace_id, status, assignee_key, unread, lead_status)",
    """INSERT INTO conversation_counts (workspace_id, status, assignee_key, unread, lead_status, n)
SELECT workspace_id, status, coalesce(assignee_id, ''), unread_count > 0, lead_status, count(*) FROM conversations
GROUP BY workspace_id, status, coalesce(assignee_id, ''), unread_count > 0, lead_status""",
    # Both buckets of an update in one fixed order (as 0001), so opposite moves cannot deadlock.
    f"""CREATE OR REPLACE FUNCTION conversation_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'INSERT' THEN {_PG_INC} ELSIF TG_OP = 'DELETE' THEN {_PG_DEC} ELSIF ({_PG_KEY.format(r="OLD")}) < ({_PG_KEY.format(r="NEW")}) THEN {_PG_DEC} {_PG_INC} ELSE {_PG_INC} {_PG_DEC} END IF; RETURN NULL; END $$""",
    "DROP TRIGGER conversation_counts_update ON conversations",
    # contact_id too: ``UPDATE OF`` sees the SET list only, not NEW.lead_status set by the BEFORE trigger.
    """CREATE TRIGGER conversation_counts_update AFTER UPDATE OF status, assignee_id, unread_count, lead_status, contact_id ON conversations FOR EACH ROW WHEN (old.status IS DISTINCT FROM new.status OR old.assignee_id IS DISTINCT FROM new.assignee_id OR (old.unread_count > 0) IS DISTINCT FROM (new.unread_count > 0) OR old.lead_status IS DISTINCT FROM new.lead_status) EXECUTE FUNCTION conversation_counts_apply()""",
    """CREATE FUNCTION conversations_copy_contact() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE contact record; BEGIN SELECT lead_status, tags INTO contact FROM contacts WHERE id = NEW.contact_id; IF FOUND THEN NEW.lead_status := contact.lead_status; NEW.tags := contact.tags; END IF; RETURN NEW; END $$""",
    """CREATE TRIGGER conversations_copy_contact BEFORE INSERT OR UPDATE OF contact_id ON conversations FOR EACH ROW EXECUTE FUNCTION conversations_copy_contact()""",
    """CREATE FUNCTION contacts_copy_to_conversation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE conversations SET lead_status = NEW.lead_status, tags = NEW.tags WHERE workspace_id = NEW.workspace_id AND contact_id = NEW.id; RETURN NULL; END $$""",
    """CREATE TRIGGER contacts_copy_to_conversation AFTER UPDATE OF lead_status, tags ON contacts FOR EACH ROW WHEN (old.lead_status IS DISTINCT FROM new.lead_status OR old.tags IS DISTINCT FROM new.tags) EXECUTE FUNCTION contacts_copy_to_conversation()""",
    _TAG_COUNTS_TABLE,
    _TAG_COUNTS_BACKFILL.format(elements="jsonb_array_elements_text(conversations.tags) AS tags(value)"),
    f"""CREATE FUNCTION conversation_tag_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'INSERT' THEN {_tag_counts_apply(_tag_rows("NEW", "1", _POSTGRESQL_TAGS))}; ELSIF TG_OP = 'DELETE' THEN {_tag_counts_apply(_tag_rows("OLD", "-1", _POSTGRESQL_TAGS))}; ELSE {_tag_counts_apply(_tag_rows("OLD", "-1", _POSTGRESQL_TAGS) + " UNION ALL " + _tag_rows("NEW", "1", _POSTGRESQL_TAGS))}; END IF; RETURN NULL; END $$""",
    """CREATE TRIGGER conversation_tag_counts_insert_delete AFTER INSERT OR DELETE ON conversations FOR EACH ROW EXECUTE FUNCTION conversation_tag_counts_apply()""",
    """CREATE TRIGGER conversation_tag_counts_update AFTER UPDATE OF status, assignee_id, unread_count, lead_status, tags, contact_id ON conversations FOR EACH ROW WHEN (old.status IS DISTINCT FROM new.status OR old.assignee_id IS DISTINCT FROM new.assignee_id OR (old.unread_count > 0) IS DISTINCT FROM (new.unread_count > 0) OR old.lead_status IS DISTINCT FROM new.lead_status OR old.tags IS DISTINCT FROM new.tags) EXECUTE FUNCTION conversation_tag_counts_apply()""",
]

POSTGRESQL_DOWNGRADE = [
    "DROP FUNCTION conversation_tag_counts_apply() CASCADE",
    "DROP TABLE conversation_tag_counts",
    "DROP FUNCTION contacts_copy_to_conversation() CASCADE",
    "DROP FUNCTION conversations_copy_contact() CASCADE",
    "DROP TRIGGER conversation_counts_update ON conversations",
    "DELETE FROM conversation_counts",
    "ALTER TABLE conversation_counts DROP CONSTRAINT pk_conversation_counts",
    "ALTER TABLE conversation_counts DROP COLUMN lead_status",
    "ALTER TABLE conversation_counts ADD CONSTRAINT pk_conversation_counts PRIMARY KEY (workspace_id, status, assignee_key, unread)",
    _REFILL_0001,
    *(ddl.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION") for ddl in _baseline(_0001.POSTGRESQL, "CREATE FUNCTION conversation_counts_apply")),
    *_baseline(_0001.POSTGRESQL, "CREATE TRIGGER conversation_counts_update "),
    "ALTER TABLE conversations DROP COLUMN tags",
    "ALTER TABLE conversations DROP COLUMN lead_status",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in SQLITE_UPGRADE if bind.dialect.name == "sqlite" else POSTGRESQL_UPGRADE:
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    for statement in SQLITE_DOWNGRADE if bind.dialect.name == "sqlite" else POSTGRESQL_DOWNGRADE:
        bind.exec_driver_sql(statement)
