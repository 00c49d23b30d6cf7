"""ARI's rules around the pure pipeline: settings (one unit of work per call), the inbound trigger,
one reply turn (read → LLM outside any transaction → apply in one transaction), reminders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from prometheus_client import Counter
from msgspec import UNSET
from sqlalchemy import Connection, select

from kabar import egress, events
from kabar.ari import llm, prompt, rules
from kabar.ari import repository as repo
from kabar.ari import schemas as s
from kabar.ari.booking import Pattern, Slot, available_slots, free_seat
from kabar.ari.dates import JAKARTA
from kabar.ari.extract import DOCUMENTS, FIELDS
from kabar.ari.pipeline import Config, Decision, TurnInput, decide, failure
from kabar.ari.scoring import Weights
from kabar.ari.state import ACTIVE_STATES, DEFAULT_HANDOFF_AFTER
from kabar.assignment import service as assignment
from kabar.auth.scope import Scope, system_scope
from kabar.auth.visibility import Owner
from kabar.contacts import repository as contacts_repo
from kabar.contacts.schemas import contact_out, note_out
from kabar.contacts.service import search_text_for
from kabar.conversations import repository as conv_repo
from kabar.conversations.service import write_changes
from kabar.crypto import Cipher
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem, conflict, invalid, invalid_fields, not_found
from kabar.events import payload
from kabar.http import decode_cursor, encode_cursor
from kabar.ids import new_id
from kabar.messages.service import create_outbound_message
from kabar.observability.metrics import REGISTRY

log = logging.getLogger("kabar.ari")
TURNS = Counter("kabar_ari_turns_total", "ARI reply turns by outcome", ["outcome"], registry=REGISTRY)

REPLY_JOB = "ari.reply"
REMINDERS_JOB = "ari.reminders"
REMINDER_LEAD = timedelta(hours=1)
SEEN_KEEP = 100  # inbound message ids remembered as answered
LOOKBACK = timedelta(minutes=5)  # messages committed late (concurrent webhooks) are still picked up
DEFAULT_FLOW_STAGES = [
    ("Greeting", "Sapa pelanggan dan cari tahu kebutuhannya.", "Pelanggan menyebutkan kebutuhannya."),
    ("Qualifying", "Kumpulkan negara tujuan, budget, waktu berangkat, bahasa Inggris, dan dokumen.", "Semua data terkumpul."),
    ("Scoring", "Nilai kesiapan lead dari data yang terkumpul.", "Skor dihitung."),
    ("Booking", "Tawarkan konsultasi 1-on-1 kepada lead yang siap.", "Pelanggan setuju atau menolak."),
    ("Scheduling", "Pilih hari dan jam konsultasi, lalu konfirmasi.", "Jadwal terkonfirmasi."),
    ("Handoff", "Serahkan ke konsultan dengan ringkasan.", "Konsultan mengambil alih."),
]


# =============================================================================================
# Settings


def _config_out(row: Any) -> s.ConfigOut:
    if row is None:
        return s.ConfigOut(
            enabled=False,
            bot_name="ARI",
            language="id",
            greeting_style="professional",
            tone={"supportive": True, "clear": True, "encouraging": True},
            community_link=None,
            llm=None,
            mode="rules",
            reply_delay_ms=1500,
            handoff_after_messages=DEFAULT_HANDOFF_AFTER,
            updated_at=None,
        )
    cfg = dict(row.llm or {})
    llm_out = None
    if cfg.get("model"):
        keys_set = cfg.get("keys_set") or {}
        alternate = cfg.get("alternate")
        if alternate:
            alternate = {**alternate, "api_key_set": bool(keys_set.get("alternate_api_key"))}
        llm_out = s.LlmOut(
            provider=cfg.get("provider", "custom"),
            base_url=cfg.get("base_url"),
            model=cfg["model"],
            ab_split=int(cfg.get("ab_split", 100)),
            timeout_seconds=float(cfg.get("timeout_seconds", 20.0)),
            max_retries=int(cfg.get("max_retries", 1)),
            temperature=float(cfg.get("temperature", 0.7)),
            max_tokens=int(cfg.get("max_tokens", 300)),
            api_key_set=bool(keys_set.get("api_key")),
            alternate=alternate,
        )
    return s.ConfigOut(
        enabled=row.enabled,
        bot_name=row.bot_name,
        language=row.language,
        greeting_style=row.greeting_style,
        tone=dict(row.tone or {}),
        community_link=row.community_link,
        llm=llm_out,
        mode="llm" if llm_out else "rules",
        reply_delay_ms=row.reply_delay_ms,
        handoff_after_messages=row.handoff_after_messages,
        updated_at=row.updated_at,
    )


def get_config(conn: Connection, ctx: Scope) -> s.ConfigOut:
    ctx.require("ari.read")
    return _config_out(repo.get_config(conn, ctx))


def _llm_keys(cipher: Cipher, row: Any, workspace_id: str) -> dict[str, str]:
    """The decrypted API keys (bound to the workspace: a copied ciphertext does not decrypt)."""
    if row is None or not row.llm_api_key:
        return {}
    try:
        return cipher.decrypt_json(row.llm_api_key, associated=f"ari:{workspace_id}")
    except Exception:  # noqa: BLE001 - a key that no longer decrypts (rotated secret) is no key
        log.warning("ARI LLM key of workspace %s does not decrypt", workspace_id)
        return {}


def put_config(uow: UnitOfWork, ctx: Scope, data: s.ConfigIn, cipher: Cipher) -> s.ConfigOut:
    ctx.require("ari.manage")
    row = repo.get_config(uow.conn, ctx)
    values: dict[str, Any] = {}
    for name in ("enabled", "bot_name", "language", "greeting_style", "community_link", "reply_delay_ms", "handoff_after_messages"):
        value = getattr(data, name)
        if value is not UNSET:
            values[name] = value.strip() if isinstance(value, str) else value
    if values.get("community_link") == "":
        values["community_link"] = None
    if data.tone is not UNSET:
        values["tone"] = {k: v for k, v in msgspec.to_builtins(data.tone).items() if v is not None}
    if data.llm is not UNSET:
        keys = _llm_keys(cipher, row, ctx.workspace_id)
        if data.llm is None:
            values["llm"], keys = {}, {}
        else:
            values["llm"], keys = _llm_values(data.llm, keys)
        values["llm"]["keys_set"] = {k: True for k in keys}
        values["llm_api_key"] = cipher.encrypt_json(keys, associated=f"ari:{ctx.workspace_id}") if keys else None
    repo.upsert_settings(uow.conn, t.ari_configs, ctx, values, uow.now)
    out = _config_out(repo.get_config(uow.conn, ctx))
    uow.emit(ctx.workspace_id, "ari.config_updated", payload(out))
    return out


def _llm_values(data: s.LlmIn, keys: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    data = msgspec.structs.replace(data, base_url=data.base_url or None)
    if data.alternate is not None:
        data = msgspec.structs.replace(data, alternate=msgspec.structs.replace(data.alternate, base_url=data.alternate.base_url or None))
    if data.provider == "custom" and not data.base_url:
        raise invalid("llm.base_url", "is required for a custom provider")
    if data.alternate is not None and data.alternate.provider == "custom" and not data.alternate.base_url:
        raise invalid("llm.alternate.base_url", "is required for a custom provider")
    keys = dict(keys)
    if data.api_key is not UNSET:
        if data.api_key:
            keys["api_key"] = data.api_key
        else:
            keys.pop("api_key", None)
    values = {k: v for k, v in msgspec.to_builtins(data).items() if k not in ("api_key", "alternate")}
    if data.alternate is not None:
        values["alternate"] = {k: v for k, v in msgspec.to_builtins(data.alternate).items() if k != "api_key"}
        if data.alternate.api_key is not UNSET:
            if data.alternate.api_key:
                keys["alternate_api_key"] = data.alternate.api_key
            else:
                keys.pop("alternate_api_key", None)
    else:
        keys.pop("alternate_api_key", None)
    return values, keys


def _weights(row: Any) -> Weights:
    if row is None:
        return Weights()
    return Weights(row.weight_basic, row.weight_qualification, row.weight_documents, row.weight_engagement, row.hot_threshold, row.warm_threshold)


def _scoring_out(row: Any) -> s.ScoringOut:
    w = _weights(row)
    return s.ScoringOut(
        hot_threshold=w.hot_threshold,
        warm_threshold=w.warm_threshold,
        weights={"basic": w.basic, "qualification": w.qualification, "documents": w.documents, "engagement": w.engagement},
        is_default=row is None,
    )


def get_scoring(conn: Connection, ctx: Scope) -> s.ScoringOut:
    ctx.require("ari.read")
    return _scoring_out(repo.get_scoring(conn, ctx))


def put_scoring(uow: UnitOfWork, ctx: Scope, data: s.ScoringIn) -> s.ScoringOut:
    """Omitted values keep the stored ones; weights must sum to 100 and hot must exceed warm."""
    ctx.require("ari.manage")
    current = _weights(repo.get_scoring(uow.conn, ctx))
    hot = current.hot_threshold if data.hot_threshold is UNSET else data.hot_threshold
    warm = current.warm_threshold if data.warm_threshold is UNSET else data.warm_threshold
    w = data.weights if data.weights is not UNSET else s.WeightsIn(current.basic, current.qualification, current.documents, current.engagement)
    errors = []
    total = w.basic + w.qualification + w.documents + w.engagement
    if total != 100:
        errors.append({"field": "weights", "message": f"must sum to 100 (they sum to {total})"})
    if hot <= warm:
        errors.append({"field": "hot_threshold", "message": f"must be greater than warm_threshold ({warm})"})
    if errors:
        raise invalid_fields(errors)
    values = {
        "hot_threshold": hot,
        "warm_threshold": warm,
        "weight_basic": w.basic,
        "weight_qualification": w.qualification,
        "weight_documents": w.documents,
        "weight_engagement": w.engagement,
    }
    repo.upsert_settings(uow.conn, t.ari_scoring, ctx, values, uow.now)
    out = _scoring_out(repo.get_scoring(uow.conn, ctx))
    uow.emit(ctx.workspace_id, "ari.scoring_updated", payload(out))
    return out


# -- flow stages, knowledge, slots: small tables with the same list/create/patch/delete shape ----


def _row_out(struct: type, row: Any) -> Any:
    return struct(**{f: getattr(row, f) for f in struct.__struct_fields__})


def _create(uow: UnitOfWork, ctx: Scope, table: Any, struct: type, values: dict[str, Any], event: str) -> Any:
    row_id = new_id()
    repo.insert_row(uow.conn, table, {"id": row_id, "workspace_id": ctx.workspace_id, **values, "created_at": uow.now, "updated_at": uow.now})
    out = _row_out(struct, repo.get_row(uow.conn, table, ctx, row_id))
    uow.emit(ctx.workspace_id, f"{event}.created", payload(out))
    return out


def _existing(conn: Connection, ctx: Scope, table: Any, row_id: str, what: str) -> Any:
    row = repo.get_row(conn, table, ctx, row_id)
    if row is None:
        raise not_found(what)
    return row


def _patch(uow: UnitOfWork, ctx: Scope, table: Any, struct: type, row_id: str, values: dict[str, Any], event: str) -> Any:
    if values:
        repo.update_row(uow.conn, table, ctx, row_id, {**values, "updated_at": uow.now})
    out = _row_out(struct, repo.get_row(uow.conn, table, ctx, row_id))
    uow.emit(ctx.workspace_id, f"{event}.updated", payload(out))
    return out


def _update_item(uow: UnitOfWork, ctx: Scope, table: Any, struct: type, row_id: str, data: Any, what: str, event: str) -> Any:
    ctx.require("ari.manage")
    _existing(uow.conn, ctx, table, row_id, what)
    return _patch(uow, ctx, table, struct, row_id, _set_fields(data), event)


def _delete_item(uow: UnitOfWork, ctx: Scope, table: Any, row_id: str, what: str, event: str) -> Any:
    ctx.require("ari.manage")
    row = _existing(uow.conn, ctx, table, row_id, what)
    repo.delete_row(uow.conn, table, ctx, row_id)
    uow.emit(ctx.workspace_id, f"{event}.deleted", {"id": row_id})
    return row


def _set_fields(data: Any) -> dict[str, Any]:
    return {k: getattr(data, k) for k in data.__struct_fields__ if getattr(data, k) is not UNSET}


def list_flow_stages(conn: Connection, ctx: Scope) -> dict[str, Any]:
    ctx.require("ari.read")
    rows = repo.list_rows(conn, t.ari_flow_stages, ctx, t.ari_flow_stages.c.stage_order)
    if rows:
        return {"data": [_row_out(s.FlowStageOut, r) for r in rows], "next_cursor": None, "is_default": False}
    defaults = [
        s.FlowStageOut(id=f"default-{i}", name=n, goal=g, sample_script=None, exit_criteria=e, stage_order=i, is_active=True, created_at=None, updated_at=None)
        for i, (n, g, e) in enumerate(DEFAULT_FLOW_STAGES)
    ]
    return {"data": defaults, "next_cursor": None, "is_default": True}


def create_flow_stage(uow: UnitOfWork, ctx: Scope, data: s.FlowStageIn) -> s.FlowStageOut:
    ctx.require("ari.manage")
    values = msgspec.to_builtins(data)
    if values["stage_order"] is None:
        last = repo.max_stage_order(uow.conn, ctx)
        values["stage_order"] = 0 if last is None else last + 1
    return _create(uow, ctx, t.ari_flow_stages, s.FlowStageOut, values, "ari.flow_stage")


def update_flow_stage(uow: UnitOfWork, ctx: Scope, stage_id: str, data: s.FlowStagePatch) -> s.FlowStageOut:
    return _update_item(uow, ctx, t.ari_flow_stages, s.FlowStageOut, stage_id, data, "Flow stage", "ari.flow_stage")


def delete_flow_stage(uow: UnitOfWork, ctx: Scope, stage_id: str) -> None:
    row = _delete_item(uow, ctx, t.ari_flow_stages, stage_id, "Flow stage", "ari.flow_stage")
    repo.shift_stages_after(uow.conn, ctx, row.stage_order)


def list_knowledge(conn: Connection, ctx: Scope) -> dict[str, Any]:
    ctx.require("ari.read")
    k = t.ari_knowledge
    rows = repo.list_rows(conn, k, ctx, k.c.category, k.c.title)
    return {"data": [_row_out(s.KnowledgeOut, r) for r in rows], "next_cursor": None}


def create_knowledge(uow: UnitOfWork, ctx: Scope, data: s.KnowledgeIn) -> s.KnowledgeOut:
    ctx.require("ari.manage")
    return _create(uow, ctx, t.ari_knowledge, s.KnowledgeOut, msgspec.to_builtins(data), "ari.knowledge")


def update_knowledge(uow: UnitOfWork, ctx: Scope, entry_id: str, data: s.KnowledgePatch) -> s.KnowledgeOut:
    return _update_item(uow, ctx, t.ari_knowledge, s.KnowledgeOut, entry_id, data, "Knowledge entry", "ari.knowledge")


def delete_knowledge(uow: UnitOfWork, ctx: Scope, entry_id: str) -> None:
    _delete_item(uow, ctx, t.ari_knowledge, entry_id, "Knowledge entry", "ari.knowledge")


def list_slots(conn: Connection, ctx: Scope) -> dict[str, Any]:
    ctx.require("ari.read")
    sl = t.ari_slots
    rows = repo.list_rows(conn, sl, ctx, sl.c.day_of_week, sl.c.start_time)
    return {"data": [_row_out(s.SlotOut, r) for r in rows], "next_cursor": None}


def _check_slot(conn: Connection, ctx: Scope, values: dict[str, Any], except_id: str | None = None) -> None:
    values["start_time"], values["end_time"] = values["start_time"][:5], values["end_time"][:5]
    errors = []
    if values["end_time"] <= values["start_time"]:
        errors.append({"field": "end_time", "message": "must be after start_time"})
    else:
        sh, sm = map(int, values["start_time"].split(":"))
        eh, em = map(int, values["end_time"].split(":"))
        if values["duration_minutes"] > (eh * 60 + em) - (sh * 60 + sm):
            errors.append({"field": "duration_minutes", "message": "is longer than the time between start_time and end_time"})
    consultant = values.get("consultant_id")
    if consultant is not None and not repo.is_member(conn, ctx, consultant):
        errors.append({"field": "consultant_id", "message": "is not a member of this workspace"})
    if errors:
        raise invalid_fields(errors)
    if repo.slot_exists(conn, ctx, consultant, values["day_of_week"], values["start_time"], except_id):
        raise conflict("A slot already exists for this consultant, day and start time", slug="slot-exists")


def create_slot(uow: UnitOfWork, ctx: Scope, data: s.SlotIn) -> s.SlotOut:
    ctx.require("ari.manage")
    values = msgspec.to_builtins(data)
    _check_slot(uow.conn, ctx, values)
    return _create(uow, ctx, t.ari_slots, s.SlotOut, values, "ari.slot")


def update_slot(uow: UnitOfWork, ctx: Scope, slot_id: str, data: s.SlotPatch) -> s.SlotOut:
    ctx.require("ari.manage")
    row = _existing(uow.conn, ctx, t.ari_slots, slot_id, "Slot")
    changes = _set_fields(data)
    merged = {f: getattr(row, f) for f in s.SlotIn.__struct_fields__} | changes
    _check_slot(uow.conn, ctx, merged, except_id=slot_id)
    changes = {k: merged[k] for k in changes}
    return _patch(uow, ctx, t.ari_slots, s.SlotOut, slot_id, changes, "ari.slot")


def delete_slot(uow: UnitOfWork, ctx: Scope, slot_id: str) -> None:
    _delete_item(uow, ctx, t.ari_slots, slot_id, "Slot", "ari.slot")  # booked appointments keep their time


# -- appointments -------------------------------------------------------------------------------


def appointment_out(row: Any) -> s.AppointmentOut:
    return _row_out(s.AppointmentOut, SimpleNamespace(**{**row._asdict(), "contact_phone": row.contact_phone}))


def list_appointments(
    conn: Connection, ctx: Scope, *, start: datetime | None, end: datetime | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    ctx.require("ari.read")
    after = decode_cursor(cursor, (datetime, str))
    rows = repo.appointments_page(conn, ctx, start=start, end=end, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].scheduled_at.isoformat(), rows[-1].id) if more else None
    return {"data": [appointment_out(r) for r in rows], "next_cursor": next_cursor}


def _visible_appointment(conn: Connection, ctx: Scope, appointment_id: str) -> Any:
    row = repo.get_appointment(conn, ctx, appointment_id)
    if row is None or not ctx.may_see(Owner(row.conversation_assignee_id)):
        raise not_found("Appointment")
    return row


def update_appointment(uow: UnitOfWork, ctx: Scope, appointment_id: str, data: s.AppointmentPatch) -> s.AppointmentOut:
    ctx.require("conversations.write")
    row = _visible_appointment(uow.conn, ctx, appointment_id)
    changes = _set_fields(data)
    if changes.get("meeting_link") == "":
        changes["meeting_link"] = None
    if "status" in changes and changes["status"] != row.status:
        if row.status in ("cancelled", "no_show", "completed") and changes["status"] in ("scheduled", "confirmed"):
            raise invalid("status", f"a {row.status} appointment cannot become {changes['status']}; book a new one")
        if changes["status"] in ("cancelled", "no_show"):
            changes["booking_key"] = None  # the seat is free again
    if changes:
        repo.update_row(uow.conn, t.ari_appointments, ctx, appointment_id, {**changes, "updated_at": uow.now})
    out = appointment_out(repo.get_appointment(uow.conn, ctx, appointment_id))
    uow.emit(ctx.workspace_id, events.APPOINTMENT_UPDATED, payload(out), contact_id=row.contact_id)
    if changes.get("status") == "completed":
        _complete_state(uow, ctx, row.conversation_id, row.contact_id)
    return out


def _complete_state(uow: UnitOfWork, scope: Scope, conversation_id: str, contact_id: str) -> None:
    """The consultation happened: ARI's work for this conversation is done (handoff → completed)."""
    state = repo.get_state(uow.conn, scope, conversation_id)
    if state is None or state.state != "handoff":
        return
    repo.update_state(uow.conn, scope, conversation_id, {"state": "completed", "state_changed_at": uow.now, "messages_in_state": 0, "updated_at": uow.now})
    uow.emit(scope.workspace_id, events.ARI_STATE_CHANGED, {"conversation_id": conversation_id, "contact_id": contact_id, "from": "handoff", "to": "completed"}, contact_id=contact_id)


