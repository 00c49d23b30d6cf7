"""The schema: one SQLAlchemy Core ``MetaData`` for SQLite and PostgreSQL.

Rules kept here:
- every tenant table has ``workspace_id`` and every index on it starts with ``workspace_id``;
- uniqueness that makes duplicates impossible is a constraint, not an application check;
- times are ``UTCDateTime``; ids are UUIDv7 text (``kabar.ids.new_id``).

The few global indexes are lookups that by nature arrive without a workspace (a user's own
memberships, webhook routing by ``phone_number_id``, the job queue); each says so.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from kabar.db.types import JSONType, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)


def _id() -> Column:
    return Column("id", ID, primary_key=True)


def _ws() -> Column:
    return Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


def _timestamps() -> list[Column]:
    return [
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    ]


# ---------------------------------------------------------------------------------------------
# Identity (global, not tenant data)

users = Table(
    "users",
    metadata,
    _id(),
    Column("email", String(320), nullable=False),  # stored lower-cased
    Column("name", String(200), nullable=False, server_default=""),
    Column("password_hash", String(200)),  # null for users who only sign in through an IdP
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("password_changed_at", UTCDateTime),
    *_timestamps(),
    # Set when the person proved they read this address (an emailed link; operator-made users).
    Column("email_verified_at", UTCDateTime),
    UniqueConstraint("email"),
)

# An external identity provider's subject mapped to a user.
user_identities = Table(
    "user_identities",
    metadata,
    _id(),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("issuer", String(500), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("issuer", "subject"),
)

sessions = Table(
    "sessions",
    metadata,
    _id(),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("user_agent", String(300)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    UniqueConstraint("token_hash"),
)

# Single-use secrets mailed to a user: password reset, email verification. The token is
# "<id>.<secret>", looked up by id; ``email`` is the address it was sent to (a changed address
# makes it void).
account_tokens = Table(
    "account_tokens",
    metadata,
    _id(),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("email", String(320), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("purpose IN ('password_reset', 'verify_email')", name="purpose"),
)
Index("ix_account_tokens_user_id", account_tokens.c.user_id, account_tokens.c.purpose)

# Mail Kabar sends (invitations, password resets, verification links). Without an SMTP server
# they stay here (``kabar mail list``); a sent mail's body is cleared (its links are secrets).
mail_outbox = Table(
    "mail_outbox",
    metadata,
    _id(),
    Column("to_addr", String(320), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text),
    Column("kind", String(40), nullable=False),
    Column("status", String(10), nullable=False, server_default="outbox"),  # outbox|queued|sent|failed
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    CheckConstraint("status IN ('outbox', 'queued', 'sent', 'failed')", name="status"),
)
Index("ix_mail_outbox_created_at", mail_outbox.c.created_at)

# ---------------------------------------------------------------------------------------------
# Tenancy

workspaces = Table(
    "workspaces",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("slug", String(100), nullable=False),
    Column("owner_id", ID, ForeignKey("users.id"), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="Asia/Jakarta"),
    Column("settings", JSONType, nullable=False, server_default=text("'{}'")),
    # Last event-log seq handed out; bumped in the writing transaction (see kabar.db.uow).
    Column("event_seq", BigInteger, nullable=False, server_default=text("0")),
    *_timestamps(),
    UniqueConstraint("slug"),
)

members = Table(
    "members",
    metadata,
    _ws(),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(20), nullable=False),
    Column("settings", JSONType, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "user_id"),
    CheckConstraint("role IN ('owner', 'admin', 'member')", name="role"),
)
# Global by nature: "which workspaces is this user in" (GET /v1/me).
Index("ix_members_user_id_global", members.c.user_id)

invitations = Table(
    "invitations",
    metadata,
    _id(),
    _ws(),
    Column("email", String(320), nullable=False),
    Column("name", String(200)),
    Column("role", String(20), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # token = "<id>.<secret>", looked up by id
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("invited_by", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('admin', 'member')", name="role"),
)
Index("ix_invitations_ws_email", invitations.c.workspace_id, invitations.c.email)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    _ws(),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # key = "kbr_<id>_<secret>", looked up by id
    Column("hint", String(16), nullable=False),  # last characters, to tell keys apart in lists
    Column("created_by", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)
Index("ix_api_keys_ws", api_keys.c.workspace_id, api_keys.c.created_at)

# WhatsApp connection, one per workspace. Secrets are AES-GCM ciphertext (kabar.crypto).
channels = Table(
    "channels",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("provider", String(20), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("display_phone_number", String(32)),
    Column("api_base_url", String(500)),
    Column("secrets", LargeBinary),  # encrypted JSON: api_key, webhook_secret, app_secret, verify_token
    *_timestamps(),
    CheckConstraint("provider IN ('kapso', 'meta', 'fake')", name="provider"),
)
# Global by nature: an inbound webhook names only its phone_number_id.
Index("ix_channels_phone_number_id_global", channels.c.phone_number_id, unique=True)

# ---------------------------------------------------------------------------------------------
# CRM

contacts = Table(
    "contacts",
    metadata,
    _id(),
    _ws(),
    # A WhatsApp customer may be known by phone, by business-scoped user id (BSUID), or both.
    Column("phone_e164", String(20)),
    Column("phone_raw", String(64)),
    Column("whatsapp_user_id", String(256)),  # Meta's BSUID (``user_id``), unique per workspace when set
    Column("username", String(100)),  # WhatsApp username without '@', lower-cased; unique per workspace when set
    Column("name", String(200)),
    Column("profile_name", String(200)),  # WhatsApp profile name from webhooks
    Column("email", String(320)),
    Column("tags", JSONType, nullable=False, server_default=text("'[]'")),
    Column("attributes", JSONType, nullable=False, server_default=text("'{}'")),
    Column("lead_status", String(20), nullable=False, server_default="prospect"),
    Column("lead_status_set_by", String(10), nullable=False, server_default="system"),  # human|ari|system
    Column("lead_score", Integer, nullable=False, server_default=text("0")),
    Column("assignee_id", ID, ForeignKey("users.id", ondelete="SET NULL")),  # the owner: kabar.assignment
    Column("source", String(40), nullable=False, server_default="manual"),
    Column("first_contact_at", UTCDateTime),
    Column("last_interaction_at", UTCDateTime),
    Column("search_text", Text, nullable=False, server_default=""),  # lower-cased name/phone/email
    *_timestamps(),
    UniqueConstraint("workspace_id", "phone_e164"),
    CheckConstraint("lead_score >= 0 AND lead_score <= 100", name="lead_score"),
    CheckConstraint(
        "lead_status IN ('prospect', 'hot_lead', 'cold_lead', 'client', 'student', 'alumni', 'lost')",
        name="lead_status",
    ),
)
Index("ix_contacts_ws_created", contacts.c.workspace_id, contacts.c.created_at, contacts.c.id)
Index("ix_contacts_ws_status", contacts.c.workspace_id, contacts.c.lead_status)
Index("ix_contacts_ws_assignee", contacts.c.workspace_id, contacts.c.assignee_id)
# Partial: only contacts that have the identity (migration 0004).
Index(
    "uq_contacts_ws_whatsapp_user_id", contacts.c.workspace_id, contacts.c.whatsapp_user_id, unique=True,
    sqlite_where=contacts.c.whatsapp_user_id.is_not(None), postgresql_where=contacts.c.whatsapp_user_id.is_not(None),
)
Index(
    "uq_contacts_ws_username", contacts.c.workspace_id, contacts.c.username, unique=True,
    sqlite_where=contacts.c.username.is_not(None), postgresql_where=contacts.c.username.is_not(None),
)

# Contact search (``q`` over name, phone, email; any substring, e.g. "3456" of a phone) is served
# by a trigram index over ``search_text`` (whoever writes a contact fills it with
# ``kabar.contacts.service.search_text_for``).
# SQLite: an FTS5 trigram table with contacts as its external content, kept in sync by triggers
# (it is keyed by contacts' rowid, which VACUUM keeps for rowid tables; should it ever drift,
# ``INSERT INTO contacts_fts(contacts_fts) VALUES('rebuild')`` regenerates it). The FTS table
# cannot start with workspace_id: matches are joined back to contacts and filtered there.
# PostgreSQL: a GIN trigram index, global for the same reason: led by workspace_id (btree_gin)
# every search also reads the workspace's whole posting list: measured 13 ms against 1.7 ms for
# "08170001234" among 3 x 20k contacts. Every query still filters and rechecks workspace_id.
# The trigram table/index and its triggers are created by migration 0001.

contact_notes = Table(
    "contact_notes",
    metadata,
    _id(),
    _ws(),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("author_id", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("author_type", String(10), nullable=False, server_default="user"),  # user|bot|system
    Column("note_type", String(20), nullable=False, server_default="note"),
    Column("content", Text, nullable=False),
    Column("due_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("metadata", JSONType, nullable=False, server_default=text("'{}'")),
    *_timestamps(),
)
Index("ix_contact_notes_ws_contact", contact_notes.c.workspace_id, contact_notes.c.contact_id, contact_notes.c.created_at, contact_notes.c.id)
Index("ix_contact_notes_ws_due", contact_notes.c.workspace_id, contact_notes.c.due_at)

conversations = Table(
    "conversations",
    metadata,
    _id(),
    _ws(),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # The contact's lead status and tags, copied by triggers (migration 0002) so the inbox filters
    # and counts by them without the contacts join.
    Column("lead_status", String(20), nullable=False, server_default="prospect"),
    Column("tags", JSONType, nullable=False, server_default=text("'[]'")),
    Column("status", String(10), nullable=False, server_default="open"),
    # A copy of the contact's assignee (the one stored owner), kept equal by triggers (migration
    # 0006) whoever writes; change it with kabar.assignment, which also emits the events.
    Column("assignee_id", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("unread_count", Integer, nullable=False, server_default=text("0")),
    Column("last_message_at", UTCDateTime, nullable=False),
    Column("last_message_preview", String(200), nullable=False, server_default=""),
    Column("last_inbound_at", UTCDateTime),  # opens WhatsApp's 24-hour customer-service window
    Column("ai_paused", Boolean, nullable=False, server_default=text("false")),
    Column("snoozed_until", UTCDateTime),
    *_timestamps(),
    UniqueConstraint("workspace_id", "contact_id"),  # one conversation per contact
    CheckConstraint("status IN ('open', 'pending', 'closed', 'snoozed')", name="status"),
)
Index("ix_conversations_ws_last", conversations.c.workspace_id, conversations.c.last_message_at, conversations.c.id)
Index(
    "ix_conversations_ws_assignee_last",
    conversations.c.workspace_id,
    conversations.c.assignee_id,
    conversations.c.last_message_at,
    conversations.c.id,
)
Index(
    "ix_conversations_ws_status_last",
    conversations.c.workspace_id,
    conversations.c.status,
    conversations.c.last_message_at,
    conversations.c.id,
)
# The inbox's "unread" tab and its badge count: only unread rows are in it, so it stays small.
Index(
    "ix_conversations_ws_unread_last",
    conversations.c.workspace_id,
    conversations.c.last_message_at,
    conversations.c.id,
    sqlite_where=text("unread_count > 0"),
    postgresql_where=text("unread_count > 0"),
)

# How many conversations each (status, assignee, has-unread, lead status) bucket of a workspace
# holds, kept exact by triggers on conversations in the writing transaction, whoever writes
# (ingest, staff, merges, imports). The inbox's total and unread counts read a few of these rows
# instead of counting up to every conversation of the workspace (10 ms at 100k rows on SQLite,
# even from an index). Filters on other contact fields (tag, search) still count the real rows.
conversation_counts = Table(
    "conversation_counts",
    metadata,
    _ws(),
    Column("status", String(10), nullable=False),
    Column("assignee_key", String(36), nullable=False),  # the assignee's id, "" when unassigned
    Column("unread", Boolean, nullable=False),
    Column("lead_status", String(20), nullable=False),  # conversations.lead_status
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("workspace_id", "status", "assignee_key", "unread", "lead_status"),
    sqlite_with_rowid=False,  # stored in primary-key order: a workspace's buckets are adjacent
)
# The same buckets for each tag (of conversations.tags): a single-tag filter's counts.
conversation_tag_counts = Table(
    "conversation_tag_counts",
    metadata,
    _ws(),
    Column("tag", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("assignee_key", String(36), nullable=False),
    Column("unread", Boolean, nullable=False),
    Column("lead_status", String(20), nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("workspace_id", "tag", "status", "assignee_key", "unread", "lead_status"),
    sqlite_with_rowid=False,
)
# The triggers are created by migrations 0001 and 0002 (which says why they are as they are): a
# bucket removed with its workspace stays removed; on PostgreSQL an update touches both buckets in
# one fixed order, so two transactions moving conversations in opposite directions cannot deadlock.

messages = Table(
    "messages",
    metadata,
    _id(),
    _ws(),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(10), nullable=False),
    Column("sender_type", String(10), nullable=False),
    Column("sender_id", ID),
    Column("type", String(20), nullable=False),
    Column("text", Text),
    Column("media", JSONType),
    Column("status", String(10), nullable=False),
    Column("error", JSONType),
    Column("provider_message_id", String(200)),
    Column("reply_to_id", ID),
    Column("reply_to_provider_id", String(200)),
    Column("reactions", JSONType, nullable=False, server_default=text("'[]'")),
    Column("metadata", JSONType, nullable=False, server_default=text("'{}'")),
    Column("sent_at", UTCDateTime),  # the provider's timestamp, when it gave one
    Column("edited_at", UTCDateTime),
    Column("deleted_at", UTCDateTime),
    *_timestamps(),
    UniqueConstraint("workspace_id", "provider_message_id"),
    CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
    CheckConstraint("status IN ('pending', 'received', 'sent', 'delivered', 'read', 'failed')", name="status"),
)
Index("ix_messages_ws_conv_created", messages.c.workspace_id, messages.c.conversation_id, messages.c.created_at, messages.c.id)

# Every status a provider reported, in arrival order; kept also for statuses that arrive before
# their message (matched by provider_message_id when the message appears).
message_status_history = Table(
    "message_status_history",
    metadata,
    _id(),
    _ws(),
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE")),
    Column("provider_message_id", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("error", JSONType),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index(
    "ix_message_status_history_ws_provider",
    message_status_history.c.workspace_id,
    message_status_history.c.provider_message_id,
)

uploads = Table(
    "uploads",
    metadata,
    _id(),
    _ws(),
    Column("filename", String(300), nullable=False),
    Column("mime_type", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("path", String(500), nullable=False),  # relative to KABAR_DATA_DIR
    Column("origin", String(10), nullable=False, server_default="upload"),  # upload|inbound
    Column("created_by", ID),  # the uploader (null: an API key, or inbound media)
    Column("created_at", UTCDateTime, nullable=False),
    # The conversation (and its contact) the file was sent or received in: from then on it is
    # visible exactly when that conversation is (kabar.auth.visibility); null while unsent.
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE")),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE")),
)
Index("ix_uploads_ws_created", uploads.c.workspace_id, uploads.c.created_at)
Index("ix_uploads_ws_conversation", uploads.c.workspace_id, uploads.c.conversation_id)

# A retry of a create with the same Idempotency-Key returns the stored first response.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    _ws(),
    Column("scope", String(200), nullable=False),  # route + caller
    Column("key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),  # a reused key with another body is refused
    Column("status_code", Integer, nullable=False),
    Column("response", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "scope", "key"),
)

# ---------------------------------------------------------------------------------------------
# Ingest, events, jobs

# Every webhook body a provider sent, before anything else happens to it.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    _id(),
    Column("workspace_id", ID, nullable=False),  # "" when the payload could not be routed
    Column("provider", String(10), nullable=False),
    Column("receipt_key", String(200), nullable=False),  # provider idempotency key or body hash
    Column("event_type", String(100)),
    Column("headers", JSONType, nullable=False, server_default=text("'{}'")),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(10), nullable=False),  # applied|ignored|failed
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    Column("received_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),
    UniqueConstraint("workspace_id", "provider", "receipt_key"),
)
Index("ix_webhook_receipts_ws_status", webhook_receipts.c.workspace_id, webhook_receipts.c.status, webhook_receipts.c.received_at)

# The event log: the source of truth for realtime and outgoing webhooks.
events = Table(
    "events",
    metadata,
    _ws(),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(60), nullable=False),
    Column("data", JSONType, nullable=False),
    Column("contact_id", ID),  # for member visibility filtering of subscribers
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "seq"),
)
Index("ix_events_ws_created", events.c.workspace_id, events.c.created_at)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("workspace_id", ID),  # null for system jobs (cleanup, reminders sweep)
    Column("kind", String(60), nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("status", String(10), nullable=False, server_default="queued"),  # queued|running|done|dead
    Column("serial_key", String(200)),  # jobs sharing a key run one at a time, oldest first
    Column("run_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("locked_by", String(100)),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    CheckConstraint("status IN ('queued', 'running', 'done', 'dead')", name="status"),
)
# Global by nature: workers claim from the whole queue.
Index("ix_jobs_claim_global", jobs.c.status, jobs.c.run_at)
Index("ix_jobs_serial_global", jobs.c.serial_key, jobs.c.status)
Index("ix_jobs_ws_kind", jobs.c.workspace_id, jobs.c.kind, jobs.c.status)

# ---------------------------------------------------------------------------------------------
# Outgoing webhooks (Kabar -> the business's systems)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    _id(),
    _ws(),
    Column("url", String(2000), nullable=False),
    Column("description", String(300)),
    Column("events", JSONType, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("secret", LargeBinary, nullable=False),  # encrypted
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),  # event log position
    Column("failing_since", UTCDateTime),
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", String(300)),
    *_timestamps(),
)
Index("ix_webhook_endpoints_ws", webhook_endpoints.c.workspace_id, webhook_endpoints.c.created_at)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id(),
    _ws(),
    Column("endpoint_id", ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_type", String(60), nullable=False),
    Column("status", String(10), nullable=False),  # pending|delivered|failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("last_duration_ms", Integer),
    Column("last_attempt_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    *_timestamps(),
    UniqueConstraint("workspace_id", "endpoint_id", "event_seq"),
)
# The dispatcher's "next undelivered deliveries of this endpoint, in order" (kabar.integrations).
Index(
    "ix_webhook_deliveries_ws_endpoint_status",
    webhook_deliveries.c.workspace_id,
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.status,
    webhook_deliveries.c.event_seq,
)

# ---------------------------------------------------------------------------------------------
# ARI, the AI receptionist

ari_configs = Table(
    "ari_configs",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=text("false")),
    Column("bot_name", String(100), nullable=False, server_default="ARI"),
    Column("language", String(10), nullable=False, server_default="id"),
    Column("greeting_style", String(20), nullable=False, server_default="professional"),
    Column("tone", JSONType, nullable=False, server_default=text("'{}'")),
    Column("community_link", String(500)),
    Column("llm", JSONType, nullable=False, server_default=text("'{}'")),  # provider, base_url, model, ab_split
    Column("llm_api_key", LargeBinary),  # encrypted
    # Wait this long after an inbound message before answering, so a burst gets one reply.
    Column("reply_delay_ms", Integer, nullable=False, server_default=text("1500")),
    # Customer messages in one ARI state before a human takes over (auto-handoff when stuck).
    Column("handoff_after_messages", Integer, nullable=False, server_default=text("10")),
    *_timestamps(),
)

ari_scoring = Table(
    "ari_scoring",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("hot_threshold", Integer, nullable=False, server_default=text("70")),
    Column("warm_threshold", Integer, nullable=False, server_default=text("40")),
    Column("weight_basic", Integer, nullable=False, server_default=text("25")),
    Column("weight_qualification", Integer, nullable=False, server_default=text("35")),
    Column("weight_documents", Integer, nullable=False, server_default=text("30")),
    Column("weight_engagement", Integer, nullable=False, server_default=text("10")),
    *_timestamps(),
    CheckConstraint("hot_threshold > warm_threshold", name="thresholds"),
    CheckConstraint(
        "weight_basic + weight_qualification + weight_documents + weight_engagement = 100", name="weights"
    ),
)

ari_flow_stages = Table(
    "ari_flow_stages",
    metadata,
    _id(),
    _ws(),
    Column("name", String(100), nullable=False),
    Column("goal", Text, nullable=False, server_default=""),
    Column("sample_script", Text),
    Column("exit_criteria", Text),
    Column("stage_order", Integer, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    *_timestamps(),
)
Index("ix_ari_flow_stages_ws_order", ari_flow_stages.c.workspace_id, ari_flow_stages.c.stage_order)

ari_knowledge = Table(
    "ari_knowledge",
    metadata,
    _id(),
    _ws(),
    Column("category", String(100)),
    Column("title", String(255), nullable=False),
    Column("content", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    *_timestamps(),
)
Index("ix_ari_knowledge_ws", ari_knowledge.c.workspace_id, ari_knowledge.c.category)

ari_destinations = Table(
    "ari_destinations",
    metadata,
    _id(),
    _ws(),
    Column("country", String(100), nullable=False),
    Column("city", String(100)),
    Column("university_name", String(255), nullable=False),
    Column("requirements", JSONType, nullable=False, server_default=text("'{}'")),
    Column("programs", JSONType, nullable=False, server_default=text("'[]'")),
    Column("is_promoted", Boolean, nullable=False, server_default=text("false")),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("notes", Text),
    *_timestamps(),
)
Index("ix_ari_destinations_ws_country", ari_destinations.c.workspace_id, ari_destinations.c.country)

ari_slots = Table(
    "ari_slots",
    metadata,
    _id(),
    _ws(),
    Column("consultant_id", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("day_of_week", Integer, nullable=False),  # 0 = Monday … 6 = Sunday (Python's weekday())
    Column("start_time", String(5), nullable=False),  # HH:MM, Asia/Jakarta
    Column("end_time", String(5), nullable=False),
    Column("duration_minutes", Integer, nullable=False, server_default=text("60")),
    Column("booking_window_days", Integer, nullable=False, server_default=text("14")),
    Column("max_bookings_per_slot", Integer, nullable=False, server_default=text("1")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    *_timestamps(),
    CheckConstraint("day_of_week BETWEEN 0 AND 6", name="day_of_week"),
    CheckConstraint("end_time > start_time", name="times"),
    CheckConstraint("duration_minutes > 0", name="duration"),
)
Index("ix_ari_slots_ws_day", ari_slots.c.workspace_id, ari_slots.c.day_of_week)

ari_appointments = Table(
    "ari_appointments",
    metadata,
    _id(),
    _ws(),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("slot_id", ID, ForeignKey("ari_slots.id", ondelete="SET NULL")),
    Column("consultant_id", ID, ForeignKey("users.id", ondelete="SET NULL")),
    Column("scheduled_at", UTCDateTime, nullable=False),
    Column("duration_minutes", Integer, nullable=False, server_default=text("60")),
    Column("meeting_link", String(500)),
    Column("status", String(12), nullable=False, server_default="scheduled"),
    Column("booking_key", String(120)),  # slot+time while active, null when cancelled: no double booking
    Column("reminder_sent_at", UTCDateTime),
    Column("notes", Text),
    *_timestamps(),
    UniqueConstraint("workspace_id", "booking_key"),
    CheckConstraint("status IN ('scheduled', 'confirmed', 'completed', 'cancelled', 'no_show')", name="status"),
)
Index("ix_ari_appointments_ws_time", ari_appointments.c.workspace_id, ari_appointments.c.scheduled_at)

# ARI's state for one conversation.
ari_states = Table(
    "ari_states",
    metadata,
    _ws(),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", ID, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(12), nullable=False, server_default="greeting"),
    Column("lead_score", Integer, nullable=False, server_default=text("0")),
    Column("lead_temperature", String(4)),
    Column("score_breakdown", JSONType, nullable=False, server_default=text("'{}'")),
    Column("context", JSONType, nullable=False, server_default=text("'{}'")),
    Column("model", String(100)),
    Column("handoff_reason", String(60)),
    Column("handoff_at", UTCDateTime),
    Column("state_changed_at", UTCDateTime),
    Column("messages_in_state", Integer, nullable=False, server_default=text("0")),
    *_timestamps(),
    PrimaryKeyConstraint("workspace_id", "conversation_id"),
)

ari_transcript = Table(
    "ari_transcript",
    metadata,
    _id(),
    _ws(),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(10), nullable=False),  # user|assistant|system
    Column("content", Text, nullable=False),
    Column("model", String(100)),
    Column("tokens_used", Integer),
    Column("latency_ms", Integer),
    Column("metadata", JSONType, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_ari_transcript_ws_conv", ari_transcript.c.workspace_id, ari_transcript.c.conversation_id, ari_transcript.c.created_at)
