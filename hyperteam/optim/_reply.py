"""Reading one JSON object out of a model's reply, the way open models actually write it.

Open models wrap JSON in ``<patch>`` tags, in a fenced block, or after a
sentence of prose; they leave trailing commas, write Python literals
(``True``, single quotes) or typographic quotes. :func:`find_json` tries the
places in order (the delimited block, fenced blocks, every balanced
``{...}`` or ``[...]`` in the text, last first) and a few lossless repairs,
and says which repair it made; it never guesses at content.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from hyperteam.errors import ParseError

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def find_json(text: str, tag: str) -> tuple[Any, list[str]]:
    """The JSON value in ``text`` and notes on how it was found or repaired.

    Raises:
        ParseError: no JSON object or array could be read; says what was tried and the first error.
    """
    notes: list[str] = []
    places: list[tuple[str, str]] = []
    tagged = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    if tagged:
        places.append((tagged[-1], ""))
    else:
        opened = re.search(rf"<{tag}>(.*)$", text, flags=re.DOTALL | re.IGNORECASE)
        if opened:  # a reply cut before its closing tag: the JSON may still be whole
            places.append((opened.group(1), f"<{tag}> was not closed"))
    places += [(body, "read from a fenced block") for body in reversed(_FENCE.findall(text))]
    places += [(body, "read from JSON inside prose") for body in reversed(_balanced(text))]
    if not places:
        raise ParseError(f"the reply has no <{tag}>...</{tag}> block and no JSON object")
    first_error = ""
    for body, how in places:
        body = _unfence(body)
        if not body:
            continue
        try:
            value, repair = _loads(body)
        except ValueError as exc:
            first_error = first_error or str(exc)
            continue
        if not (
            isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value))
        ):
            first_error = first_error or f"expected a JSON object, got {type(value).__name__}"
            continue  # "[2]" in prose is not the answer
        notes += [n for n in (how, repair) if n]
        return value, notes
    raise ParseError(f"the {tag} is not valid JSON: {first_error or 'empty'}")


def _unfence(body: str) -> str:
    body = body.strip()
    fenced = _FENCE.search(body)
    if fenced:
        return fenced.group(1).strip()
    return body.removeprefix("```json").removeprefix("```").removesuffix("```").strip()


def _loads(body: str) -> tuple[Any, str]:
    try:
        return json.loads(body), ""
    except json.JSONDecodeError as exc:
        error = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    repaired = _TRAILING_COMMA.sub(r"\1", body.translate(_SMART))
    if repaired != body:
        try:
            return json.loads(repaired), "repaired trailing commas or typographic quotes"
        except json.JSONDecodeError:
            pass
    try:  # Python literals: single quotes, True/False/None
        value = ast.literal_eval(repaired)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(error) from None
    if not isinstance(value, dict | list):
        raise ValueError(error)
    return value, "read Python-style literals (single quotes, True/False/None)"


def _balanced(text: str) -> list[str]:
    """Every outermost balanced ``{...}`` or ``[...]`` span of ``text``, in order (strings respected)."""
    spans: list[str] = []
    depth, start, quote, escaped = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch == '"' and depth:
            quote = ch
        elif ch in "{[":
            if depth == 0:
                start = i
            depth += 1
        elif ch in "}]" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans
