"""Fault-suite fixtures: a private Redis (the realtime suite's), never the machine's shared one."""

from tests.realtime.conftest import private_redis  # noqa: F401
