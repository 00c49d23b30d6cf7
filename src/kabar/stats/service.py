"""Workspace statistics. Calendar buckets (today, this week, this month) follow the workspace's
time zone, Asia/Jakarta (WIB) by default: a contact created at 17:30 UTC belongs to the next WIB
day. Weeks start on Monday. Members count only what they can see."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from kabar.auth.scope import Scope
from kabar.contacts.schemas import LEAD_STATUSES
from kabar.conversations import repository as conversation_repo
from kabar.conversations.schemas import CONVERSATION_STATUSES
from kabar.db.types import utcnow
from kabar.stats import repository as repo
from kabar.stats.schemas import ContactStats, ConversationStats, StatsOut

DEFAULT_TIMEZONE = "Asia/Jakarta"


def _zone(conn: Connection, ctx: Scope) -> ZoneInfo:
    name = repo.workspace_timezone(conn, ctx)
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (KeyError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def workspace_stats(conn: Connection, ctx: Scope, day: date | None = None) -> StatsOut:
    """Numbers as of ``day`` (a calendar date in the workspace's zone; default: today there)."""
    ctx.require("stats.read")
    zone = _zone(conn, ctx)
    now = utcnow()
    day = day or now.astimezone(zone).date()
    day_start = _local_midnight(day, zone)
    week_start = _local_midnight(day - timedelta(days=day.weekday()), zone)
    month_start = _local_midnight(day.replace(day=1), zone)
    day_end = _local_midnight(day + timedelta(days=1), zone)

    total, today, week, month = repo.created_counts(conn, ctx, [None, day_start, week_start, month_start], day_end)

    by_status = dict.fromkeys(LEAD_STATUSES, 0)
    by_status.update(repo.counts_by_lead_status(conn, ctx))

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
            by_tag=repo.tag_counts(conn, ctx),
        ),
        conversations=ConversationStats(open=conv_status["open"], unread=unread, by_status=conv_status),
        timezone=zone.key,
        date=day,
        computed_at=now,
    )
