"""Dashboard numbers for a workspace."""

from __future__ import annotations

from datetime import date, datetime

import msgspec


class ContactStats(msgspec.Struct):
    total: int
    today: int  # created on the workspace's calendar day (Asia/Jakarta by default)
    week: int  # since Monday of that week
    month: int  # since the 1st of that month
    by_lead_status: dict[str, int]
    by_tag: dict[str, int]  # most used first


class ConversationStats(msgspec.Struct):
    open: int
    unread: int  # conversations with unread messages
    by_status: dict[str, int]


class StatsOut(msgspec.Struct):
    contacts: ContactStats
    conversations: ConversationStats
    timezone: str
    date: date  # the calendar day "today" refers to
    computed_at: datetime
