"""CSV: template, import preview and commit, deduplication, export, formula neutralisation,
round trip, and the `kabar contacts import` command."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from kabar.contacts import csv_io
from kabar.db import tables as t
from tests.contacts.helpers import create_contact, events_of, rows
from tests.helpers import assert_problem


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


async def _import(client, tenant, data: bytes, *, dry_run: bool, caller=None):
    response = await client.post(
        f"{tenant.base}/contacts/import",
        params={"dry_run": str(dry_run).lower()},
        files={"file": ("contacts.csv", data, "text/csv")},
        headers=(caller or tenant.owner).headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _table(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


async def _contacts(client, ws):
    return await rows(client, t.contacts, t.contacts.c.workspace_id == ws)


async def test_template(client):
    response = await client.get("/v1/contacts/import-template.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = _table(response.text)
    assert list(table[0]) == ["phone", "name", "email", "tags", "lead_status", "lead_score", "assignee_email", "source", "attributes"]
    assert table[0]["phone"] == "0812-3456-7890"


async def test_dry_run_then_commit_with_dedup_and_errors(client, tenant):
    existing = await create_contact(tenant, phone="+6281200000001", name="Lama", tags=["old"])
    member = await tenant.add_user("member")
    data = _csv(
        "Phone,Name,Email,Tags,Lead Status,Lead Score,Assignee Email",
        "0812-0000-0002,Budi,budi@contoh.id,\"vip, UK\",hot_lead,80,",
        "+62 812 0000 0002,Budi Dua,,,,,",  # the same person as the row above
        "6281200000002,Budi Tiga,,,,,",  # and again
        "081200000001,,,new-tag,,,",  # matches the existing contact
        f"081200000003,Sari,,,,,{member.email}",
        "abc,Nobody,,,,,",
        "081200000004,Bad,not-mail,,warmish,300,stranger@x.id",
        ",No phone,,,,,",
        ",,,,,,",  # blank: not a row
    )
    preview = await _import(client, tenant, data, dry_run=True)
    assert preview["dry_run"] is True
    assert (preview["total_rows"], preview["valid_rows"], preview["invalid_rows"], preview["duplicates_in_file"]) == (8, 3, 3, 2)
    assert (preview["created"], preview["updated"], preview["unchanged"]) == (2, 1, 0)
    statuses = [(r["row"], r["line"], r["phone"], r["status"]) for r in preview["rows"]]
    assert statuses == [
        (1, 2, "+6281200000002", "create"),
        (2, 3, "+6281200000002", "duplicate"),
        (3, 4, "+6281200000002", "duplicate"),
        (4, 5, "+6281200000001", "update"),
        (5, 6, "+6281200000003", "create"),
        (6, 7, None, "invalid"),
        (7, 8, "+6281200000004", "invalid"),
        (8, 9, None, "invalid"),
    ]
    assert preview["rows"][3]["contact_id"] == existing["id"] and preview["rows"][3]["changes"] == ["tags"]
    assert {e["field"] for e in preview["rows"][6]["errors"]} == {"email", "lead_status", "lead_score", "assignee_email"}
    assert preview["rows"][7]["errors"] == [{"field": "phone", "message": "is required"}]
    assert len(await _contacts(client, tenant.ws)) == 1  # a dry run writes nothing

    result = await _import(client, tenant, data, dry_run=False)
    assert result["dry_run"] is False
    assert (result["created"], result["updated"], result["invalid_rows"], result["duplicates_in_file"]) == (2, 1, 3, 2)
    by_phone = {c.phone_e164: c for c in await _contacts(client, tenant.ws)}
    assert set(by_phone) == {"+6281200000001", "+6281200000002", "+6281200000003"}
    budi = by_phone["+6281200000002"]
    assert (budi.name, budi.email, budi.tags, budi.lead_status, budi.lead_score, budi.source) == (
        "Budi", "budi@contoh.id", ["vip", "uk"], "hot_lead", 80, "import"
    )
    assert budi.phone_raw == "0812-0000-0002"
    assert by_phone["+6281200000001"].tags == ["old", "new-tag"] and by_phone["+6281200000001"].name == "Lama"
    assert by_phone["+6281200000003"].assignee_id == member.user_id
    created = await events_of(client, tenant.ws, "contact.created")
    assert {e.contact_id for e in created} >= {budi.id, by_phone["+6281200000003"].id}
    assert len(await events_of(client, tenant.ws, "contact.updated")) == 1
    # The imported contacts are searchable.
    found = (await client.get(f"{tenant.base}/contacts", params={"q": "budi"}, headers=tenant.owner.headers)).json()["data"]
    assert [c["id"] for c in found] == [budi.id]

    again = await _import(client, tenant, data, dry_run=False)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 3, 3)


async def test_semicolons_legacy_statuses_and_bad_files(client, tenant):
    data = "nama;no_hp;status\nDewi;0813-1111-2222;warm\nAgus;0813-1111-3333;converted\n".encode("cp1252")
    result = await _import(client, tenant, data, dry_run=False)
    assert result["created"] == 2
    statuses = {c.name: c.lead_status for c in await _contacts(client, tenant.ws)}
    assert statuses == {"Dewi": "prospect", "Agus": "client"}

    no_phone = await client.post(
        f"{tenant.base}/contacts/import", files={"file": ("x.csv", b"name,email\nA,a@b.c\n", "text/csv")}, headers=tenant.owner.headers
    )
    assert assert_problem(no_phone, 422)["errors"][0]["field"] == "file"
    empty = await client.post(f"{tenant.base}/contacts/import", files={"file": ("x.csv", b"", "text/csv")}, headers=tenant.owner.headers)
    assert_problem(empty, 422)
    missing = await client.post(f"{tenant.base}/contacts/import", files={"other": ("x.csv", b"phone\n", "text/csv")}, headers=tenant.owner.headers)
    assert_problem(missing, 422)


async def test_export_neutralises_formulas_and_round_trips(client, tenant):
    admin = await tenant.add_user("admin")
    await create_contact(tenant, phone="081300000001", name="=HYPERLINK(\"http://evil\",\"x\")", email="a@b.co", tags=["-vip", "uk"], assignee_id=admin.user_id, attributes={"k": "v"})
    await create_contact(tenant, phone="+14155552671", name="@SUM(1+1)", lead_status="client", lead_score=12)
    await create_contact(tenant, phone="081300000003", name="-2+3", source="webinar")
    await create_contact(tenant, phone="081300000004", name="Plain, with comma \"quoted\"")

    response = await client.get(f"{tenant.base}/contacts/export.csv", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv") and "attachment" in response.headers["content-disposition"]
    table = _table(response.text)
    assert [r["name"] for r in table] == ["Plain, with comma \"quoted\"", "'-2+3", "'@SUM(1+1)", "'=HYPERLINK(\"http://evil\",\"x\")"]
    assert table[3]["phone"] == "'+6281300000001" and table[3]["tags"] == "'-vip, uk"
    assert table[3]["assignee_email"] == admin.email and table[3]["attributes"] == '{"k":"v"}'
    assert table[2]["lead_status"] == "client" and table[2]["lead_score"] == "12"
    for row in table:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell

    before = {c.id: c._asdict() for c in await _contacts(client, tenant.ws)}
    preview = await _import(client, tenant, response.content, dry_run=True)
    assert (preview["created"], preview["updated"], preview["unchanged"], preview["invalid_rows"]) == (0, 4, 4, 0), preview
    result = await _import(client, tenant, response.content, dry_run=False)
    assert (result["created"], result["unchanged"]) == (0, 4)
    after = {c.id: c._asdict() for c in await _contacts(client, tenant.ws)}
    assert after == before  # nothing new, nothing changed

    filtered = _table((await client.get(f"{tenant.base}/contacts/export.csv", params={"lead_status": "client"}, headers=admin.headers)).text)
    assert [r["phone"] for r in filtered] == ["'+14155552671"]


@pytest.mark.parametrize("cell", ["=1+1", "+62812", "-5", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_quoted_and_restored(cell):
    written = csv_io.encode([[cell, "plain"]])
    assert written.startswith("'" + cell[0]) or written.startswith("\"'" + cell[0])
    [read] = list(csv.reader(io.StringIO(written)))
    assert read[0] == "'" + cell and read[1] == "plain"
    assert csv_io.restore(read[0]) == cell
    assert csv_io.restore("'quoted on purpose") == "'quoted on purpose"


async def test_export_streams_in_batches(client, tenant):
    # More rows than one export batch, written straight into the table.
    from kabar.contacts import service

    assert service.EXPORT_BATCH == 1000
    data = _csv("phone,name", *(f"0814{i:08d},Orang {i}" for i in range(2100)))
    assert (await _import(client, tenant, data, dry_run=False))["created"] == 2100
    response = await client.get(f"{tenant.base}/contacts/export.csv", headers=tenant.owner.headers)
    table = _table(response.text)
    assert len(table) == 2100 and len({r["id"] for r in table}) == 2100


async def test_import_needs_permission_and_api_key_may(client, tenant):
    key = await tenant.api_key()
    result = await _import(client, tenant, _csv("phone", "081500000001"), dry_run=False, caller=key)
    assert result["created"] == 1
    admin = await tenant.add_user("admin")
    assert (await _import(client, tenant, _csv("phone", "081500000002"), dry_run=False, caller=admin))["created"] == 1
    assert_problem(await client.get(f"{tenant.base}/contacts/export.csv", headers=key.headers), 403)


def test_cli_import(tenant, settings, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_bytes(_csv("phone,name", "0816-0000-0001,Satu", "+62816 0000 0001,Satu lagi", "0816-0000-0002,Dua", "bad,Tiga"))
    env = {**os.environ, "KABAR_DATABASE_URL": settings.database_url, "KABAR_DATA_DIR": str(tmp_path)}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kabar", "contacts", "import", str(path), "--workspace", tenant.ws, *extra],
            env=env, capture_output=True, text=True, timeout=120,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create 2" in dry.stdout and "1 duplicate" in dry.stdout and "1 invalid" in dry.stdout, dry.stdout
    done = run()
    assert done.returncode == 0, done.stderr
    assert "created 2" in done.stdout, done.stdout
    assert "row 4" in done.stdout  # invalid rows are listed
    again = run()
    assert "created 0" in again.stdout and "updated 2" in again.stdout, again.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "kabar", "contacts", "import", str(path), "--workspace", "no-such-workspace"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert unknown.returncode != 0 and "no-such-workspace" in unknown.stderr
