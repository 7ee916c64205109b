"""Parse a reasoner completion into a typed answer. Pure functions; never raises on any string.

A completion looks like::

    <think> ... </think><answer>{"bbox": [x1,y1,x2,y2], "points_1": [x,y], "points_2": [x,y]}</answer>

or, for the multi-object and generalized forms, ``<answer>[{"bbox_2d": [...], "point_2d": [x,y]}, ...]</answer>``,
where the empty list ``<answer>[]</answer>`` says that nothing in the image matches
(:attr:`ParseStatus.NO_TARGET`, a valid answer with no objects, unlike the failure statuses).
The parser is lenient where the intent is clear (Python-literal dicts with single quotes,
missing ``<think>``, text around the JSON, floats, swapped corners, out-of-frame values are
clamped) and strict where it is not (NaN/inf, wrong arity, non-numbers are rejected with a
reason). Coordinates stay in the reasoner frame, which every object names
(:class:`segzero.frames.Frame`); :func:`segzero.frames.map_object` maps them.

:func:`parse_answer_reference` is its twin for ``--protocol reference``: the reference release's
evaluation reading, fact by fact (SPEC section 9.1), returning the same :class:`ParsedAnswer`.
:data:`PARSERS` names the parser of each protocol.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from segzero.defaults import REASONER_FRAME
from segzero.frames import Box, Frame, ObjectPrompt, Point

# Bounds that keep parsing linear-ish on adversarial text.
_MAX_SCAN_CHARS = 20_000
_MAX_CANDIDATES = 64
_MAX_DEPTH = 16
_MAX_LABEL_CHARS = 200

_SPAN_CHARS = "{}[]\"'\\"  # what a bracketed span's end depends on
_SPAN_CHARS_RE = re.compile(f"[{re.escape(_SPAN_CHARS)}]")
_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|<answer>|$)", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_THINK_BLOCK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


#: What segzero says when the model answers that nothing in the image matches (:attr:`ParseStatus.NO_TARGET`).
NOTHING_MATCHES = "Nothing matches: nothing in the image matches the request, so the mask is empty."


class ParseStatus(str, Enum):
    """Whether, and how, a completion yielded positional prompts.

    OK, PARTIAL and NO_TARGET are usable answers (:attr:`usable`); the others are failures.
    """

    OK = "ok"
    PARTIAL = "partial"  # some objects were rejected, at least one kept
    NO_TARGET = "no_target"  # the answer is an empty list: nothing in the image matches the request
    NO_ANSWER = "no_answer"  # no JSON object or list anywhere in the answer
    INVALID_JSON = "invalid_json"  # bracketed text that is neither JSON nor a Python literal
    INVALID_VALUES = "invalid_values"  # decoded, but no object had a usable box or points
    NO_THINKING = "no_thinking"  # reference protocol: a usable answer, but no <think> block it accepts
    RUNAWAY = "runaway"  # no usable answer, and the completion ends in a runaway (segzero.runaway)

    @property
    def usable(self) -> bool:
        """True for an answer that says what to segment: some objects, or explicitly none."""
        return self in (ParseStatus.OK, ParseStatus.PARTIAL, ParseStatus.NO_TARGET)


@dataclass(frozen=True)
class ParsedAnswer:
    """What a completion says.

    Attributes:
        thinking: text inside ``<think>`` tags, or None when there were none.
        objects: positional prompts in the reasoner frame (each names it), in the order the model gave them.
        status: see :class:`ParseStatus`.
        reason: why parsing failed or was partial; empty when ``status`` is OK or NO_TARGET.
        raw: the decoded JSON value (dict or list) before validation, for format rewards; None if none.
    """

    thinking: str | None
    objects: tuple[ObjectPrompt, ...]
    status: ParseStatus
    reason: str = ""
    raw: Any = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True when at least one object, or an explicit empty list (NO_TARGET), was read."""
        return self.status.usable


