"""Workspace statistics on the Asia/Jakarta (WIB, UTC+7) calendar; weeks start on Monday."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from kabar.db import tables as t

from tests.conversations.seed import contact_row, seed_conversation
from tests.helpers import assert_problem


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def _contacts(client, ws, *rows):
    def write(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(insert(t.contacts), list(rows))

    await client.runtime.db.transaction(write)


async def _stats(tenant, caller=None, **params):
    response = await tenant.client.get(f"{tenant.base}/stats", params=params, headers=(caller or tenant.owner).headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_calendar_buckets_follow_wib(client, tenant):
    ws = tenant.ws
    await _contacts(
        client,
        ws,
        contact_row(ws, created_at=utc("2026-01-01T17:30:00"), lead_status="hot_lead", tags=["vip", "uk"]),  # Fri 2 Jan 00:30 WIB
        contact_row(ws, created_at=utc("2025-12-31T16:59:00"), tags=["vip"]),  # Wed 31 Dec 23:59 WIB
        contact_row(ws, created_at=utc("2025-12-28T17:00:00")),  # Mon 29 Dec 00:00 WIB: this week
        contact_row(ws, created_at=utc("2025-12-28T16:59:59"), lead_status="client"),  # Sun 28 Dec: last week
        contact_row(ws, created_at=utc("2026-01-02T17:00:00")),  # Sat 3 Jan 00:00 WIB: after the day
    )
    body = await _stats(tenant, date="2026-01-02")
    assert body["timezone"] == "Asia/Jakarta" and body["date"] == "2026-01-02"
    contacts = body["contacts"]
    assert (contacts["total"], contacts["today"], contacts["week"], contacts["month"]) == (5, 1, 3, 1)
    # On 1 January the early-2-January (WIB) contact does not count yet, even though it is 1 January in UTC.
    jan1 = (await _stats(tenant, date="2026-01-01"))["contacts"]
    assert (jan1["today"], jan1["week"], jan1["month"]) == (0, 2, 0)
    dec31 = (await _stats(tenant, date="2025-12-31"))["contacts"]
    assert (dec31["today"], dec31["week"], dec31["month"]) == (1, 2, 3)  # December: 28, 29, 31
    assert contacts["by_lead_status"] == {"prospect": 3, "hot_lead": 1, "cold_lead": 0, "client": 1, "student": 0, "alumni": 0, "lost": 0}
    assert contacts["by_tag"] == {"vip": 2, "uk": 1}
    assert list(contacts["by_tag"]) == ["vip", "uk"]


async def test_today_defaults_to_the_current_wib_day(client, tenant):
    await seed_conversation(client, tenant.ws)  # created now
    body = await _stats(tenant)
    now_wib = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta")).date().isoformat()
    assert body["date"] == now_wib
    assert (body["contacts"]["total"], body["contacts"]["today"], body["contacts"]["week"], body["contacts"]["month"]) == (1, 1, 1, 1)


async def test_conversation_counts_and_member_visibility(client, tenant, other_tenant):
    member = await tenant.add_user("member")
    other = await tenant.add_user("member")
    await seed_conversation(client, tenant.ws, unread=2)
    await seed_conversation(client, tenant.ws, status="pending", assignee_id=member.user_id, tags=["vip"])
    await seed_conversation(client, tenant.ws, status="open", unread=1, assignee_id=other.user_id, tags=["vip"])
    await seed_conversation(client, other_tenant.ws, unread=5)
    body = await _stats(tenant)
    assert body["conversations"] == {"open": 2, "unread": 2, "by_status": {"open": 2, "pending": 1, "closed": 0, "snoozed": 0}}
    assert body["contacts"]["total"] == 3 and body["contacts"]["by_tag"] == {"vip": 2}
    # A member counts what they can see: theirs and the unassigned.
    mine = await _stats(tenant, member)
    assert mine["conversations"] == {"open": 1, "unread": 1, "by_status": {"open": 1, "pending": 1, "closed": 0, "snoozed": 0}}
    assert mine["contacts"]["total"] == 2 and mine["contacts"]["by_tag"] == {"vip": 1}
    for caller in (await tenant.add_user("admin"), await tenant.api_key()):
        assert (await _stats(tenant, caller))["contacts"]["total"] == 3


async def test_bad_date_and_tenancy(client, tenant, other_tenant):
    response = await client.get(f"{tenant.base}/stats", params={"date": "2026-13-45"}, headers=tenant.owner.headers)
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)
    assert_problem(await client.get(f"{other_tenant.base}/stats", headers=tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/stats"), 401)
