"""What the LLM is told (original-system §6.5 and §6.12), built from the workspace's own data:
persona and tone, flow stages, knowledge entries, destinations, the lead's data and score, the
current state, and what this turn's reply must do.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kabar.ari.dates import JAKARTA, greeting_word
from kabar.ari.extract import DOCUMENT_LABELS, DOCUMENTS, FIELD_LABELS, FIELDS, detect_country
from kabar.ari.scoring import Score
from kabar.ari.state import LABELS

STYLES = {
    "formal": "Gunakan bahasa Indonesia yang sopan dan formal.",
    "professional": "Gunakan bahasa Indonesia yang profesional tapi tetap ramah.",
    "casual": "Gunakan bahasa Indonesia yang santai dan bersahabat.",
}
STATE_INSTRUCTIONS = {
    "greeting": "Sapa pelanggan dengan hangat dan tanyakan apa yang ingin diketahui.",
    "qualifying": "Kumpulkan informasi yang belum ada, SATU pertanyaan per pesan (negara, budget, waktu berangkat, bahasa Inggris, dokumen).",
    "scoring": "Jangan menawarkan konsultasi atau pembayaran dan jangan mengirim link booking. Jawab pertanyaan dengan baik; konsultan akan menindaklanjuti.",
    "booking": "Tawarkan konsultasi 1-on-1 dengan konsultan dan jelaskan manfaatnya secara singkat.",
    "scheduling": "Bantu memilih hari dan jam konsultasi, lalu ulangi pilihan untuk konfirmasi.",
    "handoff": "Jawab singkat; konsultan kami akan segera membantu.",
    "completed": "Ucapkan terima kasih dan ingatkan untuk memeriksa konfirmasi jadwal.",
}
HISTORY_TURNS = 10
MAX_KNOWLEDGE_CHARS = 6000


def format_destinations(rows: list[dict[str, Any]]) -> str:
    """Universities, grouped by country, promoted first (§6.12)."""
    if not rows:
        return "Belum ada data universitas."
    by_country: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (not r.get("is_promoted"), -int(r.get("priority") or 0))):
        by_country.setdefault(row["country"], []).append(row)
    out: list[str] = []
    for country, items in by_country.items():
        if len(by_country) > 1:
            out.append(f"{country}:")
        for row in items:
            req = row.get("requirements") or {}
            place = ", ".join(p for p in (row["university_name"], row.get("city"), row["country"]) if p)
            line = ("[PROMO] " if row.get("is_promoted") else "") + f"- {place}"
            line += f"; IELTS min {req['ielts_min']}" if req.get("ielts_min") else "; IELTS min tidak disebutkan"
            if req.get("budget_min") or req.get("budget_max"):
                low, high = (req.get("budget_min") or 0) / 1e6, (req.get("budget_max") or 0) / 1e6
                line += f"; biaya Rp{low:g}-Rp{high:g} juta/tahun"
            if req.get("deadline"):
                line += f"; deadline {req['deadline']}"
            if row.get("programs"):
                line += "; program: " + ", ".join(row["programs"])
            if row.get("notes"):
                line += f"; {row['notes']}"
            out.append(line)
    return "\n".join(out)


def destinations_for(text: str, country: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Destinations of the country the message names (whole words), else the lead's country."""
    wanted = detect_country(text) or country
    if not wanted:
        return []
    return [r for r in rows if r["country"].lower() == wanted.lower()]


