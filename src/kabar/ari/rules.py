"""What ARI says when it writes its own words: the rule-based receptionist's Indonesian copy, the
fixed messages of every mode (handoff, booking, fallback, reminders), and knowledge lookups.

Casual, polite Indonesian ("kak"), one or two sentences, one question at a time, no emoji.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kabar.ari.booking import Slot, days_summary, list_lines
from kabar.ari.dates import JAKARTA, format_day, format_when, zone_label
from kabar.ari.extract import DOCUMENT_LABELS, detect_country, normalize

QUESTIONS = {
    "name": "Boleh tahu nama lengkap kakak?",
    "country": "Kakak tertarik kuliah di negara mana? Misalnya Australia, Inggris, Kanada, atau Selandia Baru.",
    "timeline": "Rencananya mau berangkat kapan, kak? Tahun ini atau tahun depan?",
    "budget": "Kira-kira berapa budget kakak per tahun untuk biaya kuliah dan hidup?",
    "english_level": "Bagaimana kemampuan bahasa Inggris kakak? Kalau sudah pernah tes IELTS/TOEFL, skornya berapa?",
    "email": "Boleh minta alamat email aktif kakak? Nanti info lengkapnya kami kirim ke sana.",
    "activity": "Saat ini kakak sedang kuliah, bekerja, atau baru lulus?",
    "program": "Program apa yang kakak minati? Misalnya S1, S2, atau diploma, dan jurusannya apa?",
    "doc:passport": "Apakah kakak sudah punya paspor?",
    "doc:cv": "Apakah kakak sudah punya CV terbaru?",
    "doc:english_test": "Apakah kakak sudah punya sertifikat tes bahasa Inggris (IELTS/TOEFL)?",
    "doc:transcript": "Apakah transkrip nilai terakhir kakak sudah siap?",
}

NOT_UNDERSTOOD = "Maaf kak, saya belum menangkap jawabannya."
FALLBACK = "Mohon maaf kak, sedang ada kendala teknis di sistem kami. Konsultan kami akan segera membantu kakak ya."

HANDOFF_MESSAGES = {
    "hot_lead": "Baik kak, tidak masalah. Konsultan kami akan menghubungi kakak untuk membantu langkah selanjutnya ya.",
    "cold_lead": "Terima kasih atas infonya, kak. Konsultan kami akan menghubungi kakak lagi nanti untuk info selanjutnya.",
    "cold_lead_community_sent": "Konsultan kami akan follow up kakak nanti. Sementara itu, silakan bergabung dan bertanya di grup komunitas ya.",
    "customer_request": "Baik kak, saya sambungkan dengan konsultan kami. Mohon ditunggu sebentar ya.",
    "auto_handoff_stuck": "Terima kasih sudah menunggu, kak. Konsultan kami akan segera menghubungi kakak untuk membantu lebih lanjut.",
    "no_slots": "Saat ini jadwal konsultasi sedang penuh, kak. Konsultan kami akan menghubungi kakak untuk mengatur jadwal ya.",
    "llm_error": FALLBACK,
}
HANDOFF_LABELS = {
    "appointment_booked": "Janji konsultasi dibuat",
    "hot_lead": "Hot lead, perlu dihubungi konsultan",
    "cold_lead": "Cold lead, follow up nanti",
    "cold_lead_community_sent": "Cold lead, link komunitas dikirim",
    "customer_request": "Pelanggan minta bicara dengan konsultan",
    "auto_handoff_stuck": "ARI tidak bisa melanjutkan percakapan",
    "no_slots": "Tidak ada jadwal konsultasi kosong",
    "llm_error": "Gangguan teknis pada AI",
}
# Contact tags per handoff reason (original-system §6.10: 1on1, Community, Follow-up).
HANDOFF_TAGS = {"appointment_booked": ["1on1"], "cold_lead_community_sent": ["community"]}
DEFAULT_HANDOFF_TAGS = ["follow-up"]


def first_name(name: str | None) -> str:
    return (name or "").split()[0] if name and name.split() else ""


def greeting(bot_name: str, word: str, name: str | None = None, template: str | None = None) -> str:
    who = f"kak {first_name(name)}" if first_name(name) else "kak"
    if template:  # the workspace's own words; {name}, {bot_name} ({bot}) and {waktu} are filled in
        for key, value in (("{name}", who), ("{bot_name}", bot_name), ("{bot}", bot_name), ("{waktu}", word)):
            template = template.replace(key, value)
        return template.strip()
    return f"Selamat {word}, {who}! Saya {bot_name}, asisten virtual kami. Terima kasih sudah menghubungi kami."


def acknowledgement(name: str | None, fields: dict[str, str]) -> str:
    if "country" in fields and len(fields) == 1:
        return f"Wah, {fields['country']} pilihan yang bagus!"
    if "name" in fields:
        return f"Salam kenal, kak {first_name(fields['name'])}!"
    return "Baik, terima kasih infonya."


def booking_offer(name: str | None) -> str:
    who = f"kak {first_name(name)}" if first_name(name) else "kak"
    return (
        f"Terima kasih, datanya sudah lengkap, {who}. Profil kakak cocok untuk konsultasi 1-on-1 dengan konsultan kami "
        "untuk membahas pilihan kampus dan langkah pendaftarannya. Mau saya bantu jadwalkan?"
    )


def booking_reoffer() -> str:
    return "Mau saya bantu jadwalkan konsultasi 1-on-1 dengan konsultan kami, kak?"


def nurture(first_time: bool) -> str:
    if first_time:
        return (
            "Terima kasih, data kakak sudah kami catat. Kalau ada pertanyaan seputar kampus, biaya, atau beasiswa, "
            "silakan tanya ya. Kalau mau konsultasi langsung dengan konsultan kami, balas *konsultasi*."
        )
    return "Ada lagi yang ingin kakak tanyakan? Kalau mau konsultasi langsung dengan konsultan kami, balas *konsultasi*."


def ask_day(slots: list[Slot], tz: ZoneInfo = JAKARTA, prefix: str = "") -> str:
    return f"{prefix}Jadwal konsultasi yang tersedia: {days_summary(slots, tz)}. Kakak bisanya hari apa?".strip()


def show_day(day_slots: list[Slot], tz: ZoneInfo = JAKARTA, prefix: str = "") -> str:
    day = day_slots[0].local(tz).date()
    more = len(day_slots) - 5
    extra = f"\n…dan {more} jadwal lainnya." if more > 0 else ""
    return f"{prefix}Jadwal kosong hari {format_day(day)}:\n{list_lines(day_slots, tz)}{extra}\nSilakan pilih nomornya ya, kak."


def no_slots_on(day: date, slots: list[Slot], tz: ZoneInfo = JAKARTA) -> str:
    return ask_day(slots, tz, prefix=f"Maaf kak, hari {format_day(day)} tidak ada jadwal kosong. ")


def confirm_slot(slot: Slot, tz: ZoneInfo = JAKARTA) -> str:
    return (
        f"Jadi konsultasinya {format_when(slot.start, tz)} ({slot.duration_minutes} menit) ya, kak? "
        "Balas *ya* untuk konfirmasi, atau sebutkan hari/jam lain."
    )


def slot_taken(slots: list[Slot], tz: ZoneInfo = JAKARTA) -> str:
    return ask_day(slots, tz, prefix="Maaf kak, jadwal itu baru saja terisi. ")


def booked(slot: Slot, tz: ZoneInfo = JAKARTA) -> str:
    return (
        f"Siap, konsultasi kakak sudah terjadwal: {format_when(slot.start, tz)} ({slot.duration_minutes} menit). "
        "Link meeting akan kami kirim 1 jam sebelum jadwal. Sampai jumpa, kak!"
    )


def community_invite(link: str) -> str:
    return f"Kakak juga bisa bergabung di grup komunitas kami untuk info beasiswa, webinar, dan tips kuliah di luar negeri: {link}"


def reminder(at: datetime, duration: int, meeting_link: str | None, tz: ZoneInfo = JAKARTA) -> str:
    local = at.astimezone(tz)
    how = f"Link meeting: {meeting_link}" if meeting_link else "Konsultan kami akan menghubungi kakak."
    return f"Pengingat: konsultasi kakak dimulai 1 jam lagi, pukul {local:%H:%M} {zone_label(tz)} ({duration} menit). {how}"


# -- knowledge ----------------------------------------------------------------------------------

_STOPWORDS = set(
    "yang dan atau untuk dengan dari pada ini itu saya aku kamu kakak kak ada apa apakah berapa bagaimana gimana "
    "bisa boleh mau ingin tanya info mohon tolong juga sudah belum akan kalau jika kapan dimana mana saja aja "
    "dong deh nih tidak gak nggak the and for with what how about is are can".split()
)
UNIVERSITY_QUESTION = re.compile(
    r"\b(universitas|kampus|kuliah|perguruan tinggi|syarat|persyaratan|biaya|budget|program|jurusan|beasiswa|"
    r"scholarship|university|college|requirements?|cost|tuition|major|degree)\b"
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", normalize(text)) if len(w) >= 4 and w not in _STOPWORDS}


def match_knowledge(text: str, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The active knowledge entry whose title (or category) shares the most words with ``text``."""
    words = _words(text)
    best, best_score = None, 0
    for entry in entries:
        if not entry.get("is_active", True):
            continue
        title = _words(entry.get("title") or "") | _words(entry.get("category") or "")
        score = 2 * len(words & title) + len(words & _words(entry.get("content") or "")) * 0.25
        if words & title and score > best_score:
            best, best_score = entry, score
    return best


def knowledge_answer(text: str, entries: list[dict[str, Any]], destinations: list[dict[str, Any]], country: str | None) -> str | None:
    """A short answer from the workspace's knowledge (no-LLM mode), or None."""
    entry = match_knowledge(text, entries)
    if entry is not None:
        content = re.sub(r"\s+", " ", entry["content"]).strip()
        return content if len(content) <= 400 else content[:397].rsplit(" ", 1)[0] + "…"
    if not UNIVERSITY_QUESTION.search(normalize(text)):
        return None
    country = detect_country(text) or country
    rows = [d for d in destinations if country and d["country"].lower() == country.lower()][:3]
    if not rows:
        return None
    names = ", ".join(d["university_name"] + (f" ({d['city']})" if d.get("city") else "") for d in rows)
    return f"Beberapa pilihan kampus di {country}: {names}. Detail syarat dan biayanya akan dijelaskan konsultan kami."


def document_summary(documents: dict[str, bool | None]) -> str:
    marks = {True: "ada", False: "belum", None: "?"}
    return ", ".join(f"{label} {marks[documents.get(key)]}" for key, label in DOCUMENT_LABELS.items())
