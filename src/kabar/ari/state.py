"""ARI's states and the transitions allowed between them (original-system §6.2).

``handoff`` is reachable from every state (the escape hatch). ``payment`` is reserved: no flow
enters it yet.
"""

from __future__ import annotations

STATES = ("greeting", "qualifying", "scoring", "booking", "payment", "scheduling", "handoff", "completed")
ACTIVE_STATES = frozenset(STATES) - {"handoff", "completed"}

TRANSITIONS: dict[str, frozenset[str]] = {
    "greeting": frozenset({"qualifying"}),
    "qualifying": frozenset({"qualifying", "scoring"}),
    "scoring": frozenset({"scoring", "booking"}),
    "booking": frozenset({"booking", "scheduling"}),
    "payment": frozenset({"payment", "scheduling"}),
    "scheduling": frozenset({"scheduling"}),
    "handoff": frozenset({"completed"}),
    "completed": frozenset(),
}

LABELS = {
    "greeting": "Menyapa",
    "qualifying": "Kualifikasi",
    "scoring": "Penilaian",
    "booking": "Penawaran konsultasi",
    "payment": "Pembayaran",
    "scheduling": "Penjadwalan",
    "handoff": "Diserahkan ke konsultan",
    "completed": "Selesai",
}

# Messages in one state before ARI gives up and hands the conversation to a human.
DEFAULT_HANDOFF_AFTER = 10


def can_transition(current: str, target: str) -> bool:
    if target == "handoff":
        return current not in ("handoff", "completed")
    return target in TRANSITIONS.get(current, frozenset())


def is_stuck(state: str, messages_in_state: int, limit: int = DEFAULT_HANDOFF_AFTER) -> bool:
    """More than ``limit`` customer messages since the last state change."""
    return state in ACTIVE_STATES and messages_in_state > limit
