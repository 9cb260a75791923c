"""Spreading requests over replicas at the edges, on a fake clock: cool-downs, slack, affinity, stats."""

from __future__ import annotations

import logging

import pytest

from hyperteam.errors import ConfigError, ModelError
from hyperteam.models import ChatRequest, ChatResult, Completion, Usage
from hyperteam.models import spread as spread_module
from hyperteam.models.spread import SpreadModel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(spread_module.time, "monotonic", fake)
    return fake


class Replica:
    """Answers with its name, or raises ``fail`` while it is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fail: ModelError | None = None
        self.calls = 0
        self.seen: list[tuple[ChatRequest, int]] = []

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        self.calls += 1
        self.seen.append((request, sample_index))
        if self.fail is not None:
            raise self.fail
        return ChatResult([Completion(self.name)], Usage(1, 1, 1), model=self.name)


def _request(text: str = "q") -> ChatRequest:
    return ChatRequest([{"role": "system", "content": "Solve."}, {"role": "user", "content": text}])


def _down() -> ModelError:
    return ModelError("cannot connect", kind="connection")


def test_a_spread_model_needs_a_replica_and_is_named_after_them():
    with pytest.raises(ConfigError, match=r"^a spread model needs at least one replica$"):
        SpreadModel([])
    assert SpreadModel([Replica("r0"), Replica("r1")]).name == "r0,r1"
    assert SpreadModel([Replica("r0")], name="M").name == "M"


def test_the_affinity_key_is_the_start_of_the_prompt_across_messages():
    model = SpreadModel([Replica("r0")], prefix_chars=12)
    assert model.affinity_key(_request("Problem one")) == b"Solve.\x00Probl"
    request = ChatRequest([{"role": "system"}, {"role": "user", "content": "héllo"}])
    assert SpreadModel([Replica("r0")]).affinity_key(request) == "\x00héllo".encode()


def test_keys_spread_over_the_replicas_and_only_a_removed_replicas_keys_move(clock: Clock):
    model = SpreadModel([Replica(f"r{i}") for i in range(3)])
    keys = [f"problem {i}".encode() for i in range(300)]
    home = {k: model.pick(k).index for k in keys}
    assert {i: list(home.values()).count(i) > 50 for i in range(3)} == {0: True, 1: True, 2: True}
    without_2 = {k: model.pick(k, {2}).index for k in keys}
    assert all(without_2[k] == home[k] for k in keys if home[k] != 2)
    assert {model.pick(k).index for k in keys[:1] * 5} == {home[keys[0]]}  # the same key, the same replica


def test_a_busy_home_keeps_its_requests_up_to_the_slack_and_no_further(clock: Clock):
    model = SpreadModel([Replica("r0"), Replica("r1")], affinity_slack=2)
    key = b"the problem"
    home = model.pick(key)
    other = next(r for r in model.replicas if r is not home)
    other.outstanding, home.outstanding = 1, 3
    assert model.pick(key) is home  # 2 more than the least busy: within the slack
    home.outstanding = 4
    assert model.pick(key) is other


async def test_a_failed_replica_cools_down_twice_as_long_each_time_up_to_the_cap(clock: Clock):
    r0, r1 = Replica("r0"), Replica("r1")
    model = SpreadModel([r0, r1], cooldown_s=2.0, max_cooldown_s=5.0)
    r0.fail = r1.fail = _down()
    expected = [2.0, 4.0, 5.0, 5.0]
    for failures, pause in enumerate(expected, start=1):
        with pytest.raises(ModelError):
            await model.chat(_request())
        assert [r.down_until - clock.now for r in model.replicas] == [pause, pause]
        assert [s["failures"] for s in model.stats()] == [failures, failures]
    assert [r.outstanding for r in model.replicas] == [0, 0]


async def test_a_cooled_down_replica_is_back_at_the_end_of_its_pause_and_one_success_clears_it(clock: Clock):
    r0, r1 = Replica("r0"), Replica("r1")
    model = SpreadModel([r0, r1], cooldown_s=2.0)
    home = model.pick(model.affinity_key(_request()))
    home.model.fail = _down()
    first = await model.chat(_request())
    assert first.model != home.model.name  # failed over, the caller saw no error
    stats = {s["name"]: s for s in model.stats()}
    assert stats[home.model.name] == {
        "name": home.model.name,
        "served": 0,
        "outstanding": 0,
        "failures": 1,
        "down": True,
    }
    home.model.fail = None
    clock.now += 1.999
    assert (await model.chat(_request())).model != home.model.name
    clock.now += 0.001  # exactly at the end of the pause
    assert not any(s["down"] for s in model.stats())
    assert (await model.chat(_request())).model == home.model.name
    stats = {s["name"]: s for s in model.stats()}
    assert stats[home.model.name] == {
        "name": home.model.name,
        "served": 1,
        "outstanding": 0,
        "failures": 0,
        "down": False,
    }
    home.model.fail = _down()
    await model.chat(_request())
    assert home.down_until - clock.now == 2.0  # the count started again: a first failure


async def test_when_every_replica_is_cooling_down_the_one_back_soonest_is_tried(clock: Clock):
    replicas = [Replica("r0"), Replica("r1"), Replica("r2")]
    model = SpreadModel(replicas)
    for r, until in zip(model.replicas, (1005.0, 1001.0, 1003.0), strict=True):
        r.failures, r.down_until = 1, until
    assert (await model.chat(_request())).model == "r1"
    assert [r.calls for r in replicas] == [0, 1, 0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_refused_request_is_not_tried_elsewhere_and_the_replica_stays_in(clock: Clock, status: int):
    replicas = [Replica("r0"), Replica("r1")]
    for r in replicas:
        r.fail = ModelError("refused", kind=f"http_{status}", status=status)
    model = SpreadModel(replicas)
    with pytest.raises(ModelError, match="refused"):
        await model.chat(_request())
    assert sum(r.calls for r in replicas) == 1
    assert [s["failures"] for s in model.stats()] == [0, 0] and not any(s["down"] for s in model.stats())


@pytest.mark.parametrize("status", [429, 500, 503, None])
async def test_an_overloaded_or_broken_replica_is_failed_over(clock: Clock, status: int | None):
    replicas = [Replica("r0"), Replica("r1"), Replica("r2")]
    model = SpreadModel(replicas)
    home = model.pick(model.affinity_key(_request()))
    home.model.fail = ModelError("busy", kind="busy", status=status)
    assert (await model.chat(_request())).model != home.model.name
    assert sum(r.calls for r in replicas) == 2


async def test_when_every_replica_fails_each_is_tried_once_and_the_last_error_is_raised(clock: Clock):
    replicas = [Replica(f"r{i}") for i in range(3)]
    for r in replicas:
        r.fail = ModelError(f"{r.name} down", kind="connection")
    model = SpreadModel(replicas)
    with pytest.raises(ModelError) as info:
        await model.chat(_request())
    assert [r.calls for r in replicas] == [1, 1, 1]
    last = max(model.replicas, key=lambda r: (r.down_until, r.index))
    assert str(info.value) in {f"{r.name} down" for r in replicas} and last.failures == 1


def test_the_defaults_a_user_gets():
    model = SpreadModel([Replica("r0")])
    assert (model.affinity_slack, model.prefix_chars, model.cooldown_s, model.max_cooldown_s) == (4, 384, 2.0, 60.0)


def test_a_prompt_with_a_broken_character_still_gets_a_replica(clock: Clock):
    model = SpreadModel([Replica("r0"), Replica("r1")])
    request = ChatRequest([{"role": "user", "content": "half a surrogate: \ud800"}])
    assert model.affinity_key(request) == b"half a surrogate: ?"
    assert model.pick(model.affinity_key(request)) in model.replicas


async def test_the_replica_gets_the_request_and_its_sample_index_and_counts_what_it_served(clock: Clock):
    replica = Replica("r0")
    model = SpreadModel([replica])
    request = _request()
    await model.chat(request, sample_index=3)
    await model.chat(request)
    assert replica.seen == [(request, 3), (request, 0)]
    assert model.stats()[0]["served"] == 2


async def test_failures_and_recoveries_are_logged_with_the_replica_and_the_pause(
    clock: Clock, caplog: pytest.LogCaptureFixture
):
    r0 = Replica("r0")
    model = SpreadModel([r0])
    r0.fail = _down()
    with caplog.at_level(logging.INFO, logger="hyperteam.models.spread"), pytest.raises(ModelError):
        await model.chat(_request())
    r0.fail = None
    with caplog.at_level(logging.INFO, logger="hyperteam.models.spread"):
        await model.chat(_request())
    assert [r.getMessage() for r in caplog.records] == [
        "replica r0 failed (connection); out for 2.0 s",
        "replica r0 is back",
    ]
