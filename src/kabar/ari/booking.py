"""Consultation slots: weekly patterns → bookable times, matching what the customer asked for.

A pattern (``ari_slots`` row) is a weekly window in the business zone, e.g. Monday 09:00–12:00 in
60-minute sessions → 09:00, 10:00, 11:00 every Monday within its booking window. Each bookable
time has ``max_bookings_per_slot`` seats; a booking takes the seat key ``booking_key`` that the
database keeps unique, so two customers can never hold the same seat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kabar.ari.dates import DAY_NAMES, JAKARTA, When, in_period, normalize

MAX_LISTED = 5  # slots listed in one message


@dataclass(frozen=True, slots=True)
class Pattern:
    id: str
    day_of_week: int  # 0 = Monday
    start_time: str  # HH:MM
    end_time: str
    duration_minutes: int = 60
    booking_window_days: int = 14
    max_bookings_per_slot: int = 1
    consultant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One bookable time."""

    slot_id: str
    start: datetime  # UTC instant
    duration_minutes: int
    consultant_id: str | None
    seats: int = 1

    def local(self, tz: ZoneInfo = JAKARTA) -> datetime:
        return self.start.astimezone(tz)

    def as_json(self) -> dict:
        return {
            "slot_id": self.slot_id,
            "start": self.start.isoformat(),
            "duration_minutes": self.duration_minutes,
            "consultant_id": self.consultant_id,
            "seats": self.seats,
        }

    @classmethod
    def from_json(cls, data: dict) -> Slot:
        return cls(
            slot_id=data["slot_id"],
            start=datetime.fromisoformat(data["start"]),
            duration_minutes=int(data["duration_minutes"]),
            consultant_id=data.get("consultant_id"),
            seats=int(data.get("seats", 1)),
        )


def seat_key(slot_id: str, start: datetime, seat: int) -> str:
    """The unique ``booking_key`` of one seat of one bookable time."""
    return f"{slot_id}@{start.astimezone(ZoneInfo('UTC')):%Y%m%dT%H%MZ}#{seat}"


def free_seat(slot: Slot, taken: set[str]) -> str | None:
    for seat in range(slot.seats):
        key = seat_key(slot.slot_id, slot.start, seat)
        if key not in taken:
            return key
    return None


def _hhmm(value: str) -> time:
    hour, minute = value.split(":")[:2]
    return time(int(hour), int(minute))


def available_slots(patterns: list[Pattern], taken: set[str], now: datetime, tz: ZoneInfo = JAKARTA) -> list[Slot]:
    """Bookable times from tomorrow to each pattern's window, sorted, without full ones.

    Today is excluded on purpose: a consultant needs notice, and the customer a day to prepare.
    """
    today = now.astimezone(tz).date()
    out: list[Slot] = []
    for pattern in patterns:
        start_t, end_t = _hhmm(pattern.start_time), _hhmm(pattern.end_time)
        step = timedelta(minutes=max(1, pattern.duration_minutes))
        for offset in range(1, max(1, pattern.booking_window_days) + 1):
            day = today + timedelta(days=offset)
            if day.weekday() != pattern.day_of_week:
                continue
            at = datetime.combine(day, start_t, tz)
            end = datetime.combine(day, end_t, tz)
            while at + step <= end:
                slot = Slot(pattern.id, at.astimezone(ZoneInfo("UTC")), pattern.duration_minutes, pattern.consultant_id, max(1, pattern.max_bookings_per_slot))
                if at > now and free_seat(slot, taken) is not None:
                    out.append(slot)
                at += step
    out.sort(key=lambda s: (s.start, s.slot_id))
    return out


def days_summary(slots: list[Slot], tz: ZoneInfo = JAKARTA) -> str:
    """Which days have free times, in order: "Senin 9 Feb (3 jadwal), Rabu 11 Feb (2 jadwal)"."""
    counts: dict[date, int] = {}
    for slot in slots:
        day = slot.local(tz).date()
        counts[day] = counts.get(day, 0) + 1
    parts = [f"{DAY_NAMES[d.weekday()]} {d.day}/{d.month} ({n} jadwal)" for d, n in list(counts.items())[:7]]
    return ", ".join(parts)


def on_day(slots: list[Slot], day: date, tz: ZoneInfo = JAKARTA) -> list[Slot]:
    return [s for s in slots if s.local(tz).date() == day]


def list_lines(slots: list[Slot], tz: ZoneInfo = JAKARTA) -> str:
    """Numbered lines for the customer to pick from."""
    lines = [f"{i}. {s.local(tz):%H:%M} ({s.duration_minutes} menit)" for i, s in enumerate(slots[:MAX_LISTED], 1)]
    return "\n".join(lines)


_PICK = re.compile(r"^\s*(?:(?:nomor|nomer|no\.?|pilih|yang|opsi|option|#)\s*)*(\d{1,2})\s*(?:aja|saja|ya|deh|kak)?\s*[.!]?\s*$")


def pick_number(text: str, shown: list[Slot]) -> Slot | None:
    """"2", "nomor 2", "pilih 2", "yang 2 aja" → the second listed slot."""
    match = _PICK.match(normalize(text))
    if not match:
        return None
    index = int(match.group(1))
    return shown[index - 1] if 1 <= index <= len(shown) else None


@dataclass(frozen=True, slots=True)
class Match:
    """What a scheduling message resolved to."""

    slot: Slot | None = None  # one time to confirm
    day: date | None = None  # a day the customer asked about
    day_slots: tuple[Slot, ...] = ()  # free times on that day
    exact_miss: bool = False  # a time was asked that is not free


def match_request(when: When, slots: list[Slot], now: datetime, focus_day: date | None = None, tz: ZoneInfo = JAKARTA) -> Match:
    """Resolve a parsed day/time against the free slots.

    A day with a clock time → that exact slot (or a miss); a day with a part of day → the first
    slot in it; a day alone → that day's list. A time without a day applies to ``focus_day`` (the
    day whose list was shown).
    """
    day = when.day or focus_day
    if day is None and when.week_offset:
        today = now.astimezone(tz).date()
        monday = today - timedelta(days=today.weekday()) + timedelta(days=7 * when.week_offset)
        candidates = [s for s in slots if monday <= s.local(tz).date() < monday + timedelta(days=7)]
        if candidates:
            day = candidates[0].local(tz).date()
    if day is None:
        if when.hour is not None or when.period is not None:
            # A time without a day: the first day that has it.
            for slot in slots:
                local = slot.local(tz)
                if (when.hour is not None and (local.hour, local.minute) == (when.hour, when.minute)) or (
                    when.hour is None and when.period and in_period(local, when.period)
                ):
                    return Match(slot=slot, day=local.date())
        return Match()
    todays = on_day(slots, day, tz)
    if when.hour is not None:
        for slot in todays:
            local = slot.local(tz)
            if (local.hour, local.minute) == (when.hour, when.minute):
                return Match(slot=slot, day=day, day_slots=tuple(todays))
        return Match(day=day, day_slots=tuple(todays), exact_miss=True)
    if when.period is not None:
        in_part = [s for s in todays if in_period(s.local(tz), when.period)]
        if in_part:
            return Match(slot=in_part[0], day=day, day_slots=tuple(todays))
        return Match(day=day, day_slots=tuple(todays), exact_miss=True)
    return Match(day=day, day_slots=tuple(todays))