def conversation_ari(conn: Connection, ctx: Scope, conversation_id: str) -> s.ConversationAriOut:
    ctx.require("ari.read")
    if conv_repo.get_visible(conn, ctx, conversation_id) is None:
        raise not_found("Conversation")
    row = repo.get_state(conn, ctx, conversation_id)
    if row is None:
        return s.ConversationAriOut(None, None, None, {}, None, None, [], None, None, 0, {}, None, None)
    breakdown = dict(row.score_breakdown or {})
    reasons = breakdown.pop("reasons", [])
    context = row.context or {}
    return s.ConversationAriOut(
        state=row.state,
        lead_score=row.lead_score,
        lead_temperature=row.lead_temperature,
        score_breakdown=breakdown,
        model=row.model,
        handoff_reason=row.handoff_reason,
        score_reasons=reasons,
        handoff_at=row.handoff_at,
        state_changed_at=row.state_changed_at,
        messages_in_state=row.messages_in_state,
        documents=context.get("documents", {}),
        scheduling_step=context.get("step"),
        appointment_id=context.get("appointment_id"),
    )


# =============================================================================================
# The trigger: runs inside the ingest transaction of every new inbound message


def on_inbound_message(uow: UnitOfWork, message: Any, conversation: Any, contact: Any) -> None:
    """Queue an ARI reply for an inbound text when ARI is on and nobody has taken over.

    Serialized per contact; the reply waits ``reply_delay_ms`` so that a burst of messages is
    answered once (the job answers everything not yet answered; later jobs find nothing).
    """
    if getattr(message, "type", None) != "text" or not (getattr(message, "text", None) or "").strip():
        return
    if getattr(message, "direction", "inbound") != "inbound" or conversation.ai_paused:
        return
    workspace_id = conversation.workspace_id
    scope = system_scope(workspace_id)
    config = repo.reply_settings(uow.conn, scope)
    if config is None or not config.enabled:
        return
    state = repo.state_of(uow.conn, scope, conversation.id)
    if state is not None and state not in ACTIVE_STATES:
        return
    uow.enqueue(
        REPLY_JOB,
        {"conversation_id": conversation.id, "message_id": message.id},
        workspace_id=workspace_id,
        serial_key=f"ari:{contact.id}",
        delay=timedelta(milliseconds=config.reply_delay_ms),
    )


