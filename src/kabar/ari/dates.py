"""Indonesian day and time phrases → a business date/time in the workspace's zone (Asia/Jakarta).

Customers write "besok", "lusa", "hari Senin", "Jum'at", "senin depan jam 2 siang", "tanggal 5",
"jam 10 pagi", "sore", "setengah 3". Our own rules cover these (dateparser knows few of them);
dateparser handles explicit calendar dates ("5 Februari", "10/3") as a fallback. "now" is always
passed in, so every phrase resolves the same way in tests and in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

JAKARTA = ZoneInfo("Asia/Jakarta")

# Python weekday(): 0 = Monday … 6 = Sunday (the same numbering as ari_slots.day_of_week).
DAY_NAMES = ["Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"]
MONTH_NAMES = [
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
]  # fmt: skip

_WEEKDAYS = {
    "senin": 0, "monday": 0,
    "selasa": 1, "tuesday": 1,
    "rabu": 2, "wednesday": 2,
    "kamis": 3, "thursday": 3,
    "jumat": 4, "friday": 4,
    "sabtu": 5, "saturday": 5,
    "minggu": 6, "ahad": 6, "sunday": 6,
}  # fmt: skip
_MONTHS = {
    "jan": 1, "januari": 1, "january": 1,
    "feb": 2, "februari": 2, "pebruari": 2, "february": 2,
    "mar": 3, "maret": 3, "march": 3,
    "apr": 4, "april": 4,
    "mei": 5, "may": 5,
    "jun": 6, "juni": 6, "june": 6,
    "jul": 7, "juli": 7, "july": 7,
    "agu": 8, "agt": 8, "agustus": 8, "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "okt": 10, "oktober": 10, "oct": 10, "october": 10,
    "nov": 11, "nopember": 11, "november": 11,
    "des": 12, "desember": 12, "dec": 12, "december": 12,
}  # fmt: skip
_NUMBER_WORDS = {
    "satu": 1, "dua": 2, "tiga": 3, "empat": 4, "lima": 5, "enam": 6, "tujuh": 7,
    "delapan": 8, "sembilan": 9, "sepuluh": 10, "sebelas": 11, "dua belas": 12,
}  # fmt: skip

# Parts of the day (same boundaries as the greeting word, original-system §10.3).
PERIODS = {"pagi": (5, 11), "siang": (11, 15), "sore": (15, 18), "malam": (18, 24)}
_PERIOD_ALIASES = {"morning": "pagi", "afternoon": "siang", "evening": "sore", "night": "malam"}

_WD = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NUMW = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_HOUR = rf"(\d{{1,2}}|{_NUMW})"


@dataclass(frozen=True, slots=True)
class When:
    """What a message said about a day and a time. Any part may be missing."""

    day: date | None = None  # a specific calendar date
    hour: int | None = None
    minute: int = 0
    period: str | None = None  # pagi|siang|sore|malam, when no clock time was given
    week_offset: int | None = None  # "minggu depan" alone: some day next week

    @property
    def empty(self) -> bool:
        return self.day is None and self.hour is None and self.period is None and self.week_offset is None


def normalize(text: str) -> str:
    """Lower-case, drop apostrophes (Jum'at → jumat), collapse spaces."""
    text = text.lower().replace("’", "").replace("'", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def local_now(now: datetime, tz: ZoneInfo = JAKARTA) -> datetime:
    return now.astimezone(tz)


def greeting_word(now: datetime, tz: ZoneInfo = JAKARTA) -> str:
    hour = local_now(now, tz).hour
    if 5 <= hour < 11:
        return "pagi"
    if 11 <= hour < 15:
        return "siang"
    if 15 <= hour < 18:
        return "sore"
    return "malam"


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]


def _week_monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _parse_day(text: str, today: date) -> tuple[date | None, int | None]:
    """(calendar date, week offset) from relative words, weekday names or explicit dates."""
    if re.search(r"\b(hari ini|today|sekarang)\b", text):
        return today, None
    if re.search(r"\b(besok lusa|tulat)\b", text):
        return today + timedelta(days=3), None
    if re.search(r"\b(lusa|day after tomorrow)\b", text):
        return today + timedelta(days=2), None
    if re.search(r"\b(besok|besuk|tomorrow|bsk)\b", text):
        return today + timedelta(days=1), None

    # A weekday name. "minggu" is also "week": "minggu depan" alone means "next week".
    for match in re.finditer(rf"\b({_WD})\b", text):
        word = match.group(1)
        after = text[match.end() :]
        before = text[: match.start()]
        if word == "minggu" and re.match(r"\s*(depan|ini|lalu|besok|berikutnya)\b", after):
            if not re.search(r"\bhari\s*$", before):
                continue  # "minggu depan" = next week, not Sunday
        weekday = _WEEKDAYS[word]
        if re.match(r"\s*(minggu\s+)?(depan|berikutnya|next)\b", after) or re.search(r"\bnext\s*$", before):
            # "senin depan": that weekday in next calendar week.
            return _week_monday(today) + timedelta(days=7 + weekday), None
        if re.match(r"\s*(ini|this)\b", after):
            candidate = _week_monday(today) + timedelta(days=weekday)
            if candidate >= today:
                return candidate, None
        ahead = (weekday - today.weekday()) % 7 or 7  # a bare weekday is the next one after today
        return today + timedelta(days=ahead), None

    if re.search(r"\b(minggu depan|pekan depan|next week)\b", text):
        return None, 1

    # "tanggal 5", "tgl 5": the next such day of a month (today counts).
    match = re.search(r"\b(?:tanggal|tgl\.?)\s*(\d{1,2})\b(?!\s*[/.-]\d)", text)
    if match and not re.search(rf"\b{match.group(1)}\s*({_MON})\b", text):
        return _next_day_of_month(today, int(match.group(1))), None

    # "5 februari", "5 feb 2026", "februari 5": explicit dates, our own table first.
    match = re.search(rf"\b(\d{{1,2}})\s*({_MON})\b\.?(?:\s*(\d{{4}}))?", text)
    if match:
        return _explicit(today, int(match.group(1)), _MONTHS[match.group(2)], match.group(3)), None
    match = re.search(r"\b(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?\b", text)
    if match and not re.search(r"\b(jam|pukul|pkl)\s*" + re.escape(match.group(0)), text):
        day, month = int(match.group(1)), int(match.group(2))
        if 1 <= month <= 12 and 1 <= day <= 31:
            year = match.group(3)
            if year and len(year) == 2:
                year = "20" + year
            return _explicit(today, day, month, year), None
    return _dateparser_day(text, today), None


def _next_day_of_month(today: date, day: int) -> date | None:
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def _explicit(today: date, day: int, month: int, year: str | None) -> date | None:
    try:
        if year:
            return date(int(year), month, day)
        candidate = date(today.year, month, day)
        return candidate if candidate >= today else date(today.year + 1, month, day)
    except ValueError:
        return None


def _dateparser_day(text: str, today: date) -> date | None:
    """dateparser for the rest, only when the text looks like a date (a digit or a month name)."""
    if not re.search(rf"\d|\b({_MON})\b", text):
        return None
    import dateparser  # slow to import; only needed here

    base = datetime(today.year, today.month, today.day, 12, 0)
    # Strip the time part: we read times ourselves.
    cleaned = re.sub(rf"\b(jam|pukul|pkl)\s*{_HOUR}([.:]\d{{2}})?\s*(pagi|siang|sore|malam)?", " ", text)
    try:
        parsed = dateparser.parse(
            cleaned,
            languages=["id", "en"],
            settings={"RELATIVE_BASE": base, "PREFER_DATES_FROM": "future", "STRICT_PARSING": False},
        )
    except Exception:  # noqa: BLE001 - a parser hiccup is "no date", never an error to the customer
        return None
    if parsed is None or parsed.date() < today:
        return None
    return parsed.date()


def _parse_time(text: str) -> tuple[int | None, int, str | None]:
    """(hour 0-23, minute, period): the hour is None when only a part of the day was named."""
    period = None
    for word in re.findall(r"\b(pagi|siang|sore|malam|morning|afternoon|evening|night)\b", text):
        period = _PERIOD_ALIASES.get(word, word)
    hour: int | None = None
    minute, suffix = 0, None
    if match := re.search(rf"\bsetengah\s*{_HOUR}\b", text):  # "setengah 3" = 2:30
        hour, minute = _number(match.group(1)) - 1, 30
    elif match := re.search(rf"\b(?:jam|pukul|pkl\.?)\s*{_HOUR}(?:\s*[.:]\s*(\d{{2}}))?(?:\s*(am|pm))?\b", text):
        hour, minute, suffix = _number(match.group(1)), int(match.group(2) or 0), match.group(3)
    elif match := re.search(r"\b(\d{1,2})[.:](\d{2})\s*(am|pm)?\b", text):  # "14:00", "14.30"
        hour, minute, suffix = int(match.group(1)), int(match.group(2)), match.group(3)
    elif match := re.search(r"\b(\d{1,2})\s*(am|pm)\b", text):
        hour, suffix = int(match.group(1)), match.group(2)
    if hour is None or hour > 23 or minute > 59:
        return None, 0, period
    if suffix == "pm" and hour < 12:
        hour += 12
    elif suffix == "am" and hour == 12:
        hour = 0
    elif suffix is None and hour <= 12:
        if period == "siang" and hour < 11:
            hour += 12  # "jam 2 siang" = 14:00
        elif period in ("sore", "malam") and hour < 12:
            hour += 12
        elif period is None and hour < 7:
            hour += 12  # "jam 2" for an office appointment means 14:00
    return hour, minute, period


def parse_when(text: str, now: datetime, tz: ZoneInfo = JAKARTA) -> When:
    """Everything ``text`` says about a day and a time, resolved against ``now`` in ``tz``."""
    norm = normalize(text)
    today = local_now(now, tz).date()
    day, week_offset = _parse_day(norm, today)
    hour, minute, period = _parse_time(norm)
    return When(day=day, hour=hour, minute=minute, period=None if hour is not None else period, week_offset=week_offset)


def in_period(local: datetime, period: str) -> bool:
    start, end = PERIODS[period]
    return start <= local.hour < end


def format_day(d: date) -> str:
    """Senin, 9 Februari 2026"""
    return f"{DAY_NAMES[d.weekday()]}, {d.day} {MONTH_NAMES[d.month - 1]} {d.year}"


def format_when(at: datetime, tz: ZoneInfo = JAKARTA) -> str:
    """Senin, 9 Februari 2026 pukul 14:00 WIB (an instant, shown in the business zone)."""
    local = at.astimezone(tz)
    return f"{format_day(local.date())} pukul {local:%H:%M} {zone_label(tz)}"


def zone_label(tz: ZoneInfo) -> str:
    return {"Asia/Jakarta": "WIB", "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT"}.get(str(tz.key), str(tz.key))
