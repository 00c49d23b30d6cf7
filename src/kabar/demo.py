"""Demo data: a workspace a new user can log into and click around in.

Idempotent: running it again keeps the data and resets the demo login's password.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update

from kabar.auth import repository as auth_repo
from kabar.auth.service import create_user
from kabar.contacts.service import search_text_for
from kabar.crypto import hash_password
from kabar.db import tables as t
from kabar.db.uow import UnitOfWork
from kabar.ids import new_id
from kabar.workspaces.service import create_workspace

DEMO_EMAIL = "owner@demo.kabar.id"
DEMO_AGENT_EMAIL = "agent@demo.kabar.id"
DEMO_SLUG = "demo"

FIRST = ["Budi", "Siti", "Agus", "Dewi", "Rina", "Andi", "Putri", "Joko", "Ayu", "Rizky", "Nur", "Fajar", "Indah", "Hendra", "Wulan", "Dimas", "Sari", "Bayu", "Maya", "Yusuf"]
LAST = ["Santoso", "Wijaya", "Pratama", "Lestari", "Hidayat", "Saputra", "Kusuma", "Nugroho", "Permata", "Siregar", "Nasution", "Halim"]
INBOUND = [
    "Halo kak, mau tanya soal program studi ke Australia",
    "Biayanya berapa ya kak?",
    "Saya lulusan S1 tahun lalu, IELTS 6.5",
    "Bisa konsultasi hari Sabtu?",
    "Terima kasih infonya 🙏",
    "Kak, syarat visanya apa saja?",
    "Apakah ada beasiswa untuk S2?",
    "Saya mau daftar intake Februari",
    "Dokumen apa saja yang perlu disiapkan?",
    "Oke kak, saya kirim CV nya ya",
]
OUTBOUND = [
    "Halo! Terima kasih sudah menghubungi kami 😊",
    "Untuk program tersebut biayanya mulai Rp 350 juta per tahun.",
    "Boleh kami tahu rencana berangkat tahun berapa?",
    "Siap kak, jadwal konsultasi kami kirimkan ya.",
    "Dokumen yang dibutuhkan: paspor, CV, transkrip, dan sertifikat bahasa Inggris.",
]
TAGS = ["australia", "uk", "canada", "beasiswa", "s2", "s1", "vip", "webinar"]
STATUSES = ["prospect", "prospect", "prospect", "hot_lead", "cold_lead", "client", "student"]


def demo_password() -> str:
    return os.environ.get("KABAR_DEMO_PASSWORD") or "kabar-demo-2026"


def _ensure_user(uow: UnitOfWork, email: str, name: str, password: str) -> str:
    user = auth_repo.user_by_email(uow.conn, email)
    if user is None:
        return create_user(uow, email=email, password=password, name=name)
    uow.conn.execute(update(t.users).where(t.users.c.id == user.id).values(password_hash=hash_password(password)))
    return user.id


def _seed(uow: UnitOfWork, contacts: int, password: str) -> dict[str, Any]:
    conn = uow.conn
    owner_id = _ensure_user(uow, DEMO_EMAIL, "Demo Owner", password)
    agent_id = _ensure_user(uow, DEMO_AGENT_EMAIL, "Demo Agent", password)
    existing = conn.execute(select(t.workspaces).where(t.workspaces.c.slug == DEMO_SLUG)).first()
    if existing is not None:
        count = conn.execute(select(t.contacts.c.id).where(t.contacts.c.workspace_id == existing.id)).all()
        return {"workspace_id": existing.id, "workspace_name": existing.name, "contacts": len(count), "created": False}
    ws = create_workspace(uow, owner_id=owner_id, name="Kabar Demo Consulting", slug=DEMO_SLUG)
    conn.execute(insert(t.members).values(workspace_id=ws.id, user_id=agent_id, role="member", settings={}, created_at=uow.now))
    rng = random.Random(2026)
    contact_rows, conversation_rows, message_rows = [], [], []
    for i in range(contacts):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        phone = f"+62812{10000000 + i:08d}"
        started = uow.now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 1440))
        contact_id, conversation_id = new_id(), new_id()
        tags = sorted(set(rng.sample(TAGS, rng.randint(0, 3))))
        assignee = rng.choice([None, None, owner_id, agent_id])
        n_messages = rng.randint(2, 12)
        at = started
        last_inbound = None
        preview = ""
        for m in range(n_messages):
            inbound = m % 2 == 0 or rng.random() < 0.3
            text = rng.choice(INBOUND if inbound else OUTBOUND)
            at = at + timedelta(minutes=rng.randint(1, 240))
            if at > uow.now:
                at = uow.now - timedelta(seconds=n_messages - m)
            message_rows.append(
                {
                    "id": new_id(),
                    "workspace_id": ws.id,
                    "conversation_id": conversation_id,
                    "contact_id": contact_id,
                    "direction": "inbound" if inbound else "outbound",
                    "sender_type": "contact" if inbound else "user",
                    "sender_id": None if inbound else owner_id,
                    "type": "text",
                    "text": text,
                    "status": "received" if inbound else "read",
                    "provider_message_id": f"wamid.DEMO{i:05d}{m:03d}",
                    "reactions": [],
                    "metadata": {},
                    "created_at": at,
                    "updated_at": at,
                }
            )
            if inbound:
                last_inbound = at
            preview = text[:200]
        display_name = name if rng.random() < 0.8 else None
        profile_name = name.split()[0]
        email = f"{name.lower().replace(' ', '.')}{i}@contoh.id" if rng.random() < 0.5 else None
        contact_rows.append(
            {
                "id": contact_id,
                "workspace_id": ws.id,
                "phone_e164": phone,
                "phone_raw": phone,
                "name": display_name,
                "profile_name": profile_name,
                "email": email,
                "tags": tags,
                "attributes": {},
                "lead_status": rng.choice(STATUSES),
                "lead_score": rng.randint(0, 100),
                "assignee_id": assignee,
                "source": "whatsapp",
                "first_contact_at": started,
                "last_interaction_at": at,
                "search_text": search_text_for(name=display_name, profile_name=profile_name, email=email, phone_e164=phone),
                "created_at": started,
                "updated_at": at,
            }
        )
        unread = rng.choice([0, 0, 0, 1, 2, 3])
        conversation_rows.append(
            {
                "id": conversation_id,
                "workspace_id": ws.id,
                "contact_id": contact_id,
                "status": rng.choice(["open", "open", "open", "pending", "closed"]),
                "assignee_id": assignee,
                "unread_count": unread,
                "last_message_at": at,
                "last_message_preview": preview,
                "last_inbound_at": last_inbound,
                "ai_paused": False,
                "created_at": started,
                "updated_at": at,
            }
        )
    conn.execute(insert(t.contacts), contact_rows)
    conn.execute(insert(t.conversations), conversation_rows)
    conn.execute(insert(t.messages), message_rows)
    uow.emit(ws.id, "workspace.seeded", {"contacts": contacts, "messages": len(message_rows)})
    for hook in SEED_HOOKS:
        hook(uow, ws.id)
    return {"workspace_id": ws.id, "workspace_name": ws.name, "contacts": contacts, "created": True}


# Domains add demo setup here (the fake WhatsApp channel, ARI config): ``hook(uow, workspace_id)``.
SEED_HOOKS: list[Any] = []


async def seed_demo(runtime: Any, *, contacts: int = 300) -> dict[str, Any]:
    password = demo_password()
    result = await runtime.db.transaction(_seed, contacts, password)
    return {**result, "email": DEMO_EMAIL, "agent_email": DEMO_AGENT_EMAIL, "password": password}