# =============================================================================================
# One reply turn


@dataclass
class Loaded:
    """Everything one turn reads, in one snapshot."""

    scope: Scope  # Kabar itself in the conversation's workspace (kabar.auth.scope.system_scope)
    conversation_id: str
    contact_id: str
    config: Any
    weights: Weights
    state: Any  # ari_states row or None
    context: dict[str, Any]
    pending: list[Any]  # inbound message rows not answered yet
    contact: Any
    patterns: list[Pattern]
    slots: list[Slot]
    knowledge: list[dict[str, Any]]
    destinations: list[dict[str, Any]]
    flow_stages: list[dict[str, Any]]
    history: list[tuple[str, str]]
    tz: ZoneInfo
    target: llm.Target | None = None
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def workspace_id(self) -> str:
        return self.scope.workspace_id


def answers_of(contact: Any) -> dict[str, str]:
    """What the contact's record already says: form answers (nested, as the forms send them),
    attributes, then the name/email columns."""
    attrs = dict(contact.attributes or {})
    out: dict[str, str] = {}
    for source in ((attrs.get("metadata") or {}).get("form_answers") or {}, attrs.get("form_answers") or {}, attrs):
        if isinstance(source, dict):
            for key, value in source.items():
                if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
                    out[key] = str(value).strip()
    if contact.name:
        out["name"] = contact.name
    if contact.email:
        out["email"] = contact.email
    return out


