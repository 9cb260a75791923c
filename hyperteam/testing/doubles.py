"""Test doubles for chat models: a scripted queue and a function model.

Both count tokens with the simulator's deterministic tokenizer, so usage
figures in tests are realistic and stable.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from hyperteam.errors import HyperteamError
from hyperteam.models.tokenizer import count_message_tokens, count_tokens
from hyperteam.models.types import ChatRequest, ChatResult, Completion, Usage


class ScriptError(AssertionError):
    """A scripted model got a call it did not expect, or was left with unused responses."""


def _result(name: str, request: ChatRequest, texts: list[str]) -> ChatResult:
    usage = Usage(count_message_tokens(request.messages), sum(count_tokens(t) for t in texts), 1, 0.0)
    return ChatResult([Completion(t, "stop") for t in texts], usage, model=name)


Scripted = str | HyperteamError | Callable[[ChatRequest], str]


class ScriptedModel:
    """Answers calls from a queue, in order; fails on a call with nothing left, or on leftovers.

    Each entry is a reply text, an exception to raise (e.g. a ``ModelError``),
    or a function of the request returning the text. Use it as a context
    manager, or call :meth:`assert_done`, to fail a test that left responses
    unused.

    Example:
        >>> model = ScriptedModel(["#### 4"])
        >>> with model:
        ...     Agent(name="a", model=model)  # run the team here
    """

    def __init__(self, responses: Iterable[Scripted], *, name: str = "scripted") -> None:
        self.name = name
        self._queue: deque[Scripted] = deque(responses)
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        self.requests.append(request)
        if not self._queue:
            last = request.messages[-1]["content"] if request.messages else ""
            raise ScriptError(f"{self.name}: unexpected call #{len(self.requests)}; last message: {last[:200]!r}")
        item = self._queue.popleft()
        if isinstance(item, BaseException):
            raise item
        text = item(request) if callable(item) else item
        return _result(self.name, request, [text] * request.n)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def assert_done(self) -> None:
        if self._queue:
            raise ScriptError(f"{self.name}: {len(self._queue)} scripted response(s) never used")

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.assert_done()


class FunctionModel:
    """Answers every call with a function of the request (sync or async).

    Example:
        >>> model = FunctionModel(lambda request: "#### 42")
    """

    def __init__(self, fn: Callable[[ChatRequest], str | Awaitable[str]], *, name: str = "function") -> None:
        self.name = name
        self.fn = fn
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        self.requests.append(request)
        text = self.fn(request)
        if inspect.isawaitable(text):
            text = await text
        return _result(self.name, request, [str(text)] * request.n)
