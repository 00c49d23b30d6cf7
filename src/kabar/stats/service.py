"""Workspace statistics. Calendar buckets (today, this week, this month) follow the workspace's
time zone, Asia/Jakarta (WIB) by default: a contact created at 17:30 UTC belongs to the next WIB
day. Weeks start on Monday. Members count only what they can see."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select, true

from kabar.auth.scope import Scope
from kabar.contacts.schemas import LEAD_STATUSES
from kabar.conversations import repository as conversation_repo
from kabar.conversations.schemas import CONVERSATION_STATUSES
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.stats.schemas import ContactStats, ConversationStats, StatsOut

DEFAULT_TIMEZONE = "Asia/Jakarta"
MAX_TAGS = 100

k = t.contacts


def _zone(conn: Connection, workspace_id: str) -> ZoneInfo:
    name = conn.execute(select(t.workspaces.c.timezone).where(t.workspaces.c.id == workspace_id)).scalar()
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (KeyError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def workspace_stats(conn: Connection, ctx: Scope, day: date | None = None) -> StatsOut:
    """Numbers as of ``day`` (a calendar date in the workspace's zone; default: today there)."""
    ctx.require("stats.read")
    zone = _zone(conn, ctx.workspace_id)
    now = utcnow()
    day = day or now.astimezone(zone).date()
    day_start = _local_midnight(day, zone)
    week_start = _local_midnight(day - timedelta(days=day.weekday()), zone)
    month_start = _local_midnight(day.replace(day=1), zone)
    day_end = _local_midnight(day + timedelta(days=1), zone)

    def created_count(start: datetime | None = None):  # noqa: ANN202
        # Each window is an index range on ix_contacts_ws_created, not a scan of all contacts.
        stmt = ctx.select_visible(k, k, func.count())
        if start is not None:
            stmt = stmt.where(k.c.created_at >= start, k.c.created_at < day_end)
        return stmt.scalar_subquery()

    total, today, week, month = conn.execute(
        select(created_count(), created_count(day_start), created_count(week_start), created_count(month_start))
    ).one()

    by_status = dict.fromkeys(LEAD_STATUSES, 0)
    status_stmt = ctx.select_visible(k, k, k.c.lead_status, func.count()).group_by(k.c.lead_status)
    by_status.update({status: n for status, n in conn.execute(status_stmt)})

    conv_status = dict.fromkeys(CONVERSATION_STATUSES, 0)
    unread = 0
    for status, (n, status_unread) in conversation_repo.counts_by_status(conn, ctx).items():
        conv_status[status] = n
        unread += status_unread

    return StatsOut(
        contacts=ContactStats(
            total=total,
            today=today,
            week=week,
            month=month,
            by_lead_status=by_status,
            by_tag=_tag_counts(conn, ctx),
        ),
        conversations=ConversationStats(open=conv_status["open"], unread=unread, by_status=conv_status),
        timezone=zone.key,
        date=day,
        computed_at=now,
    )


def _tag_counts(conn: Connection, ctx: Scope) -> dict[str, int]:
    """Contacts per tag, most used first (the tags JSON array expanded per dialect)."""
    if conn.dialect.name == "postgresql":
        tag = func.jsonb_array_elements_text(k.c.tags).table_valued("value").render_derived()
    else:
        tag = func.json_each(k.c.tags).table_valued("value")
    n = func.count().label("n")
    stmt = (
        ctx.select_visible(k, k, tag.c.value, n)
        .select_from(k.join(tag, true()))
        .group_by(tag.c.value)
        .order_by(n.desc(), tag.c.value)
        .limit(MAX_TAGS)
    )
    return {str(value): int(count) for value, count in conn.execute(stmt)}