def _zone(conn: Connection, workspace_id: str) -> ZoneInfo:
    tz = conn.execute(select(t.workspaces.c.timezone).where(t.workspaces.c.id == workspace_id)).scalar()
    try:
        return ZoneInfo(tz or "Asia/Jakarta")
    except Exception:  # noqa: BLE001
        return JAKARTA


def _patterns(conn: Connection, scope: Scope) -> list[Pattern]:
    return [
        Pattern(r.id, r.day_of_week, r.start_time, r.end_time, r.duration_minutes, r.booking_window_days, r.max_bookings_per_slot, r.consultant_id)
        for r in repo.active_slots(conn, scope)
    ]


def free_slots(conn: Connection, scope: Scope, patterns: list[Pattern], now: datetime, tz: ZoneInfo) -> list[Slot]:
    if not patterns:
        return []
    horizon = now + timedelta(days=max(p.booking_window_days for p in patterns) + 2)
    taken = repo.taken_booking_keys(conn, scope, now, horizon)
    return available_slots(patterns, taken, now, tz)


def load_turn(conn: Connection, workspace_id: str, conversation_id: str, message_id: str | None, cipher: Cipher, now: datetime) -> Loaded | None:
    """The turn's inputs, or None when there is nothing to answer (or ARI must stay quiet)."""
    scope = system_scope(workspace_id)
    config = repo.get_config(conn, scope)
    if config is None or not config.enabled:
        return None
    conversation = repo.get_conversation(conn, scope, conversation_id)
    if conversation is None or conversation.ai_paused:
        return None
    state = repo.get_state(conn, scope, conversation_id)
    if state is not None and state.state not in ACTIVE_STATES:
        return None
    context = dict(state.context or {}) if state is not None else {}
    seen = set(context.get("seen", []))
    if context.get("cursor_at"):
        since = datetime.fromisoformat(context["cursor_at"]) - LOOKBACK
    else:
        trigger = repo.get_message(conn, scope, message_id) if message_id else None
        since = trigger.created_at if trigger is not None else now - LOOKBACK
    pending = [m for m in repo.inbound_texts_since(conn, scope, conversation_id, since) if m.id not in seen and (m.text or "").strip()]
    if not pending:
        return None
    contact = repo.get_contact(conn, scope, conversation.contact_id)
    tz = _zone(conn, workspace_id)
    patterns = _patterns(conn, scope)
    k, d, f = t.ari_knowledge, t.ari_destinations, t.ari_flow_stages
    loaded = Loaded(
        scope=scope,
        conversation_id=conversation_id,
        contact_id=conversation.contact_id,
        config=config,
        weights=_weights(repo.get_scoring(conn, scope)),
        state=state,
        context=context,
        pending=pending,
        contact=contact,
        patterns=patterns,
        slots=free_slots(conn, scope, patterns, now, tz),
        knowledge=[r._asdict() for r in repo.list_rows(conn, k, scope, k.c.title) if r.is_active],
        destinations=[r._asdict() for r in repo.list_rows(conn, d, scope, d.c.country)],
        flow_stages=[r._asdict() for r in repo.list_rows(conn, f, scope, f.c.stage_order)],
        history=[(r.role, r.content) for r in repo.recent_transcript(conn, scope, conversation_id, prompt.HISTORY_TURNS)],
        tz=tz,
        answers=answers_of(contact),
    )
    if state is None:
        docs = (contact.attributes or {}).get("documents")
        if isinstance(docs, dict):
            context["documents"] = {k: v for k, v in docs.items() if k in DOCUMENTS and isinstance(v, bool)}
    loaded.target = llm.choose_target(dict(config.llm or {}), _llm_keys(cipher, config, workspace_id), conversation.contact_id)
    return loaded


