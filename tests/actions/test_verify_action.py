"""Nothing stale (issue 13 item 6): every state-changing action emits the events that bring an
open page to what a refetch shows, for the owner and for members (whose share can grow or shrink).

``test_every_route_has_a_scenario`` is generated from the app's route table: a new POST, PATCH,
PUT or DELETE route without a scenario in scenarios.py fails it.
"""

from __future__ import annotations

import pytest

from tests.actions import scenarios
from tests.actions.harness import OUTSIDE_ROUTES, SCENARIOS, app_routes, make_world, verify_action

# Gaps found and not fixed here, each with who owns the fix. Strict: when fixed, the xfail fails
# and the entry must go.
KNOWN_GAPS: dict[str, str] = {}


def _cases(jobs: bool) -> list:
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_GAPS[name], strict=True)) if name in KNOWN_GAPS else name
        for name in sorted(n for n, s in SCENARIOS.items() if s.needs_jobs == jobs)
    ]


def test_every_route_has_a_scenario() -> None:
    from kabar.app import create_app
    from kabar.config import load_settings

    app = create_app(load_settings({"KABAR_DATABASE_URL": "sqlite://", "KABAR_JWT_SECRET": "x" * 64}))
    routes = {r for r in app_routes(app) if r.split(" ", 1)[1].startswith("/v1/workspaces/{ws}") or r.split(" ", 1)[1] in OUTSIDE_ROUTES}
    covered = {s.route for s in SCENARIOS.values()}
    assert not (scenarios.NOT_INBOX_STATE - routes), "the skip list names routes that no longer exist"
    missing = sorted(routes - covered - scenarios.NOT_INBOX_STATE)
    assert not missing, f"state-changing routes without a verify_action scenario (tests/actions/scenarios.py): {missing}"
    assert not (covered - routes), f"scenarios for routes the app does not have: {sorted(covered - routes)}"


@pytest.mark.parametrize("name", _cases(jobs=False))
async def test_action_leaves_no_page_stale(client, tenant, name: str) -> None:
    world = await make_world(tenant)
    await verify_action(world, SCENARIOS[name])


@pytest.mark.parametrize("name", _cases(jobs=True))
async def test_job_driven_action_leaves_no_page_stale(client, tenant, jobs, name: str) -> None:
    world = await make_world(tenant)
    await verify_action(world, SCENARIOS[name])
