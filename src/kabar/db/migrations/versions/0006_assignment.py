"""One owner of a customer: ``contacts.assignee_id`` is the assignment; the conversation's is a copy.

Until now the assignee was stored on the contact and on its conversation, and some writers (CSV
import, merge, member removal, ARI's handoff) updated one and not the other, so a member could
open a chat whose contact answered them 404. From here on:

- ``contacts.assignee_id`` is the one stored owner. ``kabar.assignment`` is the one function that
  changes it (and emits the events); ``conversations.assignee_id`` stays as a copy only so the
  inbox can filter and count by it without the contacts join (as 0002 does for lead status).
- Triggers keep the copy exact whoever writes: a contact's change reaches its conversation; a
  conversation inserted (ingest), moved to another contact (merge) or given an assignee directly
  takes its contact's. The inbox count triggers of 0001/0002 see these as ordinary updates of
  ``conversations.assignee_id`` and move the buckets.

Repair of rows that disagree today: the conversation's assignee wins. It is what the inbox has
shown everyone (lists, counts, the "mine" tab), what staff acted on, and what the realtime feed
and notifications followed; taking it changes no one's inbox, only the contact pages that were
out of step with it (the 404s). A contact without a conversation keeps its own.

SQLite cannot set NEW, so (as in 0002) an AFTER trigger corrects the row with an UPDATE;
PostgreSQL sets NEW.assignee_id in a BEFORE trigger.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Both backends: contacts take their conversation's assignee where the two disagree.
_REPAIR = {
    "sqlite": """UPDATE contacts SET assignee_id = (SELECT conversations.assignee_id FROM conversations WHERE conversations.contact_id = contacts.id)
WHERE EXISTS (SELECT 1 FROM conversations WHERE conversations.contact_id = contacts.id AND conversations.assignee_id IS NOT contacts.assignee_id)""",
    "postgresql": """UPDATE contacts SET assignee_id = conversations.assignee_id FROM conversations
WHERE conversations.contact_id = contacts.id AND conversations.workspace_id = contacts.workspace_id
AND conversations.assignee_id IS DISTINCT FROM contacts.assignee_id""",
}

_SQLITE_STALE = "new.assignee_id IS NOT (SELECT assignee_id FROM contacts WHERE contacts.id = new.contact_id)"
_SQLITE_COPY = "UPDATE conversations SET assignee_id = (SELECT assignee_id FROM contacts WHERE contacts.id = new.contact_id) WHERE id = new.id;"
SQLITE_UPGRADE = [
    _REPAIR["sqlite"],
    f"CREATE TRIGGER conversations_assignee_insert AFTER INSERT ON conversations WHEN {_SQLITE_STALE} BEGIN {_SQLITE_COPY} END",
    f"CREATE TRIGGER conversations_assignee_update AFTER UPDATE OF contact_id, assignee_id ON conversations WHEN {_SQLITE_STALE} BEGIN {_SQLITE_COPY} END",
    """CREATE TRIGGER contacts_assignee_to_conversation AFTER UPDATE OF assignee_id ON contacts WHEN old.assignee_id IS NOT new.assignee_id BEGIN UPDATE conversations SET assignee_id = new.assignee_id WHERE workspace_id = new.workspace_id AND contact_id = new.id; END""",
]
SQLITE_DOWNGRADE = [
    "DROP TRIGGER contacts_assignee_to_conversation",
    "DROP TRIGGER conversations_assignee_update",
    "DROP TRIGGER conversations_assignee_insert",
]

POSTGRESQL_UPGRADE = [
    _REPAIR["postgresql"],
    """CREATE FUNCTION conversations_copy_assignee() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE owner varchar(36); BEGIN SELECT assignee_id INTO owner FROM contacts WHERE id = NEW.contact_id; IF FOUND THEN NEW.assignee_id := owner; END IF; RETURN NEW; END $$""",
    """CREATE TRIGGER conversations_copy_assignee BEFORE INSERT OR UPDATE OF contact_id, assignee_id ON conversations FOR EACH ROW EXECUTE FUNCTION conversations_copy_assignee()""",
    """CREATE FUNCTION contacts_assignee_to_conversation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE conversations SET assignee_id = NEW.assignee_id WHERE workspace_id = NEW.workspace_id AND contact_id = NEW.id; RETURN NULL; END $$""",
    """CREATE TRIGGER contacts_assignee_to_conversation AFTER UPDATE OF assignee_id ON contacts FOR EACH ROW WHEN (old.assignee_id IS DISTINCT FROM new.assignee_id) EXECUTE FUNCTION contacts_assignee_to_conversation()""",
]
POSTGRESQL_DOWNGRADE = [
    "DROP FUNCTION contacts_assignee_to_conversation() CASCADE",
    "DROP FUNCTION conversations_copy_assignee() CASCADE",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in SQLITE_UPGRADE if bind.dialect.name == "sqlite" else POSTGRESQL_UPGRADE:
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    for statement in SQLITE_DOWNGRADE if bind.dialect.name == "sqlite" else POSTGRESQL_DOWNGRADE:
        bind.exec_driver_sql(statement)
