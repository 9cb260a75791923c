"""Open models' patch replies: the shapes they write are read (with a note), the malformed ones rejected with why."""

from __future__ import annotations

import pytest

from hyperteam.errors import ParseError
from hyperteam.optim.patch import parse_patch

OP = '{"op": "set_role", "agent": "tutor", "value": "a careful tutor"}'
WANT = [{"op": "set_role", "agent": "tutor", "value": "a careful tutor"}]

# (reply, the ops read, a fragment of the notes or "" for a clean read)
READ = [
    ("<patch>{\"ops\": [" + OP + "]}</patch>", WANT, ""),
    ("Here is my update.\n<patch>\n```json\n{\"ops\": [" + OP + "]}\n```\n</patch>", WANT, ""),
    ("```json\n{\"ops\": [" + OP + "]}\n```", WANT, "fenced block"),
    ("The gradient says the tutor is vague, so: {\"ops\": [" + OP + "]} This should help.", WANT, "inside prose"),
    ("{\"ops\": [" + OP + "]}", WANT, "inside prose"),
    ("<patch>{\"ops\": [" + OP + "], \"reason\": \"clearer role\"}</patch>", WANT, "ignored unknown keys reason"),
    ("<patch>{\"ops\": [" + OP[:-1] + ", \"why\": \"x\"}]}</patch>", WANT, "op 0: ignored unknown keys why"),
    ("<patch>{\"ops\": [" + OP + ",]}</patch>", WANT, "trailing commas"),
    ("<patch>{'ops': [{'op': 'set_role', 'agent': 'tutor', 'value': 'a careful tutor'}]}</patch>", WANT, "Python"),
    ("<patch>[" + OP + "]</patch>", WANT, "bare list"),
    ("<patch>" + OP + "</patch>", WANT, "single operation"),
    ("<patch>{\"ops\": [{\"op\": \"Set-Role\", \"agent\": \"tutor\", \"value\": \"a careful tutor\"}]}</patch>", WANT,
     "'Set-Role' read as 'set_role'"),
    ("<patch>{\"ops\": [{\"op\": \"set_role\", \"agent\": \"tutor\", \"text\": \"a careful tutor\"}]}</patch>", WANT,
     "'text' read as 'value'"),
    ("<patch>{\"ops\": [{\"op\": \"set_role\", \"agent_name\": \"tutor\", \"value\": \"a careful tutor\"}]}</patch>",
     WANT, "'agent_name' read as 'agent'"),
    ("<patch>{\"ops\": [" + OP + "]}", WANT, "not closed"),
    ("<patch>{\u201cops\u201d: [" + OP + "]}</patch>", WANT, "typographic"),
    ("<patch>{\"operations\": [" + OP + "]}</patch>", WANT, "under 'operations'"),
    ("<patch>{\"ops\": [{\"op\": \"add_agent\", \"name\": \"s4\", \"role\": \"a checker\", "
     "\"instructions\": \"Check.\"}]}</patch>",
     [{"op": "add_agent", "agent": {"name": "s4", "role": "a checker", "instructions": "Check."}}], "flat fields"),
    ("<patch>{\"ops\": [{\"op\": \"remove_layer\"}]}</patch>", [{"op": "remove_layer"}], ""),
    ("<patch>{\"ops\": [{\"op\": \"move_layer\", \"layer\": \"verify\", \"position\": 1}]}</patch>",
     [{"op": "move_layer", "layer": "verify", "position": 1}], ""),
    ("Thinking [1] then [2].\n{\"ops\": [{\"op\": \"set_fusion\", \"value\": \"llm_select\"}]}",
     [{"op": "set_fusion", "value": "llm_select"}], "inside prose"),
]  # fmt: skip

REJECTED = [
    ("I would make the tutor more careful.", "no <patch>"),
    ("<patch>set the role to tutor</patch>", "not valid"),
    ("<patch>{\"ops\": []}</patch>", "ops"),
    ("<patch>{\"ops\": [{\"op\": \"rename_team\", \"value\": \"x\"}]}</patch>", "rename_team"),
    ("<patch>{\"ops\": [{\"op\": \"set_role\", \"agent\": \"tutor\"}]}</patch>", "value"),
    ("<patch>{\"ops\": [{\"op\": \"set_role\", \"agent\": \"tutor\", \"value\": \"\"}]}</patch>", "at least 1"),
    ("<patch>{\"ops\": [{\"op\": \"move_layer\", \"position\": 0}]}</patch>", "position"),
    ("<patch>{\"ops\": [" + ", ".join([OP] * 6) + "]}</patch>", "at most 5"),
    ("<patch>{\"ops\": [{\"op\": \"add_agent\", \"agent\": {\"role\": \"x\"}}]}</patch>", "name"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "ops", "note"), READ)
def test_open_model_reply_shapes_are_read(reply: str, ops: list[dict], note: str):
    patch = parse_patch(reply)
    dumped = [{k: v for k, v in op.items() if v is not None} for op in patch.model_dump(mode="json")["ops"]]
    assert dumped == ops
    notes = "; ".join(patch.notes)
    if note:
        assert note in notes
    elif reply.startswith("<patch>") and "</patch>" in reply and "```" not in reply:
        assert notes == ""


@pytest.mark.parametrize(("reply", "reason"), REJECTED)
def test_malformed_replies_are_rejected_with_their_reason(reply: str, reason: str):
    with pytest.raises(ParseError, match=None) as caught:
        parse_patch(reply)
    assert reason in str(caught.value)


def test_at_least_twelve_shapes_are_covered():
    assert len(READ) >= 12 and len(REJECTED) >= 6
