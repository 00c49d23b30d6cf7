"""Optional modules: a domain registers routes, CLI commands or job handlers by existing."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_if_present(name: str) -> ModuleType | None:
    """Import ``name``; None if it (or its package) does not exist. Errors inside it propagate."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise
