"""Lead score 0–100 (original-system §6.7), with the workspace's weights and thresholds.

The four categories keep the original rules and nominal maxima (basic 25, qualification 35,
documents 30, engagement 10); a workspace's weights rescale each category to its weight, so the
defaults (25/35/30/10) reproduce the original numbers exactly. Qualification is capped at its
nominal maximum (the original could reach 38). Rounding is half-up, never banker's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from kabar.ari.extract import DOCUMENTS, EMAIL_VALID, REQUIRED_FIELDS, is_unknown_answer

NOMINAL = {"basic": 25, "qualification": 35, "documents": 30, "engagement": 10}

# Keys the original accepted for each answer (form data from several sources).
_ALIASES = {
    "name": ("name", "Name", "nama"),
    "email": ("email", "Email"),
    "country": ("country", "Country", "negara", "destination"),
    "budget": ("budget", "Budget"),
    "timeline": ("timeline", "Timeline", "kapan"),
    "english_level": ("english_level", "English", "english", "ielts"),
    "ielts": ("ielts", "ielts_score", "IELTS"),
    "program": ("program", "Program", "jurusan"),
}


@dataclass(frozen=True, slots=True)
class Weights:
    basic: int = 25
    qualification: int = 35
    documents: int = 30
    engagement: int = 10
    hot_threshold: int = 70
    warm_threshold: int = 40


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    temperature: str  # hot|warm|cold
    breakdown: dict[str, float]
    reasons: list[str] = field(default_factory=list)


def round_half_up(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _get(answers: dict[str, str], key: str) -> str:
    for alias in _ALIASES.get(key, (key,)):
        value = answers.get(alias)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _high_ielts(answers: dict[str, str], english: str) -> bool:
    ielts = _get(answers, "ielts")
    try:
        if ielts and float(ielts.replace(",", ".")) >= 6.5:
            return True
    except ValueError:
        pass
    match = re.search(r"(?<![\d.])([6-9](?:\.[05])?)(?![\d.])", english)
    if match and float(match.group(1)) >= 6.5:
        return True
    return bool(re.search(r"\b(mahir|fluent|advanced|c1|c2)\b", english.lower()))


def _long_timeline(timeline: str, year: int) -> bool:
    text = timeline.lower()
    if re.search(r"\b([2-9]|\d{2,})\s*(tahun|thn)\b", text):
        return True
    if any(int(y) >= year + 2 for y in re.findall(r"\b(20\d\d)\b", text)):
        return True
    return bool(re.search(r"\b(lama|nanti dulu|belum tau|belum tahu)\b", text))


def temperature_of(total: int, weights: Weights) -> str:
    if total >= weights.hot_threshold:
        return "hot"
    if total >= weights.warm_threshold:
        return "warm"
    return "cold"


def score_lead(
    answers: dict[str, str],
    documents: dict[str, bool | None] | None = None,
    engagement: float | None = None,
    *,
    weights: Weights = Weights(),
    year: int,
) -> Score:
    """Score ``answers`` (form and chat answers merged) and ``documents`` (True/False/None each).

    ``year`` is the current year in the business zone (a timeline "2028" is far when it is 2026).
    """
    documents = documents or {}
    reasons: list[str] = []

    filled = sum(1 for key in REQUIRED_FIELDS if _get(answers, key))
    completeness = round_half_up(filled / len(REQUIRED_FIELDS) * 15)
    basic = completeness
    reasons.append(f"Kelengkapan data {completeness}/15")
    if EMAIL_VALID.match(_get(answers, "email")):
        basic += 5
        reasons.append("Email valid")
    if _get(answers, "country"):
        basic += 5
        reasons.append(f"Negara tujuan: {_get(answers, 'country')}")

    qualification = 0
    english = _get(answers, "english_level")
    if english and not is_unknown_answer(english) and english.lower() != "belum tes":
        qualification += 10
        if _high_ielts(answers, english):
            qualification += 3
            reasons.append("Bahasa Inggris kuat (IELTS 6.5+)")
        else:
            reasons.append("Kemampuan bahasa Inggris diketahui")
    budget = _get(answers, "budget")
    if budget and not is_unknown_answer(budget):
        qualification += 10
        reasons.append(f"Budget: {budget}")
    timeline = _get(answers, "timeline")
    if timeline:
        qualification += 10
        if _long_timeline(timeline, year):
            qualification -= 10
            reasons.append(f"Rencana berangkat masih jauh: {timeline} (penalti)")
        else:
            reasons.append(f"Rencana berangkat dekat: {timeline}")
    if _get(answers, "program"):
        qualification += 5
        reasons.append(f"Program: {_get(answers, 'program')}")
    qualification = min(max(qualification, 0), NOMINAL["qualification"])

    ready = [key for key in DOCUMENTS if documents.get(key) is True]
    document_score = 7.5 * len(ready)
    if ready:
        reasons.append(f"Dokumen siap: {len(ready)}/4")

    engagement_score = 5.0 if engagement is None else float(min(max(engagement, 0), 10))

    raw = {"basic": basic, "qualification": qualification, "documents": document_score, "engagement": engagement_score}
    scale = {
        "basic": weights.basic,
        "qualification": weights.qualification,
        "documents": weights.documents,
        "engagement": weights.engagement,
    }
    scaled = {key: raw[key] * scale[key] / NOMINAL[key] for key in raw}
    total = min(max(round_half_up(sum(scaled.values())), 0), 100)
    breakdown = {
        "basic_score": round(scaled["basic"], 1),
        "qualification_score": round(scaled["qualification"], 1),
        "document_score": round(scaled["documents"], 1),
        "engagement_score": round(scaled["engagement"], 1),
        "total": total,
    }
    return Score(total=total, temperature=temperature_of(total, weights), breakdown=breakdown, reasons=reasons)
