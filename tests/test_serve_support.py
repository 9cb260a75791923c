"""Shared helpers of the service tests (no tests here): keys, small teams on test doubles, clients."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from hyperteam.agents.agent import Agent
from hyperteam.serve.app import create_app
from hyperteam.serve.store import open_store
from hyperteam.testing import FunctionModel
from hyperteam.topologies.layered import Layer, LayeredTeam

# A canary: used as the API key throughout, it must never show up in logs, stores, bodies or metrics.
KEY = "sk-canary-" + secrets.token_hex(12)
OTHER_KEY = "sk-other-" + secrets.token_hex(12)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class SlowModel(FunctionModel):
    """A function model that takes ``delay`` seconds a call and counts the calls that reached it."""

    def __init__(self, delay: float = 0.0, text: str = "Adding up.\n#### 4") -> None:
        async def answer(request: Any) -> str:
            await asyncio.sleep(delay)
            return text

        super().__init__(answer, name="slow")


def chain_team(model: Any, *, name: str = "chain3", layers: int = 3) -> LayeredTeam:
    """``layers`` one-agent layers in a row: one call at a time, so a cancel lands between calls."""
    return LayeredTeam(
        [Layer(f"step{i}", agents=[Agent(name=f"a{i}", model=model)]) for i in range(layers)],
        name=name,
    )


def wide_team(model: Any, *, name: str = "wide", agents: int = 3) -> LayeredTeam:
    return LayeredTeam(
        [Layer("solve", agents=[Agent(name=f"s{i}", model=model) for i in range(agents)], fusion="majority_vote")],
        name=name,
    )


def make_app(teams: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    if teams is None:
        from hyperteam.topologies import load_team

        teams = {"single": load_team("single"), "ann-gsm8k": load_team("ann-gsm8k")}
    kwargs.setdefault("store", open_store(":memory:"))
    kwargs.setdefault("api_keys", [KEY, OTHER_KEY])
    kwargs.setdefault("model", "sim:1.0")
    return create_app(teams, **kwargs)


@asynccontextmanager
async def client_for(app: Any, key: str | None = KEY) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``app`` with its lifespan running (startup and graceful shutdown)."""
    async with app.router.lifespan_context(app):
        headers = auth(key) if key else {}
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield client


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
