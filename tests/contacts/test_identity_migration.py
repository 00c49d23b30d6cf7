"""Migration 0004 on a database with data: the WhatsApp user ids ingest kept in
``attributes.whatsapp_user_id`` move to the new column (one contact per id and workspace), phones
become optional, and SQLite's contact search (FTS5 keyed by rowid, kept by triggers) still works."""

from __future__ import annotations

import json

from sqlalchemy import text

from kabar.db.migrate import downgrade, upgrade
from tests.conftest import create_database
from tests.foundation.test_migrations import on_database

NOW = "2026-12-01 10:00:00"


def seed(conn) -> None:  # noqa: ANN001
    # Literals only: the same SQL text on both backends (no driver-specific parameter types).
    conn.execute(text(f"INSERT INTO users (id, email, name, is_active, created_at, updated_at) VALUES ('u1', 'o@contoh.id', 'O', true, '{NOW}', '{NOW}')"))
    conn.execute(text(f"INSERT INTO workspaces (id, name, slug, owner_id, created_at, updated_at) VALUES ('w1', 'W', 'w', 'u1', '{NOW}', '{NOW}')"))
    rows = [
        ("c1", "+6281200000001", {"whatsapp_user_id": "ID.111", "kota": "Bandung"}, "siti", "2026-12-01 10:00:01"),
        ("c2", "+6281200000002", {"whatsapp_user_id": "ID.111"}, "siti kedua", "2026-12-01 10:00:02"),  # same id: keeps the attribute
        ("c3", "+6281200000003", {}, "budi", "2026-12-01 10:00:03"),
    ]
    for contact_id, phone, attributes, search, created in rows:
        conn.execute(text(
            "INSERT INTO contacts (id, workspace_id, phone_e164, phone_raw, attributes, search_text, created_at, updated_at) "
            f"VALUES ('{contact_id}', 'w1', '{phone}', '{phone}', '{json.dumps(attributes)}', '{search}', '{created}', '{created}')"
        ))
    conn.commit()


def read(conn) -> dict[str, tuple]:  # noqa: ANN001
    rows = conn.execute(text("SELECT id, whatsapp_user_id, attributes FROM contacts ORDER BY id")).all()
    return {r.id: (r.whatsapp_user_id, r.attributes if isinstance(r.attributes, dict) else json.loads(r.attributes)) for r in rows}


def test_0004_moves_user_ids_and_keeps_search(backend, tmp_path):
    url = create_database(backend, tmp_path, "identities", migrate=False)
    upgrade(url, "0003")
    on_database(url, seed)
    upgrade(url, "0004")
    assert on_database(url, read) == {
        "c1": ("ID.111", {"kota": "Bandung"}),
        "c2": (None, {"whatsapp_user_id": "ID.111"}),
        "c3": (None, {}),
    }

    def id_only_and_search(conn) -> list[str]:  # noqa: ANN001
        conn.execute(text("INSERT INTO contacts (id, workspace_id, whatsapp_user_id, username, search_text, created_at, updated_at) "
                          f"VALUES ('c4', 'w1', 'ID.444', 'tokobaju', '@tokobaju', '{NOW}', '{NOW}')"))
        conn.commit()
        if conn.dialect.name == "sqlite":  # the FTS index still follows the rows (same rowids, same triggers)
            sql = "SELECT c.id FROM contacts c WHERE c.rowid IN (SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH '\"siti\"') ORDER BY c.id"
        else:
            sql = "SELECT id FROM contacts WHERE search_text LIKE '%siti%' ORDER BY id"
        return [row.id for row in conn.execute(text(sql)).all()]

    assert on_database(url, id_only_and_search) == ["c1", "c2"]
    downgrade(url, "0003")
    # The id-only contact cannot exist without the columns; the others' ids go back to attributes.
    after = on_database(url, lambda conn: conn.execute(text("SELECT id, attributes FROM contacts ORDER BY id")).all())
    assert [row.id for row in after] == ["c1", "c2", "c3"]
    attributes = after[0].attributes if isinstance(after[0].attributes, dict) else json.loads(after[0].attributes)
    assert attributes == {"kota": "Bandung", "whatsapp_user_id": "ID.111"}
