"""ARI request and response shapes (API.md "ARI (AI receptionist) configuration")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

Text100 = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Text255 = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
LongText = Annotated[str, msgspec.Meta(max_length=20_000)]
Url = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^(https?://\S+)?$")]  # "" = none (forms send it)
HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d(:00)?$")]
Provider = Literal["grok", "sealion", "openai", "ollama", "custom"]
Style = Literal["casual", "formal", "professional"]


# -- config -------------------------------------------------------------------------------------


class LlmVariantIn(msgspec.Struct, forbid_unknown_fields=True):
    """The B arm of the A/B split: another model (and endpoint) for some contacts."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    provider: Provider = "custom"
    base_url: Url | None = None
    api_key: Annotated[str, msgspec.Meta(max_length=500)] | None | UnsetType = UNSET


class LlmIn(msgspec.Struct, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    provider: Provider = "custom"
    base_url: Url | None = None
    # Write-only: omitted keeps the stored key, null removes it.
    api_key: Annotated[str, msgspec.Meta(max_length=500)] | None | UnsetType = UNSET
    ab_split: Annotated[int, msgspec.Meta(ge=0, le=100)] = 100  # % of contacts on this model (arm A)
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 20.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=3)] = 1
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, msgspec.Meta(ge=16, le=4000)] = 300
    alternate: LlmVariantIn | None = None


class ToneIn(msgspec.Struct, forbid_unknown_fields=True):
    supportive: bool = True
    clear: bool = True
    encouraging: bool = True
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    greeting_template: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    """PUT body. Omitted fields keep their current value; ``llm: null`` is rule-based mode."""

    enabled: bool | UnsetType = UNSET
    bot_name: Text100 | UnsetType = UNSET
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=10)] | UnsetType = UNSET
    greeting_style: Style | UnsetType = UNSET
    tone: ToneIn | UnsetType = UNSET
    community_link: Url | None | UnsetType = UNSET
    llm: LlmIn | None | UnsetType = UNSET
    reply_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] | UnsetType = UNSET
    handoff_after_messages: Annotated[int, msgspec.Meta(ge=2, le=200)] | UnsetType = UNSET


class LlmOut(msgspec.Struct):
    provider: str
    base_url: str | None
    model: str
    ab_split: int
    timeout_seconds: float
    max_retries: int
    temperature: float
    max_tokens: int
    api_key_set: bool
    alternate: dict[str, Any] | None = None


class ConfigOut(msgspec.Struct):
    enabled: bool
    bot_name: str
    language: str
    greeting_style: str
    tone: dict[str, Any]
    community_link: str | None
    llm: LlmOut | None
    mode: str  # "llm" or "rules"
    reply_delay_ms: int
    handoff_after_messages: int
    updated_at: datetime | None


# -- scoring ------------------------------------------------------------------------------------


class WeightsIn(msgspec.Struct, forbid_unknown_fields=True):
    basic: Annotated[int, msgspec.Meta(ge=0, le=100)]
    qualification: Annotated[int, msgspec.Meta(ge=0, le=100)]
    documents: Annotated[int, msgspec.Meta(ge=0, le=100)]
    engagement: Annotated[int, msgspec.Meta(ge=0, le=100)]


class ScoringIn(msgspec.Struct, forbid_unknown_fields=True):
    hot_threshold: Annotated[int, msgspec.Meta(ge=1, le=100)] | UnsetType = UNSET
    warm_threshold: Annotated[int, msgspec.Meta(ge=0, le=99)] | UnsetType = UNSET
    weights: WeightsIn | UnsetType = UNSET


class ScoringOut(msgspec.Struct):
    hot_threshold: int
    warm_threshold: int
    weights: dict[str, int]
    is_default: bool


# -- flow stages, knowledge, slots ----------------------------------------------------------------


class FlowStageIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Text100
    goal: LongText = ""
    sample_script: LongText | None = None
    exit_criteria: LongText | None = None
    stage_order: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    is_active: bool = True


class FlowStagePatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Text100 | UnsetType = UNSET
    goal: LongText | UnsetType = UNSET
    sample_script: LongText | None | UnsetType = UNSET
    exit_criteria: LongText | None | UnsetType = UNSET
    stage_order: Annotated[int, msgspec.Meta(ge=0, le=1000)] | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET


class FlowStageOut(msgspec.Struct):
    id: str
    name: str
    goal: str
    sample_script: str | None
    exit_criteria: str | None
    stage_order: int
    is_active: bool
    created_at: datetime | None
    updated_at: datetime | None


class KnowledgeIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Text255
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    category: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    is_active: bool = True


class KnowledgePatch(msgspec.Struct, forbid_unknown_fields=True):
    title: Text255 | UnsetType = UNSET
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)] | UnsetType = UNSET
    category: Annotated[str, msgspec.Meta(max_length=100)] | None | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET


class KnowledgeOut(msgspec.Struct):
    id: str
    title: str
    content: str
    category: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


DayOfWeek = Annotated[int, msgspec.Meta(ge=0, le=6)]  # 0 = Monday … 6 = Sunday


class SlotIn(msgspec.Struct, forbid_unknown_fields=True):
    day_of_week: DayOfWeek
    start_time: HHMM
    end_time: HHMM
    duration_minutes: Annotated[int, msgspec.Meta(ge=5, le=600)] = 60
    consultant_id: str | None = None
    booking_window_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 14
    max_bookings_per_slot: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    is_active: bool = True


class SlotPatch(msgspec.Struct, forbid_unknown_fields=True):
    day_of_week: DayOfWeek | UnsetType = UNSET
    start_time: HHMM | UnsetType = UNSET
    end_time: HHMM | UnsetType = UNSET
    duration_minutes: Annotated[int, msgspec.Meta(ge=5, le=600)] | UnsetType = UNSET
    consultant_id: str | None | UnsetType = UNSET
    booking_window_days: Annotated[int, msgspec.Meta(ge=1, le=365)] | UnsetType = UNSET
    max_bookings_per_slot: Annotated[int, msgspec.Meta(ge=1, le=100)] | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET


class SlotOut(msgspec.Struct):
    id: str
    day_of_week: int
    start_time: str
    end_time: str
    duration_minutes: int
    consultant_id: str | None
    booking_window_days: int
    max_bookings_per_slot: int
    is_active: bool
    created_at: datetime
    updated_at: datetime


# -- appointments and conversation state ----------------------------------------------------------

AppointmentStatus = Literal["scheduled", "confirmed", "completed", "cancelled", "no_show"]


class AppointmentPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: AppointmentStatus | UnsetType = UNSET
    meeting_link: Url | None | UnsetType = UNSET
    notes: Annotated[str, msgspec.Meta(max_length=5000)] | None | UnsetType = UNSET


class AppointmentOut(msgspec.Struct):
    id: str
    conversation_id: str
    contact_id: str
    contact_name: str | None
    contact_phone: str
    slot_id: str | None
    consultant_id: str | None
    scheduled_at: datetime
    duration_minutes: int
    meeting_link: str | None
    status: str
    reminder_sent_at: datetime | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class ConversationAriOut(msgspec.Struct):
    state: str | None
    lead_score: int | None
    lead_temperature: str | None
    score_breakdown: dict[str, Any]
    model: str | None
    handoff_reason: str | None
    score_reasons: list[str]
    handoff_at: datetime | None
    state_changed_at: datetime | None
    messages_in_state: int
    documents: dict[str, Any]
    scheduling_step: str | None
    appointment_id: str | None