def turn_input(loaded: Loaded, now: datetime) -> TurnInput:
    cfg = loaded.config
    return TurnInput(
        now=now,
        state=loaded.state.state if loaded.state is not None else "greeting",
        context=loaded.context,
        messages_in_state=loaded.state.messages_in_state if loaded.state is not None else 0,
        texts=[m.text.strip() for m in loaded.pending],
        answers=loaded.answers,
        config=Config(
            bot_name=cfg.bot_name,
            greeting_style=cfg.greeting_style,
            greeting_template=(cfg.tone or {}).get("greeting_template"),
            community_link=cfg.community_link,
            handoff_after=cfg.handoff_after_messages,
            weights=loaded.weights,
            tz=loaded.tz,
        ),
        slots=loaded.slots,
        knowledge=loaded.knowledge,
        destinations=loaded.destinations,
        history=[content for role, content in loaded.history if role == "user"],
    )


@dataclass
class Outgoing:
    text: str
    model: str | None = None
    tokens: int | None = None
    latency_ms: int | None = None


@dataclass
class TurnResult:
    decision: Decision
    replies: list[Outgoing]
    model: str
    errors: list[str] = field(default_factory=list)  # failures that made ARI fall back and hand off
    usage: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # recoverable problems, kept in the transcript


async def run_llm(loaded: Loaded, inp: TurnInput, client: Any = None) -> TurnResult:
    """Decide the turn, asking the LLM for the extraction and the words where configured.

    Runs outside any transaction. Any LLM failure → the fallback decision (apology + handoff).
    """
    target = loaded.target
    if target is None:
        decision = decide(inp)
        return TurnResult(decision, [Outgoing(r.text, "rules") for r in decision.replies], "rules")
    errors: list[str] = []
    usage: list[dict[str, Any]] = []
    known = {k: v for k, v in inp.answers.items() if k in FIELDS}
    pending = inp.context.get("pending")
    asked = rules.QUESTIONS.get(pending or "", None)
    try:
        completion = await llm.chat(
            target, prompt.extraction_messages(inp.texts, asked, known), json_mode=True, max_tokens=400, temperature=0.0, client=client
        )
        usage.append({"purpose": "extract", "tokens": completion.tokens, "latency_ms": completion.latency_ms})
        try:
            inp = replace(inp, llm_extraction=llm.parse_extraction(completion.content))
        except llm.LlmError as exc:  # the model answered, just not in JSON: the rules extract alone
            errors.append(f"LLM {target.model} extraction unusable: {exc}")
        decision = decide(inp)
        replies: list[Outgoing] = []
        for reply in decision.replies:
            if reply.instruction is None:
                replies.append(Outgoing(reply.text, target.model))
                continue
            system = prompt.system_prompt(
                bot_name=loaded.config.bot_name,
                greeting_style=loaded.config.greeting_style,
                language=loaded.config.language,
                tone=dict(loaded.config.tone or {}),
                now=inp.now,
                tz=loaded.tz,
                name=decision.answers.get("name"),
                answers=decision.answers,
                documents=decision.documents,
                score=decision.score,
                state=decision.state,
                instruction=reply.instruction,
                flow_stages=loaded.flow_stages,
                knowledge=loaded.knowledge,
                destinations=prompt.destinations_for("\n".join(inp.texts), decision.answers.get("country"), loaded.destinations),
            )
            completion = await llm.chat(target, prompt.chat_messages(system, loaded.history, inp.texts), client=client)
            text = llm.clean_reply(completion.content)
            if not text:
                raise llm.LlmError("empty reply after cleaning")
            usage.append({"purpose": "reply", "tokens": completion.tokens, "latency_ms": completion.latency_ms})
            replies.append(Outgoing(text, completion.model, completion.tokens, completion.latency_ms))
        return TurnResult(decision, replies, target.model, [], usage, notes=errors)
    except llm.LlmError as exc:
        errors.append(f"LLM {target.model} failed: {exc}")
        log.warning("ARI LLM failure in workspace %s: %s", loaded.workspace_id, exc)
        decision = failure(inp)
        return TurnResult(decision, [Outgoing(r.text, "fallback") for r in decision.replies], target.model, errors, usage)


