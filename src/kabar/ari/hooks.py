"""Registers ARI's extension points once, from every process that may need them: the inbound
trigger (web server and workers), the reminder sweep's bootstrap and the demo data."""

from __future__ import annotations

from kabar import hooks
from kabar.ari import service


def register() -> None:
    if service.on_inbound_message not in hooks.INBOUND_MESSAGE_HOOKS:
        hooks.INBOUND_MESSAGE_HOOKS.append(service.on_inbound_message)
    from kabar.ari.demo import seed_demo_ari
    from kabar.demo import SEED_HOOKS

    if seed_demo_ari not in SEED_HOOKS:
        SEED_HOOKS.append(seed_demo_ari)


register()
