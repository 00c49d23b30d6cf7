"""The contacts CSV format: template, reading an uploaded file, writing export rows.

Cells a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR)
are written with a leading ``'`` (OWASP "CSV injection"); reading strips that quote again, so an
exported file imports back unchanged. Files are UTF-8 with a BOM (Excel needs it to show
non-ASCII names); reading also accepts Windows-1252 and the ``;`` separator Excel writes in
Indonesian and other comma-decimal locales.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kabar.errors import invalid

BOM = "\ufeff"
# What an import understands, in template order (export writes these first, then read-only ones).
IMPORT_COLUMNS = ["phone", "name", "email", "tags", "lead_status", "lead_score", "assignee_email", "source", "attributes"]
EXPORT_COLUMNS = [*IMPORT_COLUMNS, "profile_name", "whatsapp_user_id", "username", "id", "created_at", "updated_at"]
NOTE_COLUMNS = ["contact_name", "contact_phone", "content", "note_type", "due_at", "completed_at", "author_email", "created_at", "contact_id", "note_id"]
TEMPLATE_EXAMPLE = ["0812-3456-7890", "Budi Santoso", "budi@contoh.id", "australia, s2", "prospect", "40", "", "", ""]
# Header names people actually use, mapped to ours (after trimming, lower-casing, spaces → _).
HEADER_ALIASES = {
    "phone_number": "phone",
    "whatsapp": "phone",
    "wa": "phone",
    "no_hp": "phone",
    "nomor_hp": "phone",
    "nomor": "phone",
    "telepon": "phone",
    "hp": "phone",
    "nama": "name",
    "full_name": "name",
    "e-mail": "email",
    "status": "lead_status",
    "score": "lead_score",
    "skor": "lead_score",
    "assignee": "assignee_email",
    "assigned_to": "assignee_email",
    "tag": "tags",
}
MAX_ROWS = 100_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def restore(value: str) -> str:
    """Undo ``neutralise``: a quote we (or a careful user) put before a formula character."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def encode(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([neutralise(_cell(value)) for value in row])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return str(value)


def template() -> str:
    return BOM + encode([IMPORT_COLUMNS, TEMPLATE_EXAMPLE])


def export_header() -> str:
    return BOM + encode([EXPORT_COLUMNS])


def export_rows(rows: Iterable[Any]) -> str:
    return encode(
        [
            row.phone_e164,
            row.name,
            row.email,
            list(row.tags or []),
            row.lead_status,
            row.lead_score,
            row.assignee_email,
            row.source,
            dict(row.attributes or {}),
            row.profile_name,
            row.whatsapp_user_id,
            row.username,
            row.id,
            row.created_at,
            row.updated_at,
        ]
        for row in rows
    )


def notes_header() -> str:
    return BOM + encode([NOTE_COLUMNS])


def notes_rows(rows: Iterable[Any]) -> str:
    return encode(
        [
            row.contact_name or row.contact_phone,
            row.contact_phone,
            row.content,
            row.note_type,
            row.due_at,
            row.completed_at,
            row.author_email,
            row.created_at,
            row.contact_id,
            row.id,
        ]
        for row in rows
    )


# -- reading ----------------------------------------------------------------------------------


@dataclass(slots=True)
class CsvRow:
    row: int  # 1-based data row
    line: int  # line in the file (the header is line 1)
    values: dict[str, str]  # our column name → trimmed cell ("" when absent)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _header_name(raw: str) -> str:
    name = "_".join(raw.strip().lstrip(BOM).lower().split())
    return HEADER_ALIASES.get(name, name)


def read(data: bytes) -> list[CsvRow]:
    """Rows of an uploaded contacts CSV; 422 for a file that is not one."""
    text = _decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise invalid("file", "the file is empty") from None
    except csv.Error as exc:
        raise invalid("file", f"not a CSV file: {exc}") from exc
    columns = [_header_name(h) for h in header]
    if "phone" not in columns:
        raise invalid("file", f"the header has no phone column; expected columns: {', '.join(IMPORT_COLUMNS)}")
    rows: list[CsvRow] = []
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not rows
            values = {name: "" for name in IMPORT_COLUMNS}
            for name, cell in zip(columns, cells, strict=False):
                if name in values and not values[name]:
                    values[name] = restore(cell.strip())
            rows.append(CsvRow(row=len(rows) + 1, line=reader.line_num, values=values))
            if len(rows) > MAX_ROWS:
                raise invalid("file", f"at most {MAX_ROWS} rows per import; split the file")
    except csv.Error as exc:
        raise invalid("file", f"line {reader.line_num}: {exc}") from exc
    return rows
