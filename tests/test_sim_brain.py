"""The simulated model's tokenizer, brain and in-process ChatModel."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hyperteam.agents._numbers import normalize_number
from hyperteam.errors import ConfigError
from hyperteam.evals import datasets
from hyperteam.models.tokenizer import count_message_tokens, count_tokens, truncate_tokens
from hyperteam.models.types import ChatModel, ChatRequest
from hyperteam.testing.sim import LatencyModel, SimBrain, SimModel


@pytest.fixture
def gsm8k(data_dir: Path) -> list[datasets.Problem]:
    return datasets.load("gsm8k", split="test", limit=300)


def _ask(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a careful math tutor. End with '#### <number>'."},
        {"role": "user", "content": f"Question: {question}\nThink step by step."},
    ]


def _answer(text: str) -> str | None:
    last = text.strip().splitlines()[-1]
    assert last.startswith("#### "), text
    return normalize_number(last[5:])


# -- tokenizer ----------------------------------------------------------


def test_tokenizer_counts_words_and_punctuation_deterministically() -> None:
    assert count_tokens("Janet's ducks lay 16 eggs.") == 8
    assert count_tokens("") == 0
    text = "She sells the remainder at $2 per egg, every day."
    assert count_tokens(text) == count_tokens(text) == 13
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 3?"}]
    assert count_message_tokens(messages) == (3 + 4) + (4 + 4)
    parts = [{"role": "user", "content": [{"type": "text", "text": "2 + 3?"}]}]
    assert count_message_tokens(parts) == 4 + 4


def test_truncate_tokens() -> None:
    assert truncate_tokens("one two three four", 2) == ("one two", True)
    assert truncate_tokens("one two", 2) == ("one two", False)
    assert truncate_tokens("one two", 5) == ("one two", False)


# -- brain ---------------------------------------------------------------


def test_correct_rate_is_close_to_accuracy(gsm8k: list[datasets.Problem]) -> None:
    brain = SimBrain(accuracy=0.7)
    correct = sum(_answer(brain.respond("sim", _ask(p.question))[0]) == p.answer for p in gsm8k)
    assert 0.62 <= correct / len(gsm8k) <= 0.78


def test_model_name_sets_accuracy(gsm8k: list[datasets.Problem]) -> None:
    brain = SimBrain(accuracy=0.3)
    assert brain.accuracy_for("sim-0.9") == 0.9
    assert brain.accuracy_for("sim:0.25") == 0.25
    assert brain.accuracy_for("gpt-4o-mini") == 0.3
    assert brain.accuracy_for("sim-7") == 0.3  # out of range: the default
    correct = sum(_answer(brain.respond("sim-0.9", _ask(p.question))[0]) == p.answer for p in gsm8k)
    assert correct / len(gsm8k) >= 0.84


def test_wrong_answers_never_equal_gold_and_are_correlated(data_dir: Path) -> None:
    brain = SimBrain(accuracy=0.0)
    problems = datasets.load("gsm8k", limit=150) + datasets.load("gsm-hard", limit=150)
    for p in problems:
        answers = [_answer(t) for t in brain.respond("sim", _ask(p.question), n=4)]
        assert p.answer not in answers and None not in answers
    # Wrong answers concentrate on a few values, so agents can agree on one.
    p = problems[0]
    answers = [
        _answer(brain.respond("sim", [{"role": "user", "content": f"Agent {i}: {p.question}"}])[0]) for i in range(40)
    ]
    assert max(answers.count(a) for a in set(answers)) >= 10


def test_finds_question_inside_a_longer_line(gsm8k: list[datasets.Problem]) -> None:
    brain = SimBrain(accuracy=1.0)
    for p in gsm8k[:20]:
        prompt = [{"role": "user", "content": f"Solve this carefully: {p.question} Reply with the number."}]
        assert _answer(brain.respond("sim", prompt)[0]) == p.answer


def test_follows_majority_of_candidates_after_the_question(gsm8k: list[datasets.Problem]) -> None:
    p = gsm8k[0]
    wrong = str(int(p.answer) + 5)
    peers = f"Agent a: ... #### {wrong}\nAgent b: ... #### 7\nAgent c: ... #### {wrong}"
    prompt = [{"role": "user", "content": f"Question: {p.question}\n\nOther agents said:\n{peers}"}]
    always = SimBrain(accuracy=1.0, follow_majority=1.0)
    assert {_answer(t) for t in always.respond("sim", prompt, n=10)} == {wrong}
    never = SimBrain(accuracy=1.0, follow_majority=0.0)
    assert {_answer(t) for t in never.respond("sim", prompt, n=10)} == {p.answer}
    half = SimBrain(accuracy=1.0, follow_majority=0.5)
    answers = [_answer(t) for t in half.respond("sim", prompt, n=200)]
    assert 0.35 <= answers.count(wrong) / 200 <= 0.65
    # A tie goes to the candidate seen first.
    tie = [{"role": "user", "content": f"{p.question}\nA: #### 7\nB: #### {wrong}"}]
    assert {_answer(t) for t in always.respond("sim", tie, n=5)} == {"7"}
    # Worked examples before the question are not peers' answers.
    few_shot = [{"role": "user", "content": f"Q: What is 1 + 1?\nA: 2\n#### 2\n\nQ: {p.question}\nA:"}]
    assert {_answer(t) for t in always.respond("sim", few_shot, n=5)} == {p.answer}


def test_responses_are_deterministic_and_differ_by_choice(gsm8k: list[datasets.Problem]) -> None:
    prompt = _ask(gsm8k[1].question)
    a, b = SimBrain(seed=1), SimBrain(seed=1)
    first = a.respond("sim", prompt, temperature=0.7, seed=3, n=4)
    assert first == b.respond("sim", prompt, temperature=0.7, seed=3, n=4)
    assert len(set(first)) == 4
    assert a.respond("sim", prompt, temperature=0.7, seed=3, n=2, first_index=2) == first[2:]
    assert first != SimBrain(seed=2).respond("sim", prompt, temperature=0.7, seed=3, n=4)
    assert first != a.respond("sim", prompt, temperature=0.7, seed=4, n=4)
    assert first != a.respond("sim", prompt, temperature=0.9, seed=3, n=4)


def test_unknown_question_gets_a_plausible_number(tmp_path: Path) -> None:
    brain = SimBrain(data_dir=tmp_path)  # no suites there: it knows only the built-in ones (demo 30, generated 3000)
    assert brain.known_count == 30 + 3000
    prompt = [{"role": "user", "content": "A farmer has 12 cows and buys 30 more. How many cows?"}]
    texts = brain.respond("sim", prompt, n=50)
    lengths = [count_tokens(t) for t in texts]
    assert all(_answer(t) is not None for t in texts)
    assert 25 <= min(lengths) and max(lengths) <= 130 and max(lengths) - min(lengths) >= 30
    assert all(2 <= t.count(". ") + 1 <= 6 for t in texts)


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="accuracy"):
        SimBrain(accuracy=1.5)
    with pytest.raises(ConfigError, match="unknown suite"):
        SimBrain(suites=("gsm9k",))


def test_loading_is_lazy_and_quick(data_dir: Path) -> None:
    started = time.perf_counter()
    brain = SimBrain()
    assert time.perf_counter() - started < 0.05  # nothing is read until first use
    assert brain.known_count > 10_000
    assert brain.gold_for(datasets.load("gsm8k", limit=1)[0].question) == "18"


# -- in-process model --------------------------------------------------------


def test_sim_model_is_a_chat_model_with_usage(gsm8k: list[datasets.Problem]) -> None:
    model = SimModel(0.8)
    assert isinstance(model, ChatModel) and model.name == "sim:0.8"
    request = ChatRequest(_ask(gsm8k[0].question), temperature=0.7, n=3)
    result = asyncio.run(model.chat(request))
    assert len(result.completions) == 3 and result.usage.calls == 1
    assert result.usage.prompt_tokens == count_message_tokens(request.messages)
    assert result.usage.completion_tokens == sum(count_tokens(c.text) for c in result.completions)
    again = asyncio.run(model.chat(request))
    other = asyncio.run(model.chat(request, sample_index=1))
    assert [c.text for c in again.completions] == [c.text for c in result.completions]
    assert not {c.text for c in other.completions} & {c.text for c in result.completions}


def test_sim_model_named_freely_keeps_its_accuracy(gsm8k: list[datasets.Problem]) -> None:
    model = SimModel(1.0, name="solver")
    results = [asyncio.run(model.chat(ChatRequest(_ask(p.question)))) for p in gsm8k[:20]]
    assert all(_answer(r.text) == p.answer for r, p in zip(results, gsm8k, strict=False))


def test_sim_model_latency_and_max_tokens() -> None:
    model = SimModel(0.7, latency=LatencyModel(ttft_ms=30, per_token_ms=0))
    started = time.perf_counter()
    result = asyncio.run(model.chat(ChatRequest([{"role": "user", "content": "2 + 3?"}], max_tokens=5)))
    assert time.perf_counter() - started >= 0.03
    assert result.completions[0].finish_reason == "length"
    assert result.usage.completion_tokens == count_tokens(result.text) == 5
    assert LatencyModel().seconds(100) == pytest.approx(0.45)