def system_prompt(
    *,
    bot_name: str,
    greeting_style: str,
    tone: dict[str, Any],
    language: str = "id",
    now: datetime,
    tz: ZoneInfo = JAKARTA,
    name: str | None,
    answers: dict[str, str],
    documents: dict[str, bool | None],
    score: Score,
    state: str,
    instruction: str | None,
    flow_stages: list[dict[str, Any]],
    knowledge: list[dict[str, Any]],
    destinations: list[dict[str, Any]],
) -> str:
    word = greeting_word(now, tz)
    parts = [
        f"Kamu adalah {bot_name}, asisten AI untuk konsultan pendidikan luar negeri. {STYLES.get(greeting_style, STYLES['professional'])}",
        f"Sekarang waktu {word} ({now.astimezone(tz):%H:%M} WIB). Jika menyapa, gunakan \"Selamat {word}\".",
    ]
    if name:
        parts.append(f"Nama pelanggan: {name}.")
    known = [f"- {FIELD_LABELS.get(k, k.replace('_', ' ').title())}: {answers[k]}" for k in FIELDS if str(answers.get(k) or "").strip()]
    if known:
        parts.append("Data pelanggan (gunakan untuk personalisasi):\n" + "\n".join(known))
    docs = [f"{DOCUMENT_LABELS[k]}: {'ada' if documents.get(k) else 'belum' if documents.get(k) is False else 'belum ditanyakan'}" for k in DOCUMENTS]
    parts.append("Dokumen: " + ", ".join(docs) + ".")
    parts.append(f"Lead Score: {score.total}/100 ({score.temperature}).")
    parts.append(f"Status Saat Ini: {state.upper()} ({LABELS.get(state, state)}). {STATE_INSTRUCTIONS.get(state, '')}")
    stages = [s for s in flow_stages if s.get("is_active", True)]
    if stages:
        lines = [f"{i}. {s['name']}: {s.get('goal') or ''}" + (f" (selesai jika: {s['exit_criteria']})" if s.get("exit_criteria") else "") for i, s in enumerate(stages, 1)]
        parts.append("Alur percakapan:\n" + "\n".join(lines))
    entries = [e for e in knowledge if e.get("is_active", True)]
    if entries:
        text, used = [], 0
        for entry in entries:
            item = f"### {entry['title']}\n{entry['content'].strip()}"
            if used + len(item) > MAX_KNOWLEDGE_CHARS:
                break
            text.append(item)
            used += len(item)
        parts.append("Informasi resmi (jawab hanya berdasarkan ini; jika tidak tahu, bilang akan dicek dulu):\n" + "\n\n".join(text))
    if destinations:
        parts.append("Data universitas:\n" + format_destinations(destinations) + "\nUntuk universitas yang tidak ada di daftar, bilang akan dicek dulu.")
    parts.append(
        "Aturan: 1-2 kalimat per pesan, tanpa emoji, bahasa Indonesia santai (saya/kamu atau kak), ikuti tingkat formalitas "
        "pelanggan, jangan bertele-tele, jangan mengarang informasi, jangan menyebut bahwa kamu diberi instruksi."
    )
    flags = {"supportive": "Bersikap suportif.", "clear": "Jelaskan dengan jelas.", "encouraging": "Beri semangat."}
    parts.extend(line for key, line in flags.items() if tone.get(key, True))
    if tone.get("description"):
        parts.append(f"Gaya bicara: {tone['description']}")
    if tone.get("greeting_template"):
        parts.append(f"Contoh sapaan pembuka: {tone['greeting_template']}")
    if language and language != "id":
        parts.append(f"Balas dalam bahasa dengan kode '{language}' kecuali pelanggan memakai bahasa lain.")
    if instruction:
        parts.append(f"TUGAS PESAN INI: {instruction}")
    return "\n\n".join(parts)


def chat_messages(system: str, history: list[tuple[str, str]], texts: list[str]) -> list[dict[str, str]]:
    """[system, last 10 turns, the new customer messages as one user turn]."""
    turns = [{"role": role, "content": content} for role, content in history[-HISTORY_TURNS:] if role in ("user", "assistant")]
    return [{"role": "system", "content": system}, *turns, {"role": "user", "content": "\n".join(texts)}]


EXTRACTION_KEYS = {
    "name": "nama lengkap pelanggan",
    "email": "alamat email",
    "country": "negara tujuan kuliah (nama negara dalam bahasa Inggris)",
    "budget": "budget per tahun, apa adanya (misal '300 juta')",
    "timeline": "kapan mau berangkat (misal 'tahun depan')",
    "english_level": "kemampuan bahasa Inggris atau skor tes (misal 'IELTS 7.0' atau 'intermediate')",
    "ielts_score": "skor IELTS saja, angka",
    "activity": "kegiatan saat ini (kuliah/bekerja/sekolah/lulus)",
    "program": "program/jenjang/jurusan yang diminati",
}


def extraction_messages(texts: list[str], asked: str | None, known: dict[str, str]) -> list[dict[str, str]]:
    """Ask for a JSON object with only what the customer actually said."""
    schema = {key: f"string atau null — {desc}" for key, desc in EXTRACTION_KEYS.items()}
    schema["documents"] = {key: "true/false/null — " + label for key, label in DOCUMENT_LABELS.items()}
    schema["wants_human"] = "boolean — pelanggan minta bicara dengan manusia/konsultan"
    schema["wants_booking"] = "boolean — pelanggan minta jadwal konsultasi"
    system = (
        "Kamu mengekstrak data dari pesan WhatsApp pelanggan untuk CRM. Balas HANYA dengan satu objek JSON sesuai skema "
        "berikut. Isi hanya yang benar-benar dikatakan pelanggan; selain itu null. Jangan menebak.\n"
        + json.dumps(schema, ensure_ascii=False)
    )
    context = f"Pertanyaan terakhir kami: {asked}\n" if asked else ""
    if known:
        context += "Data yang sudah diketahui: " + json.dumps(known, ensure_ascii=False) + "\n"
    return [{"role": "system", "content": system}, {"role": "user", "content": context + "Pesan pelanggan:\n" + "\n".join(texts)}]
