"""The service at its edges, through HTTP: key schemes, look-alike public paths, rate-limit bursts, n > 1 runs."""

from __future__ import annotations

import asyncio
import itertools

import httpx

from hyperteam.errors import ModelError
from hyperteam.testing import FunctionModel
from tests.test_serve_support import KEY, SlowModel, chain_team, client_for, make_app, wait_for, wide_team

CHAT = "/v1/chat/completions"
ASK = {"model": "one", "messages": [{"role": "user", "content": "2 + 2?"}]}


async def test_only_the_bearer_scheme_carries_a_key():
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app, key=None) as client:
        for header in (f"Basic {KEY}", f"Token {KEY}", f"Bearer{KEY}", "Bearer ", KEY):
            response = await client.get("/v1/models", headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.json()["error"]["code"] == "invalid_api_key"
        for header in (f"Bearer {KEY}", f"bearer {KEY}", f"BEARER  {KEY} "):
            assert (await client.get("/v1/models", headers={"Authorization": header})).status_code == 200, header


async def test_paths_that_only_start_like_a_public_one_need_a_key():
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app, key=None) as client:
        assert (await client.get("/health")).status_code == 200
        for path in ("/healthz", "/health/details", "/docsx", "/redoc/x", "/openapi.json.bak", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "invalid_api_key"


async def test_the_scheme_spelling_does_not_buy_a_second_rate_limit_bucket():
    app = make_app({"wide": wide_team(SlowModel())}, rate_limit=0.5)  # one request, then one every 2 s
    async with client_for(app, key=None) as client:
        assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
        again = await client.get("/v1/models", headers={"Authorization": f"bearer {KEY}"})
        assert again.status_code == 429 and again.headers["retry-after"] == "2"
        assert again.json()["error"]["code"] == "rate_limit_exceeded"


async def test_an_idle_key_gets_back_its_burst_and_no_more():
    app = make_app({"wide": wide_team(SlowModel())}, rate_limit=2.0)  # bursts of 2
    async with client_for(app) as client:
        assert (await client.get("/v1/models")).status_code == 200
        await asyncio.sleep(1.5)  # 3 tokens' worth of idling, but the bucket holds only 2
        statuses = [(await client.get("/v1/models")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_n_runs_report_the_usage_of_every_run():
    texts = itertools.cycle(["#### 4", "A much longer derivation: first 2, then 2 more, and that makes four.\n#### 4"])
    app = make_app({"one": chain_team(FunctionModel(lambda request: next(texts)), name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "n": 2})
    assert response.status_code == 200
    body = response.json()
    runs = [run["usage"] for run in body["hyperteam"]["runs"]]
    assert len(body["choices"]) == 2 and runs[0]["completion_tokens"] != runs[1]["completion_tokens"]
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert body["usage"][field] == sum(run[field] for run in runs), field


async def test_n_runs_fail_when_any_run_fails():
    calls = itertools.count()

    def reply(request: object) -> str:
        if next(calls) > 0:  # the first run answers; the second one's call fails
            raise ModelError("upstream down", kind="http_503", status=503)
        return "#### 4"

    app = make_app({"one": chain_team(FunctionModel(reply), name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "n": 2})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "http_503"


async def test_a_completion_cut_short_by_shutdown_is_a_503():
    model = SlowModel(delay=5.0)
    app = make_app({"one": chain_team(model, name="one", layers=1)}, shutdown_grace_s=0.05)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        client = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {KEY}"}
        )
        pending = asyncio.create_task(client.post(CHAT, json=ASK))
        await wait_for(lambda: len(model.requests) == 1)
    response = await asyncio.wait_for(pending, timeout=5)
    await client.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "run_interrupted"
    assert response.json()["error"]["message"] == "the run was interrupted: the service is stopping"
