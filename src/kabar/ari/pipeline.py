"""One ARI turn as a pure function: (state, what the customer just wrote, what we know) → decision.

extract → merge answers → score → route → next state → reply (or an instruction for the LLM to
write it) → bookings and handoffs to apply. No I/O and no clock: the service loads the inputs,
calls ``decide``, asks the LLM for the words where the decision says so, and applies the result
in one transaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kabar.ari import rules
from kabar.ari.booking import MAX_LISTED, Slot, match_request, pick_number
from kabar.ari.dates import JAKARTA, When, format_when, greeting_word, parse_when
from kabar.ari.extract import DOCUMENTS, FIELD_LABELS, REQUIRED_FIELDS, Extraction, extract
from kabar.ari.routing import CRM_STATUS, Routing, route, unasked_documents
from kabar.ari.scoring import Score, Weights, score_lead
from kabar.ari.state import DEFAULT_HANDOFF_AFTER, can_transition, is_stuck

MAX_ASKS = 2  # a question asked twice without an answer is skipped
TOPICS = {"universitas": "universitas", "kampus": "universitas", "biaya": "biaya", "beasiswa": "beasiswa", "visa": "visa", "ielts": "IELTS", "dokumen": "dokumen"}


@dataclass(frozen=True)
class Config:
    bot_name: str = "ARI"
    greeting_style: str = "professional"
    greeting_template: str | None = None  # "Halo {name}, saya {bot_name}…" (tone.greeting_template)
    community_link: str | None = None
    handoff_after: int = DEFAULT_HANDOFF_AFTER
    weights: Weights = Weights()
    tz: ZoneInfo = JAKARTA


@dataclass
class TurnInput:
    now: datetime
    state: str
    context: dict[str, Any]
    messages_in_state: int
    texts: list[str]  # the customer's new messages, oldest first
    answers: dict[str, str]  # what we know already (form data, contact, earlier turns)
    config: Config = field(default_factory=Config)
    slots: list[Slot] = field(default_factory=list)  # free consultation times now
    knowledge: list[dict[str, Any]] = field(default_factory=list)
    destinations: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # earlier customer messages (for the summary)
    llm_extraction: Extraction | None = None


@dataclass
class Reply:
    text: str  # the words (rule-based mode, and fixed messages in every mode)
    instruction: str | None = None  # set when an LLM, if configured, should write the reply instead


@dataclass
class Handoff:
    reason: str
    tags: list[str]
    due_at: datetime
    summary: str


@dataclass
class Decision:
    state: str
    path: list[str]  # states entered this turn, in order
    context: dict[str, Any]
    messages_in_state: int
    answers: dict[str, str]  # all answers after this turn
    new_answers: dict[str, str]  # answers learned this turn
    documents: dict[str, bool | None]
    score: Score
    routing: Routing
    replies: list[Reply] = field(default_factory=list)
    handoff: Handoff | None = None
    book: Slot | None = None

    @property
    def lead_status(self) -> str:
        return CRM_STATUS[self.score.temperature]


class _Turn:
    """The mutable working state of ``decide``."""

    def __init__(self, inp: TurnInput):
        self.inp = inp
        self.ctx = copy.deepcopy(inp.context)
        self.text = "\n".join(inp.texts)
        pending = self.ctx.get("pending")
        ex = Extraction()
        for text in inp.texts:
            ex = ex.merge(extract(text, pending))
        if inp.llm_extraction is not None:
            ex = ex.merge(inp.llm_extraction)
        self.ex = ex
        self.answers = dict(inp.answers)
        self.new_answers = {k: v for k, v in ex.fields.items() if v and str(self.answers.get(k) or "") != v}
        self.answers.update(self.new_answers)
        self.documents: dict[str, bool | None] = {key: self.ctx.get("documents", {}).get(key) for key in DOCUMENTS}
        self.new_documents = {k: v for k, v in ex.documents.items() if self.documents.get(k) != v}
        self.documents.update(ex.documents)
        answered = set(self.ctx.get("answered", [])) | set(self.new_answers) | {f"doc:{k}" for k in self.new_documents}
        self.ctx["answered"] = sorted(answered)
        self.state = inp.state
        self.path: list[str] = []
        self.replies: list[Reply] = []
        self.handoff: Handoff | None = None
        self.book: Slot | None = None
        self.score = self._score()
        self.routing = route(self.answers, self.documents, self.score, community_link=inp.config.community_link, skipped=self.ctx.get("skipped", []))

    # -- helpers --------------------------------------------------------------------------------

    def _score(self) -> Score:
        engagement = min(10, 5 + len(self.ctx["answered"]) // 2)
        year = self.inp.now.astimezone(self.inp.config.tz).year
        return score_lead(self.answers, self.documents, engagement, weights=self.inp.config.weights, year=year)

    def go(self, state: str) -> None:
        if state == self.state:
            return
        if not can_transition(self.state, state):
            raise ValueError(f"ARI cannot go from {self.state} to {state}")
        self.state = state
        self.path.append(state)

    def say(self, text: str, instruction: str | None = None) -> None:
        self.replies.append(Reply(text, instruction))

    @property
    def tz(self) -> ZoneInfo:
        return self.inp.config.tz

    @property
    def name(self) -> str | None:
        return self.answers.get("name")

    def question_answer(self) -> str | None:
        """The knowledge-base answer to a question the customer asked, if we have one."""
        if not self.ex.question:
            return None
        return rules.knowledge_answer(self.text, self.inp.knowledge, self.inp.destinations, self.answers.get("country"))

    def do_handoff(self, reason: str, message: str | None = None, *, due_at: datetime | None = None, slot: Slot | None = None) -> None:
        now = self.inp.now
        if due_at is None:
            due_at = now + (timedelta(days=30) if reason.startswith("cold_lead") else timedelta(hours=1))
        self.go("handoff")
        self.ctx["pending"] = None
        self.handoff = Handoff(
            reason=reason,
            tags=rules.HANDOFF_TAGS.get(reason, rules.DEFAULT_HANDOFF_TAGS),
            due_at=due_at,
            summary=self.summary(reason, slot),
        )
        text = message if message is not None else rules.HANDOFF_MESSAGES[reason]
        if text:
            self.say(text)

    def summary(self, reason: str, slot: Slot | None) -> str:
        lines = [f"[ARI] Ringkasan handoff — {rules.HANDOFF_LABELS.get(reason, reason)}"]
        lines.append(f"Skor lead: {self.score.total}/100 ({self.score.temperature})")
        known = [f"{FIELD_LABELS[k]}: {self.answers[k]}" for k in FIELD_LABELS if str(self.answers.get(k) or "").strip()]
        lines.append(" · ".join(known) if known else "Belum ada data kualifikasi.")
        lines.append(f"Dokumen: {rules.document_summary(self.documents)}")
        texts = " ".join(self.inp.history + self.inp.texts).lower()
        topics = sorted({label for word, label in TOPICS.items() if word in texts})
        if topics:
            lines.append("Topik yang ditanyakan: " + ", ".join(topics))
        count = len(self.inp.history) + len(self.inp.texts)
        if count > 20:
            lines.append(f"Sangat aktif: {count} pesan.")
        elif count > 10:
            lines.append(f"Cukup aktif: {count} pesan.")
        if slot is not None:
            lines.append(f"Jadwal konsultasi: {format_when(slot.start, self.tz)} ({slot.duration_minutes} menit)")
        if self.routing.notes:
            lines.append(self.routing.notes)
        return "\n".join(lines)

    def next_question(self) -> str | None:
        """The first thing still to ask: required fields in order, then documents."""
        asked = self.ctx.setdefault("asked", {})
        skipped = self.ctx.setdefault("skipped", [])
        for key in REQUIRED_FIELDS:
            if str(self.answers.get(key) or "").strip() or key in skipped:
                continue
            if asked.get(key, 0) >= MAX_ASKS:
                skipped.append(key)  # asked twice, no usable answer: move on
                continue
            return key
        for key in unasked_documents(self.documents):
            if asked.get(f"doc:{key}", 0) >= MAX_ASKS:
                self.documents[key] = False  # no clear answer twice: treat as not ready
                continue
            return f"doc:{key}"
        return None

    # -- states ---------------------------------------------------------------------------------

    def run(self) -> None:
        inp = self.inp
        if self.ex.wants_human:
            return self.do_handoff("customer_request")
        if is_stuck(self.state, inp.messages_in_state + len(inp.texts), inp.config.handoff_after):
            return self.do_handoff("auto_handoff_stuck")
        getattr(self, f"on_{self.state}")()

    def on_greeting(self) -> None:
        self.go("qualifying")
        cfg = self.inp.config
        hello = rules.greeting(cfg.bot_name, greeting_word(self.inp.now, self.tz), self.name, cfg.greeting_template)
        self.qualify(prefix=hello, greeting=True)

    def on_qualifying(self) -> None:
        self.qualify()

    def qualify(self, prefix: str = "", greeting: bool = False) -> None:
        pending = self.ctx.get("pending")
        key = self.next_question()
        # Recomputed: next_question may have skipped fields or settled documents.
        self.score = self._score()
        self.routing = route(self.answers, self.documents, self.score, community_link=self.inp.config.community_link, skipped=self.ctx.get("skipped", []))
        if key is None:
            self.go("scoring")
            return self.after_scoring(prefix=prefix)
        self.ctx["asked"][key] = self.ctx["asked"].get(key, 0) + 1
        self.ctx["pending"] = key
        parts = [prefix] if prefix else []
        answer = self.question_answer()
        if answer:
            parts.append(answer)
        elif self.new_answers and not greeting:
            parts.append(rules.acknowledgement(self.name, self.new_answers))
        elif greeting and "country" in self.new_answers:
            parts.append(rules.acknowledgement(self.name, {"country": self.new_answers["country"]}))
        elif pending == key and not self.new_documents:
            parts.append(rules.NOT_UNDERSTOOD)
        question = rules.QUESTIONS[key]
        parts.append(question)
        instruction = (
            ("Sapa pelanggan (ini pesan pertamanya). " if greeting else "")
            + "Jawab singkat pertanyaan pelanggan bila ada, lalu ajukan SATU pertanyaan ini dengan kata-katamu sendiri: "
            + question
        )
        self.say(" ".join(p for p in parts if p), instruction)

    def after_scoring(self, prefix: str = "") -> None:
        """Routing of a lead whose qualification is complete."""
        action = self.routing.action
        lead = f"{prefix} " if prefix else ""
        if action == "offer_consultation":
            if not self.inp.slots:
                return self.do_handoff("no_slots", lead + rules.HANDOFF_MESSAGES["no_slots"])
            self.go("booking")
            self.ctx["pending"] = "booking_offer"
            text = lead + rules.booking_offer(self.name)
            return self.say(text, "Tawarkan konsultasi 1-on-1 dengan konsultan (jelaskan manfaatnya singkat) dan tanya apakah pelanggan mau dijadwalkan.")
        if action == "send_community_cold":
            link = self.inp.config.community_link
            if link:
                self.say(lead + rules.community_invite(link))
                return self.do_handoff("cold_lead_community_sent")
            return self.do_handoff("cold_lead", lead + rules.HANDOFF_MESSAGES["cold_lead"])
        # warm: keep the conversation going without pushing
        first = not self.ctx.get("nurtured")
        self.ctx["nurtured"] = True
        self.ctx["pending"] = None
        answer = self.question_answer()
        text = lead + (answer + " " + rules.nurture(False) if answer else rules.nurture(first))
        self.say(text.strip(), "Jawab pertanyaan pelanggan dengan ramah dan singkat. Jangan menawarkan konsultasi berbayar atau jadwal; tunggu pelanggan yang meminta.")

    def on_scoring(self) -> None:
        if self.routing.action == "offer_consultation" or (self.ex.wants_booking and self.routing.ready):
            if not self.inp.slots:
                return self.do_handoff("no_slots")
            self.go("booking")
            if self.ex.wants_booking:
                # They asked for it: go straight to the days.
                self.go("scheduling")
                return self.on_scheduling()
            return self.after_scoring()
        if not self.routing.ready:
            return self.qualify()  # new information reopened a question
        self.after_scoring()

    def on_booking(self) -> None:
        when = parse_when(self.text, self.inp.now, self.tz)
        if self.ex.declines and not when.day and not self.ex.wants_booking:
            return self.do_handoff("hot_lead")
        if self.ex.affirmative or self.ex.wants_booking or not when.empty:
            self.go("scheduling")
            return self.on_scheduling(when)
        answer = self.question_answer()
        text = f"{answer} {rules.booking_reoffer()}" if answer else rules.booking_reoffer()
        self.say(text, "Jawab pertanyaan pelanggan singkat, lalu tanyakan lagi apakah mau dijadwalkan konsultasi 1-on-1.")

    def on_scheduling(self, when: When | None = None) -> None:
        slots = self.inp.slots
        when = when or parse_when(self.text, self.inp.now, self.tz)
        if not slots:
            return self.do_handoff("no_slots")
        step = self.ctx.get("step") or "asking_day"
        shown = [Slot.from_json(s) for s in self.ctx.get("shown", [])]
        if step == "confirming" and self.ctx.get("selected"):
            selected = Slot.from_json(self.ctx["selected"])
            still_free = any(s.slot_id == selected.slot_id and s.start == selected.start for s in slots)
            same_time = when.empty or (when.day in (None, selected.local(self.tz).date()) and when.hour in (None, selected.local(self.tz).hour) and when.period is None)
            if self.ex.affirmative and same_time:
                if not still_free:
                    self.ctx.update(step="asking_day", selected=None, shown=[])
                    return self.say(rules.slot_taken(slots, self.tz))
                self.book = selected
                self.ctx.update(step="booked")
                return self.do_handoff("appointment_booked", rules.booked(selected, self.tz), due_at=selected.start, slot=selected)
            if self.ex.declines and when.empty:
                self.ctx.update(step="asking_day", selected=None)
                return self.say(rules.ask_day(slots, self.tz, prefix="Baik kak. "))
        if step == "showing_slots" and (picked := pick_number(self.text, shown)) is not None:
            return self.confirm(picked)
        focus = None
        if step in ("showing_slots", "confirming") and self.ctx.get("day"):
            focus = datetime.fromisoformat(self.ctx["day"]).date()
        match = match_request(when, slots, self.inp.now, focus if when.day is None else None, self.tz)
        if match.slot is not None:
            return self.confirm(match.slot)
        if match.day is not None:
            if match.day_slots:
                day_slots = list(match.day_slots)
                self.ctx.update(step="showing_slots", day=match.day.isoformat(), shown=[s.as_json() for s in day_slots[:MAX_LISTED]], selected=None)
                prefix = "Maaf kak, jam itu tidak tersedia. " if match.exact_miss else ""
                return self.say(rules.show_day(day_slots, self.tz, prefix))
            self.ctx.update(step="asking_day", shown=[], selected=None)
            return self.say(rules.no_slots_on(match.day, slots, self.tz))
        if self.ex.declines and not self.ex.affirmative:
            return self.do_handoff("hot_lead")
        if step == "showing_slots" and shown:
            return self.say(rules.show_day(shown, self.tz, prefix=rules.NOT_UNDERSTOOD + " "))
        self.ctx.update(step="asking_day", shown=[], selected=None)
        self.say(rules.ask_day(slots, self.tz))

    def confirm(self, slot: Slot) -> None:
        self.ctx.update(step="confirming", selected=slot.as_json(), day=slot.local(self.tz).date().isoformat())
        self.say(rules.confirm_slot(slot, self.tz))

    def on_payment(self) -> None:  # reserved state: nothing enters it; hand over if it ever does
        self.do_handoff("auto_handoff_stuck")


def _decision(turn: _Turn, messages_in_state: int) -> Decision:
    turn.ctx["documents"] = turn.documents
    return Decision(
        state=turn.state,
        path=turn.path,
        context=turn.ctx,
        messages_in_state=0 if turn.path else messages_in_state,
        answers=turn.answers,
        new_answers=turn.new_answers,
        documents=turn.documents,
        score=turn.score,
        routing=turn.routing,
        replies=turn.replies,
        handoff=turn.handoff,
        book=turn.book,
    )


def decide(inp: TurnInput) -> Decision:
    turn = _Turn(inp)
    turn.run()
    return _decision(turn, inp.messages_in_state + len(inp.texts))


def failure(inp: TurnInput) -> Decision:
    """The LLM failed: a short apology and a human takes over (never silence, never an error text)."""
    turn = _Turn(inp)
    turn.do_handoff("llm_error")
    return _decision(turn, 0)
