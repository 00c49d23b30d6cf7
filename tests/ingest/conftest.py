"""Ingest fixtures (shared with tests/channels)."""

from tests.channels.fixtures import owner_tenant, workspace  # noqa: F401
