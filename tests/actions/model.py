"""A client-side model of what an open Kabar page holds, built from REST reads and kept current by
applying events, as the web client (``web/static/js/inbox.js``, ``contact-panel.js``, ``realtime.js``)
does. ``verify_action`` (harness.py) compares it after an action's events with a fresh read.

Every collection is keyed by id. What a viewer reads depends on their role: a ``member`` reads only
what the visibility rule shows them, and settings they may not read are simply absent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# Collections read from one list endpoint (relative to /v1/workspaces/{ws}); key = the id field.
LISTS: dict[str, tuple[str, str]] = {
    "conversations": ("/conversations", "id"),
    "contacts": ("/contacts", "id"),
    "members": ("/members", "user_id"),
    "invitations": ("/invitations", "id"),
    "api_keys": ("/api-keys", "id"),
    "webhooks": ("/webhooks", "id"),
    "flow_stages": ("/ari/flow-stages", "id"),
    "knowledge": ("/ari/knowledge", "id"),
    "slots": ("/ari/slots", "id"),
    "appointments": ("/ari/appointments", "id"),
}
# One resource each.
SINGLES: dict[str, str] = {
    "workspace": "",
    "channel": "/channel",
    "ari_config": "/ari/config",
    "ari_scoring": "/ari/scoring",
}
# Settings pages (settings.js) are for owners and admins, and their events go to them only
# (kabar.events.AUDIENCE); a member's pages do not hold these.
MANAGER_PAGES = frozenset({"invitations", "api_keys", "webhooks", "flow_stages", "knowledge", "slots", "channel", "ari_config", "ari_scoring"})
# Event type (or "prefix.") -> the collection or single it updates (the rest: see ``apply``).
SIMPLE_EVENTS: dict[str, str] = {
    "member.": "members",
    "invitation.": "invitations",
    "api_key.": "api_keys",
    "webhook.": "webhooks",
    "ari.flow_stage.": "flow_stages",
    "ari.knowledge.": "knowledge",
    "ari.slot.": "slots",
    "appointment.": "appointments",
    "workspace.updated": "workspace",
    "channel.updated": "channel",
    "ari.config_updated": "ari_config",
    "ari.scoring_updated": "ari_scoring",
}
GONE_VERBS = ("deleted", "removed")
# Events that change nothing a page lists: ``upload.created`` (an upload is reachable only through
# the message that sends it), ``workspace.created`` (before anyone has the page open).
NO_STATE = frozenset({"upload.created", "workspace.created"})
# Fields of a conversation's contact summary that a contact.updated refreshes (inbox.js pickSummary).
SUMMARY = ("id", "phone", "whatsapp_user_id", "username", "name", "profile_name", "lead_status", "lead_score", "tags")
# ARI events are hints: the panel reloads the conversation's ARI state (contact-panel.js loadAri).
HINTS = ("ari.state_changed", "ari.handoff")
# Payload fields that say who gets an event, not part of the resource (kabar.realtime.service).
ROUTING = frozenset({"previous_assignee_id"})


@dataclass
class Model:
    viewer_id: str | None  # the member's user id; None for owner/admin (sees everything)
    lists: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    singles: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # conversation id -> messages
    notes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # contact id -> notes
    ari: dict[str, Any] = field(default_factory=dict)  # conversation id -> its ARI state (GET …/ari)
    stale_ari: set[str] = field(default_factory=set)  # conversations whose ARI state a hint said to reload
    unhandled: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # conversations created after the snapshot
    stale_threads: set[str] = field(default_factory=set)  # conversations whose history a merge changed
    stale_notes: set[str] = field(default_factory=set)  # contacts whose notes a merge changed
    reload: bool = False  # the viewer's own role changed: the page reloads (what it may see changed)

    def copy(self) -> Model:
        return copy.deepcopy(self)

    # -- applying events (what the page's JS does) -------------------------------------------

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        data = {k: v for k, v in event["data"].items() if k not in ROUTING} if isinstance(event["data"], dict) else event["data"]
        if kind in NO_STATE:
            return
        if kind.startswith("conversation."):
            self._conversation(kind, data)
        elif kind.startswith("message."):
            # The open thread takes it (inbox.js upsertMessage); a conversation that only came
            # into view loads its history when opened, but a brand-new one starts from its events.
            if data["conversation_id"] in self.messages or data["conversation_id"] in self.created:
                self._put(self.messages.setdefault(data["conversation_id"], {}), data)
        elif kind.startswith("contact."):
            self._contact(kind, data)
        elif kind.startswith("note."):
            notes = self.notes.setdefault(data["contact_id"], {})
            if kind == "note.deleted":
                notes.pop(data["id"], None)
            else:
                self._put(notes, data)
        elif kind.startswith("member.") and self.viewer_id is not None and data.get("user_id") == self.viewer_id:
            self.reload = True
        elif kind in HINTS:
            self.stale_ari.add(data["conversation_id"])
        else:
            target = next((name for key, name in SIMPLE_EVENTS.items() if kind == key or (key.endswith(".") and kind.startswith(key))), None)
            if target is None:
                self.unhandled.append(kind)
            elif target in SINGLES:
                self.singles[target] = {**self.singles.get(target, {}), **data}
            else:
                items, key = self.lists.setdefault(target, {}), LISTS[target][1]
                if kind.rsplit(".", 1)[1] in GONE_VERBS:
                    items.pop(data[key], None)
                else:
                    items[data[key]] = {**items.get(data[key], {}), **data}

    def _visible(self, assignee_id: Any) -> bool:
        return self.viewer_id is None or assignee_id in (None, self.viewer_id)

    @staticmethod
    def _put(items: dict[str, Any], data: dict[str, Any]) -> None:
        items[data["id"]] = {**items.get(data["id"], {}), **data}

    def _conversation(self, kind: str, data: dict[str, Any]) -> None:
        conversations = self.lists.setdefault("conversations", {})
        if kind == "conversation.deleted" and data.get("merged_into") in self.messages:
            self.stale_threads.add(data["merged_into"])  # its messages moved there: reload the open thread
        if kind == "conversation.deleted" or not self._visible(data.get("assignee_id")):
            conversations.pop(data["id"], None)
            self.messages.pop(data["id"], None)
            self.ari.pop(data["id"], None)
        else:
            if kind == "conversation.created":
                self.created.add(data["id"])
            self._put(conversations, data)

    def _contact(self, kind: str, data: dict[str, Any]) -> None:
        contacts = self.lists.setdefault("contacts", {})
        if kind == "contact.merged":
            self._drop_contact(data["merged_id"])
            data = data["contact"]
            if data["id"] in self.notes:
                self.stale_notes.add(data["id"])  # the merged contact's notes moved over: reload them
        if kind == "contact.deleted" or not self._visible(data.get("assignee_id")):
            self._drop_contact(data["id"])
            return
        self._put(contacts, data)
        for conversation in self.lists.get("conversations", {}).values():
            if conversation["contact"]["id"] == data["id"]:
                conversation["contact"] = {**conversation["contact"], **{k: data[k] for k in SUMMARY if k in data}}

    def _drop_contact(self, contact_id: str) -> None:
        self.lists.get("contacts", {}).pop(contact_id, None)
        self.notes.pop(contact_id, None)
        for conversation_id in [c["id"] for c in self.lists.get("conversations", {}).values() if c["contact"]["id"] == contact_id]:
            self._conversation("conversation.deleted", {"id": conversation_id})


# -- reading state over REST --------------------------------------------------------------------


async def _read_all(client: Any, url: str, headers: dict[str, str]) -> list[dict[str, Any]] | None:
    """Every item of a list endpoint (following ``next_cursor``); None if this viewer may not read it."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=params, headers=headers)
        if response.status_code in (403, 404):
            return None
        assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text}"
        body = response.json()
        if isinstance(body, list):
            return body
        items.extend(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


async def read_model(client: Any, base: str, headers: dict[str, str], viewer_id: str | None) -> Model:
    """Everything a page of this viewer shows, read fresh over REST."""
    model = Model(viewer_id)
    for name, (path, key) in LISTS.items():
        if viewer_id is not None and name in MANAGER_PAGES:
            continue
        items = await _read_all(client, base + path, headers)
        if items is not None:
            model.lists[name] = {item[key]: item for item in items}
    for name, path in SINGLES.items():
        if viewer_id is not None and name in MANAGER_PAGES:
            continue
        response = await client.get(base + path, headers=headers)
        if response.status_code == 200:
            model.singles[name] = response.json()
    for conversation_id in model.lists.get("conversations", {}):
        model.messages[conversation_id] = {m["id"]: m for m in await _read_all(client, f"{base}/conversations/{conversation_id}/messages", headers) or []}
        await _read_ari(client, base, headers, model, conversation_id)
    for contact_id in model.lists.get("contacts", {}):
        model.notes[contact_id] = {n["id"]: n for n in await _read_all(client, f"{base}/contacts/{contact_id}/notes", headers) or []}
    return model


async def _read_ari(client: Any, base: str, headers: dict[str, str], model: Model, conversation_id: str) -> None:
    response = await client.get(f"{base}/conversations/{conversation_id}/ari", headers=headers)
    if response.status_code == 200:
        model.ari[conversation_id] = response.json()


async def reload_hinted(client: Any, base: str, headers: dict[str, str], model: Model) -> None:
    """What the page does on a hint: reload a conversation's ARI state (the panel on an ARI event),
    an open thread or notes list that a merge filled from elsewhere."""
    conversations = model.lists.get("conversations", {})
    for conversation_id in sorted(model.stale_ari & set(conversations)):
        await _read_ari(client, base, headers, model, conversation_id)
    for conversation_id in sorted(model.stale_threads & set(conversations)):
        model.messages[conversation_id] = {m["id"]: m for m in await _read_all(client, f"{base}/conversations/{conversation_id}/messages", headers) or []}
    for contact_id in sorted(model.stale_notes & set(model.lists.get("contacts", {}))):
        model.notes[contact_id] = {n["id"]: n for n in await _read_all(client, f"{base}/contacts/{contact_id}/notes", headers) or []}
    model.stale_ari.clear()
    model.stale_threads.clear()
    model.stale_notes.clear()


# -- comparing ----------------------------------------------------------------------------------

# Fields that legitimately are not event-driven (each with why):
IGNORED: dict[str, frozenset[str]] = {
    # The caller's own role, computed per reader: the event carries the writer's.
    "workspace": frozenset({"role"}),
    # Written in the background on every request made with the key, not by an action.
    "api_keys": frozenset({"last_used_at"}),
    # Delivery bookkeeping of an outgoing webhook (the log position it reached) moves with every
    # delivery; the settings page shows it after a reload.
    "webhooks": frozenset({"last_seq"}),
}


# ARI flow stages listed while none are stored are the built-in defaults ("default-0" …), not rows:
# the first stored stage replaces them, so no event can speak for them.
PLACEHOLDER = "default-"


def diff(expected: Model, actual: Model) -> list[str]:
    """Differences between the model after the events (``expected``) and a fresh read (``actual``),
    one readable line each."""
    problems: list[str] = []

    def items(label: str, mine: dict[str, Any], fresh: dict[str, Any], ignored: frozenset[str] = frozenset()) -> None:
        for key in sorted(set(mine) | set(fresh)):
            if key not in fresh:
                problems.append(f"{label}[{key}]: still in the model, gone from a refetch")
            elif key not in mine:
                problems.append(f"{label}[{key}]: in a refetch, no event brought it")
            else:
                fields(f"{label}[{key}]", mine[key], fresh[key], ignored)

    def fields(label: str, mine: dict[str, Any], fresh: dict[str, Any], ignored: frozenset[str]) -> None:
        for name in sorted(set(mine) | set(fresh)):
            if name in ignored:
                continue
            if mine.get(name, "<absent>") != fresh.get(name, "<absent>"):
                problems.append(f"{label}.{name}: model {mine.get(name, '<absent>')!r} != refetch {fresh.get(name, '<absent>')!r}")

    for name in sorted(set(expected.lists) | set(actual.lists)):
        mine, fresh = ({k: v for k, v in m.lists.get(name, {}).items() if not k.startswith(PLACEHOLDER)} for m in (expected, actual))
        items(name, mine, fresh, IGNORED.get(name, frozenset()))
    for name in sorted(set(expected.singles) | set(actual.singles)):
        fields(name, expected.singles.get(name, {}), actual.singles.get(name, {}), IGNORED.get(name, frozenset()))
    for conversation_id in actual.lists.get("conversations", {}):
        # Threads the page holds: a conversation that just came into view loads its history
        # when opened (one that was created by the action has its messages from events).
        if conversation_id in expected.messages:
            items(f"messages of {conversation_id}", expected.messages[conversation_id], actual.messages.get(conversation_id, {}))
        if conversation_id in expected.ari:  # an open panel; a new conversation loads it when opened
            fields(f"ari of {conversation_id}", expected.ari.get(conversation_id, {}), actual.ari[conversation_id], frozenset())
    for contact_id in actual.lists.get("contacts", {}):
        if contact_id in expected.notes:  # as for threads: a contact that came into view loads its notes when opened
            items(f"notes of {contact_id}", expected.notes.get(contact_id, {}), actual.notes.get(contact_id, {}))
    problems.extend(f"no client handler for event type {kind!r}" for kind in expected.unhandled)
    return problems

