"""Hypergraph teams on test doubles: who sees whom each round, schedules, fusion, cost, prefixes, specs."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.testing import FunctionModel
from hyperteam.topologies import HypergraphTeam, graphs, team_from_dict

_ROLE_LINE = "\n\n---\nYou are "


def _agents(names: str) -> list[ht.Agent]:
    return [ht.Agent(name=n, role="careful math tutor", instructions="Solve. End with '#### <number>'.") for n in names]


def _who(request: ht.ChatRequest) -> str:
    return request.messages[-1]["content"].rsplit("You are ", 1)[1].split(",")[0]


class Peers:
    """A model that answers ``OUT-<agent>-<call>`` and records which such outputs each prompt showed."""

    def __init__(self, answers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.answers = answers or {}
        self.delay = delay
        self.calls: dict[str, int] = defaultdict(int)
        self.seen: dict[tuple[str, int], list[str]] = {}
        self.in_flight = self.max_in_flight = 0
        self.model = FunctionModel(self.reply)

    async def reply(self, request: ht.ChatRequest) -> str:
        agent = _who(request)
        self.calls[agent] += 1
        k = self.calls[agent]
        self.seen[agent, k] = sorted(set(re.findall(r"OUT-\w+-\d+", request.messages[-1]["content"])))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return f"OUT-{agent}-{k}\n#### {self.answers.get(agent, '1')}"


async def test_each_round_shows_exactly_the_latest_outputs_of_hyperedge_members():
    peers = Peers()
    team = HypergraphTeam(_agents("abcde"), [["a", "b", "c"], ["c", "d"]], rounds=3, model=peers.model)
    result = await team.run("What is 1 + 0?")
    assert all(peers.seen[n, 1] == [] for n in "abcde")  # round 1: no peer input
    for r in (2, 3):
        p = r - 1
        assert peers.seen["a", r] == peers.seen["b", r] == [f"OUT-a-{p}", f"OUT-b-{p}", f"OUT-c-{p}"]
        assert peers.seen["c", r] == [f"OUT-a-{p}", f"OUT-b-{p}", f"OUT-c-{p}", f"OUT-d-{p}"]
        assert peers.seen["d", r] == [f"OUT-c-{p}", f"OUT-d-{p}"]
        assert peers.seen["e", r] == [f"OUT-e-{p}"]  # in no hyperedge: it works alone on its own answer
    assert result.usage.calls == 5 * 3 == len(peers.model.requests)
    layers = [ev.layer for ev in result.trace]
    assert layers == ["round1"] * 5 + ["round2"] * 5 + ["round3"] * 5 + ["fusion"]
    assert result.usage_by_layer["round2"].calls == 5


async def test_sequential_schedule_reads_this_rounds_outputs_of_earlier_co_members():
    peers = Peers()
    team = HypergraphTeam(_agents("abcd"), [["a", "b", "c"], ["c", "d"]], rounds=2, schedule="sequential")
    await team.run("q", model=peers.model)
    assert peers.seen["a", 1] == [] and peers.seen["b", 1] == ["OUT-a-1"]
    assert peers.seen["c", 1] == ["OUT-a-1", "OUT-b-1"] and peers.seen["d", 1] == ["OUT-c-1"]
    assert peers.seen["a", 2] == ["OUT-a-1", "OUT-b-1", "OUT-c-1"]
    assert peers.seen["b", 2] == ["OUT-a-2", "OUT-b-1", "OUT-c-1"]
    assert peers.seen["c", 2] == ["OUT-a-2", "OUT-b-2", "OUT-c-1", "OUT-d-1"]
    assert peers.seen["d", 2] == ["OUT-c-2", "OUT-d-1"]


async def test_sequential_schedule_runs_independent_agents_together():
    peers = Peers(delay=0.02)
    team = HypergraphTeam(_agents("abcd"), [["a", "b"], ["c", "d"]], rounds=1, schedule="sequential")
    await team.run("q", model=peers.model)
    assert peers.max_in_flight == 2  # a with c, then b with d
    assert peers.seen["b", 1] == ["OUT-a-1"] and peers.seen["d", 1] == ["OUT-c-1"]


async def test_agents_of_a_round_run_concurrently():
    peers = Peers(delay=0.1)
    team = HypergraphTeam(_agents("abcd"), [["a", "b"], ["c", "d"]], rounds=2, model=peers.model)
    started = time.perf_counter()
    await team.run("q")
    wall = time.perf_counter() - started
    assert peers.max_in_flight == 4
    assert wall < 0.6 * (8 * 0.1)  # two rounds of 0.1 s, not eight calls of 0.1 s


async def test_fusion_votes_over_the_last_rounds_outputs():
    def reply(request: ht.ChatRequest) -> str:
        agent, user = _who(request), request.messages[-1]["content"]
        if "[a, round 1]" not in user and "[c, round 1]" not in user:
            return "#### 5"  # round 1: everyone says 5
        return "#### 9" if agent == "c" else "#### 7"

    team = HypergraphTeam(_agents("abc"), [["a", "b", "c"]], rounds=2, model=FunctionModel(reply))
    result = await team.run("q")
    assert result.answer == "7"
    fusion = result.trace[-1]
    assert fusion.kind == "fusion" and fusion.layer == "fusion"
    assert fusion.detail["votes"] == {"7": 2, "9": 1} and "2 of 3" in fusion.detail["reason"]


async def test_a_synthesising_fusion_reads_every_last_round_output():
    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        return "merged\n#### 3" if "You are the aggregator" in user else f"by {_who(request)}\n#### 3"

    team = HypergraphTeam(_agents("abc"), [["a", "b"]], rounds=2, fusion="llm_synthesize", model=FunctionModel(reply))
    result = await team.run("q")
    assert result.text == "merged\n#### 3" and result.usage.calls == 3 * 2 + 1


async def test_a_sparse_hypergraph_sends_fewer_prompt_tokens_than_a_complete_one():
    sparse = HypergraphTeam(_agents("abcde"), [["a", "b"], ["c", "d", "e"]], rounds=3)
    dense = HypergraphTeam.from_graph(_agents("abcde"), graphs.complete(list("abcde")), rounds=3)
    used = {}
    for name, team in (("sparse", sparse), ("dense", dense)):
        used[name] = (await team.run("q", model=Peers().model)).usage
    assert used["sparse"].calls == used["dense"].calls == 15
    assert used["sparse"].prompt_tokens < used["dense"].prompt_tokens


async def test_members_of_a_hyperedge_send_byte_identical_prefixes():
    peers = Peers()
    team = HypergraphTeam(_agents("abcd"), [["a", "b", "c"], ["c", "d"]], rounds=2, model=peers.model)
    await team.run("A long shared question about ducks and eggs?")
    second = {_who(r): r.messages for r in peers.model.requests[4:]}
    assert all(m[0] == second["a"][0] for m in second.values())  # one system message for all
    head = {n: m[1]["content"].split(_ROLE_LINE)[0] for n, m in second.items()}
    assert head["a"] == head["b"] and "Hyperedge e0 (a, b, c):" in head["a"]
    assert head["c"].startswith(head["a"] + "\n\n") and "Hyperedge e1 (c, d):" in head["c"]
    assert head["d"] != head["a"] and "[d, round 1]" in head["d"]


async def test_a_failed_agent_is_recorded_and_skipped_as_a_peer():
    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        if _who(request) == "b" and "[a, round 1]" not in user:
            raise ModelError("call failed at http://x/v1 after 4 attempts: http_500: boom", kind="http_500")
        return f"by {_who(request)}\n#### 4"

    model = FunctionModel(reply)
    team = HypergraphTeam(_agents("abc"), [["a", "b", "c"]], rounds=2, model=model)
    result = await team.run("q")
    assert result.answer == "4"
    failed = [ev for ev in result.trace if ev.error]
    assert [(ev.layer, ev.agent) for ev in failed] == [("round1", "b")]
    round2 = [r.messages[-1]["content"] for r in model.requests[3:]]
    assert all("[a, round 1]" in u and "[b, round" not in u for u in round2)


async def test_a_round_where_every_agent_failed_ends_the_run_with_a_model_error():
    def reply(request: ht.ChatRequest) -> str:
        if "[a, round 1]" in request.messages[-1]["content"]:
            raise ModelError("cannot reach http://x/v1: connection: refused", kind="connection")
        return "#### 1"

    team = HypergraphTeam(_agents("ab"), [["a", "b"]], rounds=2, model=FunctionModel(reply))
    with pytest.raises(ModelError, match="round 2: every agent failed: connection") as info:
        await team.run("q")
    assert info.value.kind == "connection"


def test_changing_the_spec_recompiles():
    peers = Peers()
    team = HypergraphTeam(_agents("ab"), [["a", "b"]], rounds=2, model=peers.model)
    assert team.run_sync("q").usage.calls == 4
    team.rounds = 1
    assert team.run_sync("q").usage.calls == 2


def test_co_members_and_from_graph():
    team = HypergraphTeam(_agents("abcde"), [["a", "b", "c"], ["c", "d"]])
    assert team.co_members("c") == ["a", "b", "d"] and team.co_members("e") == []
    with pytest.raises(ht.ConfigError, match="no agent named 'z'"):
        team.co_members("z")
    chain = HypergraphTeam.from_graph(_agents("abcd"), graphs.chain(list("abc")), rounds=1)
    assert chain.hyperedges == [["a", "b"], ["b", "c"]] and chain.co_members("d") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyperedges": [["a", "b"], ["a", "x"]]}, r"hyperedges\[1\]: unknown agent 'x'"),
        ({"hyperedges": [["a"], []]}, r"hyperedges\[1\]: a hyperedge needs at least one agent"),
        ({"hyperedges": [["a", "a"]]}, r"hyperedges\[0\]: the hyperedge lists 'a' more than once"),
        ({"hyperedges": [["a", "b"], ["b", "a"]]}, "hyperedges: hyperedge 1 has the same agents as hyperedge 0"),
        ({"agents": [{"name": "a"}, {"name": "a"}]}, "agents: duplicate agent names: a"),
        ({"rounds": 0}, "rounds: Input should be greater than or equal to 1"),
        ({"fusion": "mode"}, "fusion: unknown fusion 'mode'"),
        ({"schedule": "random"}, "schedule: Input should be 'parallel' or 'sequential'"),
    ],
)
def test_invalid_specs_name_the_field(change: dict, message: str):
    spec = {"kind": "hypergraph", "agents": [{"name": "a"}, {"name": "b"}], "hyperedges": [["a", "b"]], **change}
    with pytest.raises(ht.ConfigError, match=message):
        team_from_dict(spec, source="team.yaml")


def test_constructor_errors_and_an_agent_alone_is_allowed():
    with pytest.raises(ValueError, match="unknown agent 'x'"):
        HypergraphTeam(_agents("ab"), [["a", "x"]])
    alone = HypergraphTeam(agents=_agents("abc"), hyperedges=[["a", "b"]], rounds=2, fusion="majority_vote")
    assert alone.co_members("c") == [] and alone.kind == "hypergraph"
    with pytest.raises(ValueError, match=r"hyperedges\[0\]: unknown agent 'a'"):
        alone.agents = _agents("bc")  # a later change is checked too


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_saved_hypergraph_team_loads_back_equal(tmp_path: Path, suffix: str):
    edges = [["a", "b", "c"], ["c", "d"]]
    team = HypergraphTeam(_agents("abcd"), edges, rounds=2, schedule="sequential", name="hg", fusion="majority_vote")
    team.agents[0].instructions = "A trained prompt: check units first."
    path = tmp_path / f"team{suffix}"
    team.save(path)
    assert "hypergraph" in path.read_text()
    again = ht.load_team(path)
    assert isinstance(again, HypergraphTeam) and again == team
    assert again.hyperedges == [["a", "b", "c"], ["c", "d"]] and again.agents[0].instructions.startswith("A trained")
