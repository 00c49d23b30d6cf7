"""What to do with a qualified lead (original-system §6.8): hot → consultation, warm → keep
nurturing, cold → community group and a human follow-up later."""

from __future__ import annotations

from dataclasses import dataclass

from kabar.ari.extract import DOCUMENTS, REQUIRED_FIELDS
from kabar.ari.scoring import Score

CRM_STATUS = {"hot": "hot_lead", "warm": "prospect", "cold": "cold_lead"}


@dataclass(frozen=True, slots=True)
class Routing:
    action: str  # continue_qualifying | offer_consultation | continue_nurturing | send_community_cold
    ready: bool
    notes: str


def missing_fields(answers: dict[str, str], skipped: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [key for key in REQUIRED_FIELDS if not str(answers.get(key) or "").strip() and key not in skipped]


def unasked_documents(documents: dict[str, bool | None]) -> list[str]:
    return [key for key in DOCUMENTS if documents.get(key) is None]


def ready_for_routing(answers: dict[str, str], documents: dict[str, bool | None], skipped: list[str] | tuple[str, ...] = ()) -> bool:
    return not missing_fields(answers, skipped) and not unasked_documents(documents)


def route(
    answers: dict[str, str],
    documents: dict[str, bool | None],
    score: Score,
    *,
    community_link: str | None,
    skipped: list[str] | tuple[str, ...] = (),
) -> Routing:
    if not ready_for_routing(answers, documents, skipped):
        return Routing("continue_qualifying", False, "")
    if score.temperature == "hot":
        return Routing("offer_consultation", True, f"Hot lead (skor {score.total}). Siap ditawari konsultasi.")
    if score.temperature == "warm":
        return Routing("continue_nurturing", True, f"Warm lead (skor {score.total}). Lanjutkan nurturing.")
    sent = "Link komunitas dikirim." if community_link else "Link komunitas belum diatur."
    return Routing("send_community_cold", True, f"Cold lead (skor {score.total}). {sent} Follow up dalam 30 hari.")
