"""ARI in the demo workspace: on, in rule-based mode (no model needed), with consultation slots,
knowledge entries and a few destinations, so a demo customer gets qualified and can book."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from kabar.db import tables as t
from kabar.db.uow import UnitOfWork
from kabar.ids import new_id

KNOWLEDGE = [
    ("Biaya", "Biaya kuliah di Australia", "Biaya kuliah S1 di Australia sekitar Rp300-500 juta per tahun, S2 sekitar Rp350-600 juta per tahun, belum termasuk biaya hidup sekitar Rp250 juta per tahun."),
    ("Beasiswa", "Beasiswa S2 luar negeri", "Ada beasiswa LPDP, Australia Awards, Chevening (Inggris), dan beasiswa kampus 10-50%. Syarat umumnya IPK minimal 3.0 dan IELTS 6.5."),
    ("Visa", "Syarat visa pelajar", "Visa pelajar butuh LoA dari kampus, paspor aktif, bukti dana, asuransi kesehatan, dan hasil tes bahasa Inggris."),
    ("Bahasa", "Tes IELTS dan TOEFL", "Sebagian besar kampus meminta IELTS 6.0-6.5 atau TOEFL iBT 80-90. Kami juga punya kelas persiapan IELTS."),
]
DESTINATIONS = [
    ("Australia", "Melbourne", "University of Melbourne", {"ielts_min": 6.5, "budget_min": 450_000_000, "budget_max": 650_000_000}, ["Business", "IT"], True),
    ("Australia", "Sydney", "UNSW Sydney", {"ielts_min": 6.5, "budget_min": 400_000_000, "budget_max": 600_000_000}, ["Engineering"], False),
    ("United Kingdom", "Manchester", "University of Manchester", {"ielts_min": 6.5, "budget_min": 420_000_000, "budget_max": 600_000_000}, ["Business"], False),
    ("Canada", "Toronto", "University of Toronto", {"ielts_min": 6.5, "budget_min": 500_000_000, "budget_max": 700_000_000}, ["Computer Science"], False),
]


def seed_demo_ari(uow: UnitOfWork, workspace_id: str) -> None:
    now = uow.now
    stamp: dict[str, Any] = {"workspace_id": workspace_id, "created_at": now, "updated_at": now}
    uow.conn.execute(
        insert(t.ari_configs).values(
            **stamp,
            enabled=True,
            bot_name="ARI",
            language="id",
            greeting_style="casual",
            tone={"supportive": True, "clear": True, "encouraging": True},
            community_link="https://chat.whatsapp.com/KabarDemoKomunitas",
            llm={},
            reply_delay_ms=1500,
            handoff_after_messages=10,
        )
    )
    slots = [
        {**stamp, "id": new_id(), "day_of_week": day, "start_time": start, "end_time": end, "duration_minutes": 60}
        for day in range(0, 5)
        for start, end in (("10:00", "12:00"), ("14:00", "16:00"))
    ]
    uow.conn.execute(insert(t.ari_slots), slots)
    uow.conn.execute(
        insert(t.ari_knowledge),
        [{**stamp, "id": new_id(), "category": c, "title": title, "content": content, "is_active": True} for c, title, content in KNOWLEDGE],
    )
    uow.conn.execute(
        insert(t.ari_destinations),
        [
            {**stamp, "id": new_id(), "country": country, "city": city, "university_name": name, "requirements": req, "programs": programs, "is_promoted": promoted, "priority": 0}
            for country, city, name, req, programs, promoted in DESTINATIONS
        ],
    )
    uow.emit(workspace_id, "ari.config_updated", {"enabled": True, "mode": "rules"})