def apply_turn(uow: UnitOfWork, loaded: Loaded, inp: TurnInput, result: TurnResult) -> bool:
    """Write the turn in one unit of work. False (nothing written) when the world moved on:
    a human took over, or another job already answered these messages."""
    conn, now, ws = uow.conn, uow.now, loaded.workspace_id
    # Locked (PostgreSQL) until this turn commits: a human takeover (a staff send, an assignment)
    # that commits first is seen here, one that comes later waits for this turn's messages.
    if repo.ai_paused_for_update(conn, loaded.scope, loaded.conversation_id) is not False:
        return False
    conversation = conv_repo.get_joined(conn, loaded.scope, loaded.conversation_id)
    state = repo.get_state(conn, loaded.scope, loaded.conversation_id)
    if state is not None:
        if state.state not in ACTIVE_STATES or set((state.context or {}).get("seen", [])) & {m.id for m in loaded.pending}:
            return False
    decision, replies = result.decision, result.replies
    appointment_id = None
    if decision.book is not None:
        taken = repo.taken_booking_keys(conn, loaded.scope, decision.book.start - timedelta(minutes=1), decision.book.start + timedelta(minutes=1))
        key = free_seat(decision.book, taken)
        if key is None:
            # Someone took the seat since we read: decide again with what is free now.
            inp = replace(inp, slots=free_slots(conn, loaded.scope, loaded.patterns, now, loaded.tz))
            decision = decide(inp)
            replies = [Outgoing(r.text, result.model) for r in decision.replies]
        else:
            appointment_id = _book(uow, loaded, decision, key)

    _write_transcript(uow, loaded, replies, result)
    context = dict(decision.context)
    seen = [*context.get("seen", []), *(m.id for m in loaded.pending)][-SEEN_KEEP:]
    context.update(seen=seen, cursor_at=max(m.created_at for m in loaded.pending).isoformat())
    if appointment_id:
        context["appointment_id"] = appointment_id
    _save_state(uow, loaded, state, decision, context, result.model)
    contact = _update_contact(uow, loaded, decision)
    for reply in replies:
        _send(uow, ws, loaded.conversation_id, reply)
    if decision.handoff is not None:
        _handoff(uow, loaded, decision, conversation, contact, appointment_id)
    return True


