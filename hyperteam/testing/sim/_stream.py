"""Server-sent events for streamed chat completions, paced by the latency model."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from hyperteam.testing.sim._http import chunk, stream_head
from hyperteam.testing.sim._wire import Request, chunk_event, delta

if TYPE_CHECKING:
    from hyperteam.testing.sim.server import SimServer

# Pieces per choice: enough for a client to see text arrive over time,
# few enough to keep the per-request CPU low.
_PIECES = 4
_DONE = b"data: [DONE]\n\n"


def _split(text: str, pieces: int) -> list[str]:
    """Cuts text at spaces into about ``pieces`` parts that join back to ``text``."""
    cuts = [0]
    for i in range(1, pieces):
        at = text.find(" ", max(cuts[-1] + 1, len(text) * i // pieces))
        if at < 0:
            break
        cuts.append(at)
    cuts.append(len(text))
    return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a]


class Stream:
    """Sends one request's choices as ``chat.completion.chunk`` events.

    The role arrives when service starts, the first text after the time to
    first token, and the rest in a few pieces spread over the per-token
    time, so a streamed request takes as long as an unstreamed one.
    """

    def __init__(self, req: Request) -> None:
        self.req = req
        self.pieces = [_split(text, _PIECES) for text, _, _ in req.choices]
        self.steps = max(len(p) for p in self.pieces)
        self.step = 0
        self.interval = 0.0
        self.server: SimServer | None = None

    def start(self, server: SimServer) -> None:
        """Sends the head and the role, and schedules the text."""
        self.server = server
        req = self.req
        ttft = 0.0
        if server.latency is not None:
            ttft = server.latency.ttft_ms / 1000.0
            self.interval = (req.service_s - ttft) / self.steps
        role = chunk_event(req, [delta(i, {"role": "assistant", "content": ""}) for i in range(len(self.pieces))])
        req.conn.write(stream_head() + chunk(role))
        self._after(ttft, self._malformed if req.fault == "malformed" else self._next)

    def _after(self, delay: float, callback: Any) -> None:
        if delay > 0 and self.server is not None:
            self.req.handle = self.server.call_later(delay, callback)
        else:
            callback()

    def _next(self) -> None:
        req = self.req
        req.handle = None
        if req.state != "service":
            return
        if self.step < self.steps:
            step = self.step
            content = [delta(i, {"content": p[step]}) for i, p in enumerate(self.pieces) if step < len(p)]
            req.conn.write(chunk(chunk_event(req, content)))
            self.step += 1
            if req.fault == "stall":
                return  # stuck mid-answer: nothing more until the client leaves
            self._after(self.interval, self._next)
            return
        events = [chunk_event(req, [delta(i, {}, finish) for i, (_, _, finish) in enumerate(req.choices)])]
        if req.include_usage:
            events.append(chunk_event(req, [], with_usage=True))
        events.append(_DONE)
        req.conn.write(chunk(b"".join(events)) + chunk(b""))
        self._finish()

    def _malformed(self) -> None:
        req = self.req
        req.handle = None
        if req.state != "service":
            return
        broken = b'data: {"id": "%s", "object": "chat.completion.chunk", "choices": [{"delta": {\n\n'
        req.conn.write(chunk(broken % req.id.encode() + _DONE) + chunk(b""))
        self._finish()

    def _finish(self) -> None:
        if self.server is not None:
            self.server.end_request(self.req, 200)
