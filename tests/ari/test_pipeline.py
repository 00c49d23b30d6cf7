"""One ARI turn as a pure function, "now" fixed (Wednesday 4 February 2026, 10:00 WIB)."""

from __future__ import annotations

from datetime import UTC, datetime

from kabar.ari import rules
from kabar.ari.booking import Pattern, available_slots
from kabar.ari.pipeline import Config, TurnInput, decide

NOW = datetime(2026, 2, 4, 3, 0, tzinfo=UTC)
SLOTS = available_slots([Pattern("mon", 0, "13:00", "16:00")], set(), NOW)
KNOWLEDGE = [{"title": "Beasiswa LPDP", "content": "LPDP membiayai S2 penuh untuk WNI.", "category": "Beasiswa", "is_active": True}]
WARM = {"name": "Rina", "email": "rina@contoh.id", "country": "Australia", "budget": "200 juta", "timeline": "tahun depan", "english_level": "intermediate"}
NO_DOCS = {"passport": False, "cv": False, "english_test": False, "transcript": False}


def turn(state: str, text: str, context: dict | None = None, answers: dict | None = None, **kw):
    return decide(TurnInput(now=NOW, state=state, context=context or {}, messages_in_state=0, texts=[text], answers=answers or {}, slots=SLOTS, **kw))


def test_greeting_uses_the_time_of_day_in_jakarta_and_asks_one_question():
    d = turn("greeting", "halo")
    assert d.state == "qualifying" and d.path == ["qualifying"]
    (reply,) = d.replies
    assert reply.text.startswith("Selamat pagi, kak! Saya ARI") and reply.text.endswith(rules.QUESTIONS["name"])
    assert reply.text.count("?") == 1
    assert d.context["pending"] == "name"


def test_a_question_is_answered_from_the_knowledge_base_then_the_pending_question_repeated():
    d = turn("qualifying", "apakah ada beasiswa LPDP?", {"pending": "name", "asked": {"name": 1}}, knowledge=KNOWLEDGE)
    (reply,) = d.replies
    assert reply.text.startswith("LPDP membiayai S2 penuh") and reply.text.endswith(rules.QUESTIONS["name"])


def test_a_question_without_an_answer_is_asked_twice_then_skipped():
    d = turn("qualifying", "hmm", {"pending": "name", "asked": {"name": 2}})
    assert d.context["skipped"] == ["name"] and d.context["pending"] == "country"


def test_warm_lead_is_nurtured_and_can_ask_for_a_consultation():
    context = {"documents": NO_DOCS}
    d = turn("qualifying", "oke", context, WARM)
    assert d.score.temperature == "warm" and d.state == "scoring" and d.routing.action == "continue_nurturing"
    assert "konsultasi" in d.replies[0].text
    d = turn("scoring", "saya mau konsultasi", d.context, WARM)
    assert d.state == "scheduling" and d.path == ["booking", "scheduling"]
    assert d.replies[0].text.startswith("Jadwal konsultasi yang tersedia: Senin 9/2 (3 jadwal)")


def test_declining_the_offer_hands_the_hot_lead_to_a_consultant():
    d = turn("booking", "tidak dulu kak", {"pending": "booking_offer"}, WARM)
    assert d.state == "handoff" and d.handoff.reason == "hot_lead" and d.handoff.tags == ["follow-up"]
    assert d.replies[0].text == rules.HANDOFF_MESSAGES["hot_lead"]


def test_scheduling_by_day_then_number_then_yes():
    d = turn("scheduling", "hari senin", {"step": "asking_day"})
    assert d.context["step"] == "showing_slots"
    assert "1. 13:00 (60 menit)\n2. 14:00 (60 menit)\n3. 15:00 (60 menit)" in d.replies[0].text
    d = turn("scheduling", "nomor 3", d.context)
    assert d.context["step"] == "confirming" and "Senin, 9 Februari 2026 pukul 15:00 WIB" in d.replies[0].text
    d = turn("scheduling", "ya", d.context)
    assert d.book is not None and d.book.start == datetime(2026, 2, 9, 8, 0, tzinfo=UTC)
    assert d.handoff.reason == "appointment_booked" and d.handoff.due_at == d.book.start and d.handoff.tags == ["1on1"]
    assert "Jadwal konsultasi: Senin, 9 Februari 2026 pukul 15:00 WIB" in d.handoff.summary


def test_scheduling_a_time_that_is_not_free_shows_the_day():
    d = turn("scheduling", "senin jam 9 pagi", {"step": "asking_day"})
    assert d.context["step"] == "showing_slots" and d.replies[0].text.startswith("Maaf kak, jam itu tidak tersedia.")
    d = turn("scheduling", "yang sore aja", d.context)
    assert d.context["step"] == "confirming" and "pukul 15:00 WIB" in d.replies[0].text


def test_the_workspace_greeting_template_is_used():
    config = Config(bot_name="Rina", greeting_template="Halo {name}, selamat {waktu}! Saya {bot_name} dari Agen Studi.")
    d = turn("greeting", "halo", config=config)
    assert d.replies[0].text.startswith("Halo kak, selamat pagi! Saya Rina dari Agen Studi.")
