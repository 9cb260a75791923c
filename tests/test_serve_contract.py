"""Schemathesis over the service's OpenAPI schema with every check it has: what the schema allows is
accepted, what it forbids is refused, and every response is as documented.

The test doubles answer at once, so that the whole schema is walked in seconds; the service in front of
them (validation, limits, errors, the run store) is the real one.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402

from hyperteam.serve.limits import Limits  # noqa: E402
from tests.test_serve_support import KEY, SlowModel, auth, chain_team, make_app, wide_team  # noqa: E402

load_all_checks()
ALL_CHECKS = CHECKS.get_all()
# A small fan-out limit, so that the n bound the schema states is met by what is generated.
APP = make_app(
    {"wide": wide_team(SlowModel()), "chain3": chain_team(SlowModel())},
    model=None,
    limits=Limits(max_fanout=30, max_messages=16),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def test_every_check_is_run():
    names = {getattr(c, "__name__", type(c).__name__) for c in ALL_CHECKS}
    assert {"positive_data_acceptance", "negative_data_rejection", "response_schema_conformance"} <= names


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_schema_says_what_the_service_accepts(case):
    case.call_and_validate(headers=auth(KEY), checks=ALL_CHECKS)
