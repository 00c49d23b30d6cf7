"""The realtime suite's fixtures (a ``kabar serve`` per backend, module scope) for the open-inbox test."""

from tests.realtime.conftest import http, server, site, site_database  # noqa: F401
