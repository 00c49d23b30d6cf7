"""Resolved credentials, remembered for a few seconds.

Bots call the hot read paths many times a second with the same API key, and resolving it costs
a database read. ``CredentialCache`` keeps (token, workspace, via cookie) → (Principal, role) for
``KABAR_AUTH_CACHE_SECONDS`` (default 5; 0 turns it off), and only for credentials that were
valid: an unknown or revoked token always goes to the database.

Revocation:
- **In this process, at once.** A unit of work that revokes credentials or changes what they may
  do (revoking an API key, logging out, changing a password, changing or removing a member) calls
  ``credentials_changed(uow)``; when that unit of work commits, every cache in the process is
  emptied, before the revoking request gets its response. An entry loaded while the change was
  committing is dropped too: entries remember the generation they were loaded under.
- **In other processes** (more server workers, CLI commands): within the TTL. Set
  ``KABAR_AUTH_CACHE_SECONDS=0`` where that is too long.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kabar.auth.permissions import Role
    from kabar.auth.scope import Principal
    from kabar.db.uow import UnitOfWork

MAX_ENTRIES = 10_000  # valid credentials only, so only an operator can fill it; then start over

# Bumped after a commit that changed credentials: every entry loaded before is stale.
_generation = 0
# Units of work that changed credentials and have not committed yet (gone if they roll back).
_changing: weakref.WeakSet[Any] = weakref.WeakSet()

Key = tuple[str, str | None, bool]
Resolved = tuple["Principal", "Role | None"]


def credentials_changed(uow: UnitOfWork) -> None:
    """Call from a unit of work that revokes credentials or changes a member's role."""
    _changing.add(uow)


def after_commit(uow: UnitOfWork) -> None:
    """``Database.on_commit`` listener: a committed credential change empties every cache."""
    global _generation
    if uow in _changing:
        _changing.discard(uow)
        _generation += 1


class CredentialCache:
    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._entries: dict[Key, tuple[float, int, Resolved]] = {}

    def generation(self) -> int:
        """Read before loading an entry from the database; pass to ``put``."""
        return _generation

    def get(self, key: Key) -> Resolved | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, generation, resolved = entry
        if generation != _generation or expires <= time.monotonic():
            del self._entries[key]
            return None
        return resolved

    def put(self, key: Key, resolved: Resolved, generation: int, *, valid_for: float | None = None) -> None:
        """Remember ``resolved`` for the TTL, or ``valid_for`` seconds if that is sooner (a session
        that expires)."""
        if self.ttl <= 0 or generation != _generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        ttl = self.ttl if valid_for is None else min(self.ttl, valid_for)
        self._entries[key] = (time.monotonic() + ttl, generation, resolved)