def _book(uow: UnitOfWork, loaded: Loaded, decision: Decision, key: str) -> str:
    slot = decision.book
    assert slot is not None
    appointment_id = new_id()
    values = {
        "id": appointment_id,
        "workspace_id": loaded.workspace_id,
        "conversation_id": loaded.conversation_id,
        "contact_id": loaded.contact_id,
        "slot_id": slot.slot_id,
        "consultant_id": slot.consultant_id,
        "scheduled_at": slot.start,
        "duration_minutes": slot.duration_minutes,
        "status": "scheduled",
        "booking_key": key,
        "notes": f"Booked via ARI. Lead score: {decision.score.total}",
        "created_at": uow.now,
        "updated_at": uow.now,
    }
    repo.insert_row(uow.conn, t.ari_appointments, values)
    out = appointment_out(repo.get_appointment(uow.conn, loaded.scope, appointment_id))
    uow.emit(loaded.workspace_id, events.APPOINTMENT_CREATED, payload(out), contact_id=loaded.contact_id)
    return appointment_id


def _write_transcript(uow: UnitOfWork, loaded: Loaded, replies: list[Outgoing], result: TurnResult) -> None:
    rows = []
    base = {"workspace_id": loaded.workspace_id, "conversation_id": loaded.conversation_id}
    # Strictly increasing times keep the order of a turn's rows on both backends.
    tick = 0

    def at() -> datetime:
        nonlocal tick
        tick += 1
        return uow.now + timedelta(microseconds=tick)

    for message in loaded.pending:
        rows.append({**base, "id": new_id(), "role": "user", "content": message.text.strip(), "metadata": {"message_id": message.id}, "created_at": at()})
    for error in result.errors:
        rows.append({**base, "id": new_id(), "role": "system", "content": f"{error}. Sent fallback message.", "metadata": {"usage": result.usage}, "created_at": at()})
    for note in result.notes:
        rows.append({**base, "id": new_id(), "role": "system", "content": note, "metadata": {}, "created_at": at()})
    for reply in replies:
        rows.append(
            {
                **base,
                "id": new_id(),
                "role": "assistant",
                "content": reply.text,
                "model": reply.model,
                "tokens_used": reply.tokens,
                "latency_ms": reply.latency_ms,
                "metadata": {"state": result.decision.state},
                "created_at": at(),
            }
        )
    repo.insert_transcript(uow.conn, rows)


def _save_state(uow: UnitOfWork, loaded: Loaded, state: Any, decision: Decision, context: dict[str, Any], model: str) -> None:
    now, ws = uow.now, loaded.workspace_id
    values: dict[str, Any] = {
        "state": decision.state,
        "lead_score": decision.score.total,
        "lead_temperature": decision.score.temperature,
        "score_breakdown": {**decision.score.breakdown, "reasons": decision.score.reasons},
        "context": context,
        "model": model,
        "messages_in_state": decision.messages_in_state,
        "updated_at": now,
    }
    if decision.path or state is None:
        values["state_changed_at"] = now
    if decision.handoff is not None:
        values.update(handoff_reason=decision.handoff.reason, handoff_at=now)
    if state is None:
        repo.insert_state(uow.conn, {"workspace_id": ws, "conversation_id": loaded.conversation_id, "contact_id": loaded.contact_id, "created_at": now, **values})
    else:
        repo.update_state(uow.conn, loaded.scope, loaded.conversation_id, values)
    previous = state.state if state is not None else "greeting"
    for target in decision.path:
        data = {"conversation_id": loaded.conversation_id, "contact_id": loaded.contact_id, "from": previous, "to": target, "lead_score": decision.score.total, "lead_temperature": decision.score.temperature}
        if target == "handoff" and decision.handoff is not None:
            data["reason"] = decision.handoff.reason
        uow.emit(ws, events.ARI_STATE_CHANGED, data, contact_id=loaded.contact_id)
        previous = target


def _update_contact(uow: UnitOfWork, loaded: Loaded, decision: Decision) -> Any:
    """Answers into attributes (name/email columns only when empty), score, status — never a
    status a human set — and handoff tags."""
    row = repo.get_contact(uow.conn, loaded.scope, loaded.contact_id)
    values: dict[str, Any] = {}
    attrs = dict(row.attributes or {})
    for key, value in decision.new_answers.items():
        if key in ("name", "email"):
            if not getattr(row, key):
                values[key] = value[:200] if key == "name" else value[:320]
        if key in FIELDS and key not in ("name", "email"):
            attrs[key] = value
    documents = {k: v for k, v in decision.documents.items() if v is not None}
    if documents and documents != attrs.get("documents"):
        attrs["documents"] = documents
    if attrs != (row.attributes or {}):
        values["attributes"] = attrs
    if row.lead_score != decision.score.total:
        values["lead_score"] = decision.score.total
    if row.lead_status_set_by != "human" and row.lead_status != decision.lead_status:
        values["lead_status"] = decision.lead_status
        values["lead_status_set_by"] = "ari"
    if decision.handoff is not None:
        tags = list(row.tags or [])
        tags += [tag for tag in decision.handoff.tags if tag not in tags]
        if tags != list(row.tags or []):
            values["tags"] = tags
    if not values:
        return row
    if "name" in values or "email" in values:
        merged = {**row._asdict(), **values}
        values["search_text"] = search_text_for(name=merged["name"], profile_name=merged["profile_name"], email=merged["email"], phone_e164=merged["phone_e164"], username=merged.get("username"))
    values["updated_at"] = uow.now
    contacts_repo.update_contact(uow.conn, loaded.scope, loaded.contact_id, values)
    row = repo.get_contact(uow.conn, loaded.scope, loaded.contact_id)
    uow.emit(loaded.workspace_id, events.CONTACT_UPDATED, payload(contact_out(row)), contact_id=loaded.contact_id)
    return row