def split_think_answer(text: str) -> tuple[str | None, str]:
    """Return ``(thinking, answer_text)``.

    ``answer_text`` is the inside of the first ``<answer>`` tag (unclosed tags run to the end);
    without answer tags it is the whole text minus any ``<think>`` block.
    """
    think = _THINK_RE.search(text)
    thinking = think.group(1).strip() if think else None
    answer = _ANSWER_RE.search(text)
    if answer:
        return thinking, answer.group(1)
    return thinking, _THINK_BLOCK_RE.sub("", text, count=1)


def _balanced_span(text: str, start: int) -> str | None:
    """The bracketed text starting at ``text[start]`` ('{' or '['), quotes respected; None if unbalanced."""
    closers = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote: str | None = None
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch not in _SPAN_CHARS:  # other characters change nothing: jump to the next one that may
            found = _SPAN_CHARS_RE.search(text, i)
            if found is None:
                return None
            i = found.start()
            ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in closers:
            stack.append(closers[ch])
            if len(stack) > _MAX_DEPTH:
                return None
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start : i + 1]
        i += 1
    return None


def _decode(span: str) -> Any:
    """JSON first, then a Python literal (the prompt shows single quotes); raise ValueError if neither."""
    try:
        return json.loads(span)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _is_answer_shaped(value: Any) -> bool:
    """A dict, or a list of dicts (possibly empty): the two answer forms. Bare number lists are not."""
    return isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))


def extract_json(text: str) -> tuple[Any, bool]:
    """Find the first bracketed value in ``text`` that decodes to a dict or a list of dicts.

    Returns:
        ``(value, saw_brackets)``: the value or None, and whether any ``{`` or ``[`` was seen at all.
    """
    text = text[:_MAX_SCAN_CHARS]
    saw = False
    tried = 0
    for match in re.finditer(r"[{\[]", text):
        first_bracket = not saw
        saw = True
        span = _balanced_span(text, match.start())
        if span is None:
            continue
        tried += 1
        try:
            value = _decode(span)
        except ValueError:
            value = None
        # An empty list is an answer ("nothing matches") only when it is the answer, not a fragment of one.
        if _is_answer_shaped(value) and (value != [] or first_bracket):
            return value, True
        if tried >= _MAX_CANDIDATES:
            break
    return None, saw


def _shown(value: Any) -> str:
    """At most 60 characters of ``repr(value)`` for a reason; never raises (Python refuses to print
    integers of more than 4,300 digits, which a Python-literal hex answer can hold)."""
    try:
        return f"{value!r:.60}"
    except ValueError:
        return f"a {type(value).__name__} too long to show"


