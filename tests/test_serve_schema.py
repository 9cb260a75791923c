"""Schemathesis over the service's own OpenAPI schema: no 5xx, and every response as the schema says."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from tests.test_serve_support import KEY, SlowModel, auth, chain_team, make_app, wide_team  # noqa: E402

APP = make_app({"wide": wide_team(SlowModel()), "chain3": chain_team(SlowModel())}, model=None)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def test_the_schema_describes_auth_and_errors():
    spec = APP.openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert {"200", "400", "401", "404", "413", "422", "429"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert chat["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


# What the service promises: no 5xx, every status, content type, header and body as documented, and
# schema-violating requests refused. Not that every schema-valid request succeeds: some rules are not
# expressible in JSON Schema (the last message must be the user's), and those requests get a 400.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(headers=auth(KEY), checks=CHECKS)
