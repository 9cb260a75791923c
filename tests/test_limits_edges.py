"""Client-side limits at their edges, on a fake clock: how many requests go out, and when.

A user sees these as requests sent too early or too late, a burst larger than asked,
or a server flooded after it said it was full.
"""

from __future__ import annotations

import asyncio

import pytest

from hyperteam.models import limits
from hyperteam.models.limits import AdaptiveLimit, ConcurrencyLimit, RateLimiter


class FakeClock:
    """``time.monotonic`` and ``asyncio.sleep`` for the limits module: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        if len(self.sleeps) > 50:
            raise AssertionError("the limiter keeps sleeping without getting a token")
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limits.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(limits.asyncio, "sleep", fake.sleep)
    return fake


# -- rate limiter ----------------------------------------------------------------------------------


async def test_a_burst_goes_out_at_once_and_the_next_request_waits_for_one_token(clock: FakeClock):
    limiter = RateLimiter(2.0, burst=3)
    for _ in range(3):
        await limiter.acquire()
    assert clock.sleeps == []
    await limiter.acquire()
    assert clock.sleeps == [0.5]  # one token at 2 per second
    await limiter.acquire()
    assert clock.sleeps == [0.5, 0.5]


async def test_an_idle_limiter_gets_back_its_burst_and_no_more(clock: FakeClock):
    limiter = RateLimiter(2.0, burst=3)
    clock.now += 3600
    for _ in range(3):
        await limiter.acquire()
    assert clock.sleeps == []
    await limiter.acquire()
    assert clock.sleeps == [0.5]


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1.0, 1), (4.0, 4), (4.9, 4)])
async def test_the_default_burst_is_one_seconds_worth_and_at_least_one(clock: FakeClock, rate: float, burst: int):
    limiter = RateLimiter(rate)
    assert limiter.capacity == burst
    for _ in range(burst):
        await limiter.acquire()
    assert clock.sleeps == []
    await limiter.acquire()
    assert sum(clock.sleeps) == pytest.approx(1 / rate)


async def test_a_fraction_of_a_token_left_shortens_the_wait(clock: FakeClock):
    limiter = RateLimiter(1.0, burst=1)
    await limiter.acquire()
    clock.now += 0.25
    await limiter.acquire()
    assert clock.sleeps == [0.75]


@pytest.mark.parametrize("rate", [0, -1.0])
def test_a_rate_that_is_not_positive_is_refused(rate: float):
    with pytest.raises(ValueError, match=r"^rate must be > 0$"):
        RateLimiter(rate)


# -- concurrency limit -----------------------------------------------------------------------------


async def test_a_concurrency_limit_holds_and_lets_the_rest_in_first_come_first_served():
    limit = ConcurrencyLimit(2)
    order: list[int] = []

    async def request(i: int) -> None:
        async with limit:
            order.append(i)
            assert limit.in_flight <= 2
            await asyncio.sleep(0.01)

    assert (limit.limit, limit.peak, limit.in_flight) == (2, 0, 0)
    await asyncio.gather(*(request(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4] and limit.peak == 2 and limit.in_flight == 0


@pytest.mark.parametrize("cls", [ConcurrencyLimit, AdaptiveLimit])
def test_a_limit_below_one_is_refused(cls: type):
    with pytest.raises(ValueError, match=r"must be >= 1$"):
        cls(0)
    assert cls(1)  # one is allowed


# -- adaptive limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "limit"), [(None, 16), (0, 16), (8, 8), (40, 16), (-3, 1)])
def test_the_starting_limit_stays_between_one_and_the_ceiling(start: int | None, limit: int):
    assert AdaptiveLimit(16, start=start).limit == limit


async def test_requests_over_the_limit_wait_in_the_client_in_order():
    limit = AdaptiveLimit(4, start=1)
    order: list[int] = []

    async def request(i: int) -> None:
        async with limit:
            order.append(i)
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(request(i)) for i in range(4)]
    await asyncio.sleep(0.001)
    assert limit.in_flight == 1 and limit.waiting == 3
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and limit.peak == 1 and limit.in_flight == 0 and limit.waiting == 0


async def test_a_server_reporting_more_slots_lets_waiting_requests_in_at_once():
    limit = AdaptiveLimit(8, start=1)
    await limit.__aenter__()
    waiting = [asyncio.create_task(limit.__aenter__()) for _ in range(5)]
    await asyncio.sleep(0)
    assert limit.waiting == 5
    limit.set_capacity(3, "server")
    await asyncio.sleep(0)
    assert limit.in_flight == 3 and limit.waiting == 3 and limit.source == "server"
    limit.set_capacity(100, "metrics")
    await asyncio.sleep(0)
    assert limit.limit == 8 and limit.in_flight == 6 and limit.waiting == 0 and limit.peak == 6
    limit.set_capacity(0, "metrics")
    assert limit.limit == 1
    await asyncio.gather(*waiting)


async def test_a_waiter_cancelled_as_it_was_let_in_hands_its_slot_on():
    limit = AdaptiveLimit(4, start=1)
    await limit.__aenter__()
    first = asyncio.create_task(limit.__aenter__())
    second = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    await limit.__aexit__()  # the slot goes to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert limit.in_flight == 1


def _full(limit: AdaptiveLimit) -> AdaptiveLimit:
    # As if every slot were taken (the limit is what holds requests back).
    limit.in_flight = limit.limit
    return limit


def test_a_fixed_limit_ignores_what_replies_say():
    limit = _full(AdaptiveLimit(64, start=8, source="server"))
    limit.observe(sent_at=0.0, now=5.0, first_byte_s=5.0, overloaded=True)
    for _ in range(100):
        limit.observe(sent_at=6.0, now=6.1, first_byte_s=None)
    assert limit.limit == 8 and limit.cuts == 0


def test_overload_halves_the_limit_once_per_round_trip_and_never_below_one():
    limit = AdaptiveLimit(64, start=8, source="adaptive")
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None, overloaded=True)
    assert limit.limit == 4 and limit.cuts == 1
    limit.observe(sent_at=1.5, now=2.5, first_byte_s=None, overloaded=True)  # sent before the cut
    assert limit.limit == 4 and limit.cuts == 1
    limit.observe(sent_at=2.0, now=3.0, first_byte_s=None, overloaded=True)  # sent at the cut: a new round trip
    assert limit.limit == 2 and limit.cuts == 2
    for t in (3.0, 4.0, 5.0):
        limit.observe(sent_at=t, now=t + 1, first_byte_s=None, overloaded=True)
    assert limit.limit == 1


@pytest.mark.parametrize(("first_byte_s", "cut"), [(0.265, False), (0.275, True)])
def test_a_reply_counts_as_queued_past_twice_the_fastest_plus_a_quarter_of_a_typical_answer(
    first_byte_s: float, cut: bool
):
    limit = AdaptiveLimit(64, start=8, source="adaptive")
    limit.observe(sent_at=0.0, now=0.1, first_byte_s=0.1)  # fastest 0.1 s; typical answer 0.1 s
    # typical becomes 0.8 * 0.1 + 0.2 * 1.0 = 0.28 s: queued past 2 * 0.1 + 0.25 * 0.28 = 0.27 s
    limit.observe(sent_at=0.5, now=1.5, first_byte_s=first_byte_s)
    assert (limit.limit, limit.cuts) == ((4, 1) if cut else (8, 0))


def test_the_fastest_first_byte_is_remembered_not_the_latest():
    limit = AdaptiveLimit(64, start=8, source="adaptive")
    limit.observe(sent_at=0.0, now=0.1, first_byte_s=0.1)
    limit.observe(sent_at=0.0, now=0.2, first_byte_s=0.15)  # slower, not queued (< 0.2 + 0.25 * 0.12)
    assert limit.limit == 8
    limit.observe(sent_at=0.0, now=0.3, first_byte_s=0.26)  # queued against 0.1, not against 0.15
    assert limit.limit == 4


def test_the_limit_creeps_up_a_quarter_per_window_then_by_one_per_four_windows_past_the_last_cut():
    limit = _full(AdaptiveLimit(64, start=8, source="adaptive"))
    for _ in range(7):
        limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert limit.limit == 8  # a window is as many replies as the limit
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert limit.limit == 10  # + 8 // 4
    _full(limit)
    for _ in range(30):
        limit.observe(sent_at=1.5, now=2.5, first_byte_s=None)  # sent before the step: no evidence
    assert limit.limit == 10
    limit.observe(sent_at=2.5, now=3.0, first_byte_s=None, overloaded=True)
    assert limit.limit == 5
    _full(limit)
    for _ in range(19):
        limit.observe(sent_at=3.0, now=4.0, first_byte_s=None)
    assert limit.limit == 5  # past the level that overloaded: four windows of five
    limit.observe(sent_at=3.0, now=4.0, first_byte_s=None)
    assert limit.limit == 6  # and then one more, not a quarter
    _full(limit)
    for _ in range(24):
        limit.observe(sent_at=4.0, now=5.0, first_byte_s=None)
    assert limit.limit == 7


def test_below_the_last_cut_the_step_is_at_least_one():
    limit = _full(AdaptiveLimit(64, start=2, source="adaptive"))
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert limit.limit == 3


def test_the_limit_does_not_rise_past_the_ceiling_or_when_it_held_nothing_back():
    limit = _full(AdaptiveLimit(9, start=8, source="adaptive"))
    for _ in range(8):
        limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert limit.limit == 9
    _full(limit)
    for _ in range(100):
        limit.observe(sent_at=3.0, now=4.0, first_byte_s=None)
    assert limit.limit == 9
    idle = AdaptiveLimit(64, start=8, source="adaptive")
    idle.in_flight = 3  # fewer in flight than allowed, nobody waiting: the limit was not the bottleneck
    for _ in range(100):
        idle.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert idle.limit == 8


async def test_a_raised_limit_lets_a_waiting_request_in():
    limit = AdaptiveLimit(64, start=1, source="adaptive")
    await limit.__aenter__()
    waiter = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)  # at the limit, one waiting, a reply that did not wait
    assert limit.limit == 2
    await asyncio.sleep(0)
    assert waiter.done() and limit.in_flight == 2


def test_a_reply_exactly_at_the_queueing_threshold_did_not_wait():
    limit = AdaptiveLimit(64, start=8, source="adaptive")
    limit.observe(sent_at=0.0, now=0.25, first_byte_s=0.25)  # fastest and typical: 0.25 s
    # typical becomes 0.8 * 0.25 + 0.2 * 1.0 = 0.4 s: the threshold is 2 * 0.25 + 0.25 * 0.4 = 0.6 s
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=0.6)
    assert limit.limit == 8 and limit.cuts == 0


def test_a_new_adaptive_limit_is_fixed_by_the_user_and_has_seen_nothing():
    limit = AdaptiveLimit(4)
    assert (limit.source, limit.peak, limit.in_flight, limit.cuts, limit.waiting) == ("user", 0, 0, 0, 0)


async def test_a_waiter_cancelled_before_its_turn_gives_back_nothing():
    limit = AdaptiveLimit(4, start=1)
    await limit.__aenter__()
    waiter = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limit.in_flight == 1  # the holder's slot is still taken
    late = asyncio.create_task(limit.__aenter__())
    await asyncio.sleep(0)
    assert not late.done() and limit.waiting == 1
    await limit.__aexit__()
    await late
    assert limit.in_flight == 1


def test_halving_an_odd_limit_rounds_down_to_a_whole_request():
    limit = AdaptiveLimit(64, start=5, source="adaptive")
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None, overloaded=True)
    assert limit.limit == 2 and isinstance(limit.limit, int)


def test_below_the_last_cut_a_window_raises_the_limit_by_a_whole_quarter():
    limit = _full(AdaptiveLimit(64, start=10, source="adaptive"))
    for _ in range(10):
        limit.observe(sent_at=1.0, now=2.0, first_byte_s=None)
    assert limit.limit == 12 and isinstance(limit.limit, int)  # 10 + 10 // 4
    _full(limit)
    for _ in range(11):
        limit.observe(sent_at=2.0, now=3.0, first_byte_s=None)
    assert limit.limit == 12  # the next window is a whole new one of 12 replies
    limit.observe(sent_at=2.0, now=3.0, first_byte_s=None)
    assert limit.limit == 15


def test_at_the_level_of_the_last_cut_the_limit_rises_by_one_not_a_quarter():
    limit = AdaptiveLimit(64, start=16, source="adaptive")
    limit.observe(sent_at=1.0, now=2.0, first_byte_s=None, overloaded=True)
    assert limit.limit == 8
    _full(limit)
    for _ in range(32):  # four windows of eight
        limit.observe(sent_at=2.0, now=3.0, first_byte_s=None)
    assert limit.limit == 9