def _number(value: Any) -> float:
    """A finite float from a decoded JSON or literal number; ValueError for anything else.

    An integer beyond the float range (``1`` followed by 400 zeros) is as unusable as ``inf`` and
    is refused the same way, instead of letting ``float()`` raise OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_shown(value)} is not a number")
    try:
        v = float(value)
    except OverflowError:
        digits = int(value.bit_length() * math.log10(2)) + 1
        raise ValueError(f"an integer of about {digits} digits is too large to be a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{_shown(value)} is not a finite number")
    return v


def _clamp(v: float, side: int) -> float:
    return min(max(v, 0.0), float(side))


def _read_box(value: Any, frame: Frame) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"a bbox needs 4 numbers, got {_shown(value)}")
    x1, x2 = (_clamp(_number(v), frame.width) for v in value[0::2])
    y1, y2 = (_clamp(_number(v), frame.height) for v in value[1::2])
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _read_points(value: Any, frame: Frame) -> list[Point]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"a point needs 2 numbers, got {_shown(value)}")
    if value and all(isinstance(p, (list, tuple)) for p in value):  # [[x, y], [x, y]]
        return [pt for p in value for pt in _read_points(p, frame)]
    if len(value) != 2:
        raise ValueError(f"a point needs 2 numbers, got {_shown(value)}")
    return [(_clamp(_number(value[0]), frame.width), _clamp(_number(value[1]), frame.height))]


def _point_key_order(key: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", key)
    return (int(digits[-1]) if digits and len(digits[-1]) < 6 else 0, key)


def _as_frame(frame: int | Frame) -> Frame:
    return frame if isinstance(frame, Frame) else Frame.reasoner(frame)


def read_object(item: Any, frame: int | Frame = REASONER_FRAME) -> ObjectPrompt:
    """Read one answer object (``{"bbox": ..., "points_1": ...}`` or ``{"bbox_2d": ..., "point_2d": ...}``,
    either with an optional ``"label"``: the phrase naming the object).

    ``frame`` is the reasoner frame the numbers are in (its side, or the :class:`Frame`); values are
    clamped into it.

    Raises:
        ValueError: with a reason when the object has no usable box or points.
    """
    if not isinstance(item, dict):
        raise ValueError(f"an answer object must be a dict, got {type(item).__name__}")
    keys = [k for k in item if isinstance(k, str)]
    box_keys = [k for k in keys if "bbox" in k.lower()]
    point_keys = sorted((k for k in keys if "point" in k.lower()), key=_point_key_order)
    if not box_keys and not point_keys:
        raise ValueError("the answer has no 'bbox' or 'point' keys")
    frame = _as_frame(frame)
    box = _read_box(item[box_keys[0]], frame) if box_keys else None
    points = tuple(p for k in point_keys for p in _read_points(item[k], frame))
    return ObjectPrompt(box=box, points=points, frame=frame, label=_read_label(item.get("label")))


def _read_label(value: Any) -> str | None:
    """The object's phrase (Qwen3-VL's ``"label"`` key), or None when absent, empty or not text."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split())[:_MAX_LABEL_CHARS] or None


def parse_answer(text: str, frame: int | Frame = REASONER_FRAME) -> ParsedAnswer:
    """Parse a completion; coordinates are clamped into the reasoner frame (its side, or the :class:`Frame`).

    An answer that is the empty list ``[]`` is :attr:`ParseStatus.NO_TARGET` ("nothing matches"); an empty
    object ``{}`` or a list of empty objects ``[{}]`` names no box or point and is INVALID_VALUES.
    """
    if not isinstance(text, str):
        return ParsedAnswer(None, (), ParseStatus.NO_ANSWER, f"the completion is {type(text).__name__}, not text")
    thinking, answer_text = split_think_answer(text)
    value, saw_brackets = extract_json(answer_text)
    if value is None:
        if saw_brackets:
            return ParsedAnswer(
                thinking, (), ParseStatus.INVALID_JSON, "the answer's JSON is incomplete or could not be decoded"
            )
        return ParsedAnswer(thinking, (), ParseStatus.NO_ANSWER, "the answer holds no JSON object or list")

    if value == []:
        return ParsedAnswer(thinking, (), ParseStatus.NO_TARGET, "", value)
    items = value if isinstance(value, list) else [value]
    reasoner_frame = _as_frame(frame)
    objects: list[ObjectPrompt] = []
    reasons: list[str] = []
    for i, item in enumerate(items):
        try:
            objects.append(read_object(item, reasoner_frame))
        except ValueError as exc:
            reasons.append(f"object {i}: {exc}" if len(items) > 1 else str(exc))
    if not reasons:
        return ParsedAnswer(thinking, tuple(objects), ParseStatus.OK, "", value)
    status = ParseStatus.PARTIAL if objects else ParseStatus.INVALID_VALUES
    return ParsedAnswer(thinking, tuple(objects), status, "; ".join(reasons), value)


# --- The reference release's reading (``--protocol reference``) ----------------------------------------

#: The thinking the reference's evaluation requires: at least one character, none of them ``<``.
_REFERENCE_THINK_RE = re.compile(r"<think>([^<]+)</think>")


def first_brace_span(text: str) -> str | None:
    """What ``re.search(r"{[^}]+}", text)`` matches, found in linear time; None when nothing matches.

    A match starts at a ``{`` and runs to the first ``}`` after it, with at least one character
    between them (which may be ``{``); the leftmost such ``{`` wins. The reference's regular expression
    takes quadratic time on many ``{`` without a ``}``; this finds the same span without backtracking.
    """
    start = text.find("{")
    while start >= 0:
        end = text.find("}", start + 1)
        if end < 0:
            return None
        if end > start + 1:
            return text[start : end + 1]
        start = text.find("{", end + 1)  # "{}": no "{" lies between them, go on after the "}"
    return None


