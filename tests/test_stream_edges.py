"""A streamed chat completion, chunk by chunk, as an OpenAI client parses it (raw SSE, n = 2, usage on)."""

from __future__ import annotations

import json
import time
from typing import Any

from hyperteam.testing import FunctionModel
from tests.test_serve_support import chain_team, client_for, make_app

# Ten 8-character words and an answer: the first piece is exactly 64 characters (the piece size).
TEXT = "abcdefg " * 10 + "#### 4"


async def _stream(body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], list[str]]:
    app = make_app({"one": chain_team(FunctionModel(lambda request: TEXT), name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=body)
    frames = [f for f in response.text.split("\n\n") if f]
    return response, [json.loads(f.removeprefix("data: ")) for f in frames[:-1]], frames


async def test_every_chunk_of_a_two_choice_stream_has_the_openai_shape():
    before = int(time.time())
    body = {
        "model": "one",
        "messages": [{"role": "user", "content": "2 + 2?"}],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, chunks, frames = await _stream(body)
    assert response.status_code == 200 and frames[-1] == "data: [DONE]"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"

    finals = [c for c in chunks if "hyperteam" in c]
    run_ids = [c["hyperteam"]["run_id"] for c in finals]
    assert len(set(run_ids)) == 2 and all(r.startswith("run_") for r in run_ids)
    for c in chunks:
        assert c["id"] == "chatcmpl-" + run_ids[0].removeprefix("run_")
        assert c["object"] == "chat.completion.chunk" and c["model"] == "one" and c["system_fingerprint"] is None
        assert before <= c["created"] <= time.time()
        assert "usage" in c and (c["usage"] is None) == (c is not chunks[-1])

    def choice(i: int, delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]

    assert [c["choices"] for c in chunks[:2]] == [
        choice(0, {"role": "assistant", "content": ""}),
        choice(1, {"role": "assistant", "content": ""}),
    ]
    events = [c for c in chunks if "hyperteam_event" in c]
    assert events and all(c["choices"] == choice(c["choices"][0]["index"], {}) for c in events)
    for i, run_id in enumerate(run_ids):
        mine = [c["hyperteam_event"] for c in events if c["choices"][0]["index"] == i]
        assert mine and all(e["run_id"] == run_id and "input" not in e for e in mine)
        seqs = [e["seq"] for e in mine]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and min(seqs) >= 1
        pieces = [
            c["choices"][0]["delta"]["content"]
            for c in chunks
            if c["choices"] and c["choices"][0]["index"] == i and set(c["choices"][0]["delta"]) == {"content"}
        ]
        assert pieces == ["abcdefg " * 8, "abcdefg abcdefg #### 4"]  # cut after whitespace at 64 characters
        assert finals[i]["choices"] == choice(i, {}, "stop")
        assert finals[i]["hyperteam"] == {"run_id": run_id, "answer": "4", "simulated": False}
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0


async def test_without_include_usage_no_chunk_has_a_usage_key():
    body = {"model": "one", "messages": [{"role": "user", "content": "2 + 2?"}], "stream": True}
    _, chunks, frames = await _stream(body)
    assert frames[-1] == "data: [DONE]" and chunks and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
