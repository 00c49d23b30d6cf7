"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC instants in, timezone-aware UTC instants out, on both backends.

    SQLite has no timezone type; we store naive UTC there as SQLAlchemy's DATETIME text
    ("YYYY-MM-DD HH:MM:SS.ffffff", which sorts correctly). On SQLite, binding and reading go
    straight between that text and aware datetimes: the generic path (a regular expression, then
    ``replace(tzinfo=...)``) was the largest cost of reading a page of the inbox.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def bind_processor(self, dialect):  # type: ignore[no-untyped-def]
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(self, dialect, coltype):  # type: ignore[no-untyped-def]
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_instant


# The last datetime converted and its text: a write binds the same instant (its transaction's
# "now", a message's time) several times over, e.g. once per use in an UPDATE's CASE expressions.
_last_text: tuple[datetime | None, str | None] = (None, None)


def _sqlite_text(value: datetime | None) -> str | None:
    """An aware datetime as SQLite DATETIME text in UTC (the format SQLAlchemy's DATETIME writes)."""
    global _last_text
    if value is None:
        return None
    last = _last_text
    if value is last[0]:
        return last[1]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    # isoformat() of an aware UTC time ends in "+00:00": cut it off.
    text = value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]
    _last_text = (value, text)
    return text


def _sqlite_instant(value: str | None) -> datetime | None:
    """SQLite DATETIME text (naive UTC) as an aware datetime; the suffix is the fast way to UTC."""
    if value is None:
        return None
    return datetime.fromisoformat(value + "+00:00")


def utcnow() -> datetime:
    return datetime.now(UTC)