def _reference_number(value: Any) -> int | float:
    """A coordinate the reference's ``int(value)`` accepts, kept as given (``int`` truncates it later,
    in the mapping); a digit string becomes its integer, as ``int("12")`` does.

    Raises:
        ValueError: ``int(value)`` raises there (``None``, a list, ``"1.5"``, NaN, infinity).
    """
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"int({value!r:.40}) fails") from None
    return value if isinstance(value, float) else whole


def parse_answer_reference(text: str, frame: int | Frame = REASONER_FRAME) -> ParsedAnswer:
    """Read a completion as the reference release's evaluation does (SPEC section 9.1); never raises.

    - The JSON is the first match of ``{[^}]+}`` **anywhere** in the completion (inside ``<think>`` too),
      read with ``json.loads`` (single quotes fail).
    - The box is the value of the first key containing "bbox" (any case), used only if it has 4 items;
      the points are the values of the first two keys containing "points" (any case), in the order of
      the JSON; only their first two items are read.
    - Each coordinate must pass ``int()``: floats are kept (the mapping truncates them), digit strings
      become numbers, anything else fails the answer. Nothing is clamped and a box's corners keep their
      order: :func:`segzero.frames.map_object` with ``rounding="reference"`` maps them as the reference does.
    - ``<think>([^<]+)</think>`` must match; otherwise a valid answer fails as
      :attr:`ParseStatus.NO_THINKING`.

    Every failure is a failed sample there (nothing is segmented); here it is a status and a reason.

    Args:
        text: the completion.
        frame: the reasoner frame (its side, or the :class:`Frame`); values are not clamped into it.

    Returns:
        OK with one object (its box and two points), or a failure status with ``objects=()``.
    """
    if not isinstance(text, str):
        return ParsedAnswer(None, (), ParseStatus.NO_ANSWER, f"the completion is {type(text).__name__}, not text")
    think = _REFERENCE_THINK_RE.search(text)
    thinking = think.group(1) if think else None
    span = first_brace_span(text)
    if span is None:
        return ParsedAnswer(thinking, (), ParseStatus.NO_ANSWER, "no {...} anywhere in the completion")
    try:
        value = json.loads(span)
    except (ValueError, RecursionError):
        return ParsedAnswer(thinking, (), ParseStatus.INVALID_JSON, "the first {...} is not JSON (json.loads fails)")
    try:
        box_key = next((k for k in value if "bbox" in k.lower()), None)
        if box_key is None or not hasattr(value[box_key], "__len__") or len(value[box_key]) != 4:
            raise ValueError("the first key containing 'bbox' is missing or its value does not have 4 items")
        point_keys = [k for k in value if "points" in k.lower()][:2]
        if len(point_keys) < 2:
            raise ValueError("fewer than two keys contain 'points'")
        box = tuple(_reference_number(value[box_key][i]) for i in range(4))
        points = tuple(
            (_reference_number(value[k][0]), _reference_number(value[k][1])) for k in point_keys
        )
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"a value cannot be read ({type(exc).__name__})"
        return ParsedAnswer(thinking, (), ParseStatus.INVALID_VALUES, reason, value)
    if think is None:
        return ParsedAnswer(
            None, (), ParseStatus.NO_THINKING,
            "the answer is usable but <think>([^<]+)</think> does not match (no thinking, or a '<' in it)", value,
        )  # fmt: skip
    obj = ObjectPrompt(box=box, points=points, frame=_as_frame(frame))  # type: ignore[arg-type]
    return ParsedAnswer(thinking, (obj,), ParseStatus.OK, "", value)


#: The answer parser of each protocol (:data:`segzero.protocols.PROTOCOLS`).
PARSERS = {"segzero": parse_answer, "reference": parse_answer_reference}