def _send(uow: UnitOfWork, workspace_id: str, conversation_id: str, reply: Outgoing) -> None:
    """A bot reply through the same send path as staff replies (a pending message + send job)."""
    meta = {"ari": {"model": reply.model, "tokens": reply.tokens, "latency_ms": reply.latency_ms}}
    try:
        create_outbound_message(uow, workspace_id=workspace_id, conversation_id=conversation_id, sender_type="bot", sender_id=None, type="text", text=reply.text, metadata=meta)
    except Problem as exc:  # e.g. outside the 24-hour window: record it, never fail the turn
        log.warning("ARI reply not sent in conversation %s: %s", conversation_id, exc.detail)
        repo.insert_transcript(uow.conn, [{"id": new_id(), "workspace_id": workspace_id, "conversation_id": conversation_id, "role": "system", "content": f"Reply not sent: {exc.detail}", "metadata": {}, "created_at": uow.now}])


def _handoff(uow: UnitOfWork, loaded: Loaded, decision: Decision, conversation: Any, contact: Any, appointment_id: str | None) -> None:
    """A human owns the conversation from now: summary task note, assignment, ai_paused, event."""
    handoff = decision.handoff
    assert handoff is not None
    ws = loaded.workspace_id
    note = {
        "id": new_id(),
        "workspace_id": ws,
        "contact_id": loaded.contact_id,
        "author_id": None,
        "author_type": "bot",
        "note_type": "ari_handoff",
        "content": handoff.summary,
        "due_at": handoff.due_at,
        "completed_at": None,
        "metadata": {"reason": handoff.reason, "lead_score": decision.score.total, "appointment_id": appointment_id},
        "created_at": uow.now,
        "updated_at": uow.now,
    }
    contacts_repo.insert_note(uow.conn, note)
    uow.emit(ws, events.NOTE_CREATED, payload(note_out(SimpleNamespace(**note))), contact_id=loaded.contact_id)
    consultant = decision.book.consultant_id if decision.book is not None else None
    assignee = conversation.assignee_id
    if assignee is None and consultant is not None and assignment.is_assignable(uow.conn, loaded.scope, consultant):
        # The booked consultant owns the customer now (contact and conversation, with events).
        assignee = consultant
        assignment.assign(uow, loaded.scope, contact_id=loaded.contact_id, assignee_id=consultant)
    write_changes(uow, loaded.scope, conv_repo.get_joined(uow.conn, loaded.scope, loaded.conversation_id), {"ai_paused": True})
    uow.emit(
        ws,
        events.ARI_HANDOFF,
        {
            "conversation_id": loaded.conversation_id,
            "contact_id": loaded.contact_id,
            "reason": handoff.reason,
            "summary": handoff.summary,
            "note_id": note["id"],
            "due_at": handoff.due_at.isoformat(),
            "assignee_id": assignee,
            "appointment_id": appointment_id,
            "lead_score": decision.score.total,
            "lead_temperature": decision.score.temperature,
            "tags": handoff.tags,
        },
        contact_id=loaded.contact_id,
    )


async def process_turn(runtime: Any, workspace_id: str, conversation_id: str, message_id: str | None, *, client: Any = None) -> bool:
    """Answer everything a customer wrote that ARI has not answered yet. True if it replied."""
    now = utcnow()
    loaded = await runtime.db.read(load_turn, workspace_id, conversation_id, message_id, runtime.cipher, now)
    if loaded is None:
        return False
    inp = turn_input(loaded, now)
    if client is None and loaded.target is not None:  # the model is called through the egress guard
        async with egress.client(allow_private=egress.private_allowed(runtime.settings)) as guarded:
            result = await run_llm(loaded, inp, client=guarded)
    else:
        result = await run_llm(loaded, inp, client=client)
    applied = await runtime.db.transaction(apply_turn, loaded, inp, result)
    handoff = result.decision.handoff
    TURNS.labels("superseded" if not applied else "fallback" if result.errors else "handoff" if handoff else "replied").inc()
    return applied


# =============================================================================================
# Reminders


def remind_workspace(uow: UnitOfWork, workspace_id: str, tz: ZoneInfo | None = None) -> int:
    """Send the reminders due within the hour in one workspace; each at most once."""
    conn, now, scope = uow.conn, uow.now, system_scope(workspace_id)
    tz = tz or _zone(conn, workspace_id)
    sent = 0
    for appt in repo.reminders_due(conn, scope, now, now + REMINDER_LEAD):
        if not repo.claim_reminder(conn, scope, appt.id, now):
            continue
        text = rules.reminder(appt.scheduled_at, appt.duration_minutes, appt.meeting_link, tz)
        _send(uow, workspace_id, appt.conversation_id, Outgoing(text, "reminder"))
        repo.insert_transcript(conn, [{"id": new_id(), "workspace_id": workspace_id, "conversation_id": appt.conversation_id, "role": "assistant", "content": text, "model": "reminder", "metadata": {"appointment_id": appt.id}, "created_at": now}])
        uow.emit(workspace_id, events.APPOINTMENT_UPDATED, payload(appointment_out(repo.get_appointment(conn, scope, appt.id))), contact_id=appt.contact_id)
        sent += 1
    return sent


async def send_reminders(runtime: Any) -> int:
    total = 0
    for workspace_id in await runtime.db.read(repo.configured_workspaces):
        total += await runtime.db.transaction(remind_workspace, workspace_id)
    return total


