"""Which differences between the two protocols touch a sample: counted per run, so every figure says
how many samples each difference moved.

Pure functions on a sample's completion, image size and scores; no model. Each run (whatever its
protocol) reads every completion both ways, maps both readings to image pixels and scores its mask under
both conventions, and names the differences that changed something for the sample:

- ``ignore``: the ground truth has ignore pixels the prediction or the target touches, so the two
  conventions give different intersection or union (left out: segzero, LISA; target: the reference).
- ``reading``: one protocol's reading yields a usable answer and the other's does not, for a reason
  other than the thinking check: the JSON's place and quoting, the key lookup, the value checks.
- ``thinking``: the reference's reading fails only because ``<think>([^<]+)</think>`` does not match.
- ``prompts``: both readings are usable but hand the segmenter different pixels: rounding
  (``floor(v * s + 0.5)`` against ``round(int(v) * s)``), clamping into the image, corner order, which
  keys were read.
- ``empty_union``: the reference leaves the sample out (a segmented answer on an empty target).

What the per-sample view cannot count (the segmenter's version, its input precision) shows only in two
runs side by side; ``docs/reproducing.md`` has those figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segzero.answer import PARSERS, ParseStatus
from segzero.frames import Frame, to_image_frame
from segzero.protocols import PROTOCOLS, REFERENCE, SEGZERO

#: Every difference a sample can be touched by, with what it is, in the order reports list them.
DIFFERENCES: dict[str, str] = {
    "ignore": "ignore pixels left out (segzero, LISA) or counted as target (reference)",
    "reading": "one protocol reads a usable answer, the other does not (JSON place and quotes, keys, values)",
    "thinking": "a usable answer fails the reference's <think>([^<]+)</think> check",
    "prompts": "both read the answer, but hand the segmenter different pixels (rounding, clamping, corners)",
    "empty_union": "a segmented answer on an empty target: left out by the reference, IoU 1 for segzero",
}


def _image_prompts(completion: str, image_size: tuple[int, int], frame: int | Frame, protocol: str) -> Any:
    """What ``protocol`` hands the segmenter for a completion: its image-pixel objects, or None when the
    reading fails (the status as well, to tell the thinking check apart)."""
    answer = PARSERS[protocol](completion, frame)
    if not answer.ok:
        return None, answer.status
    try:
        objects = [to_image_frame(o, image_size, rounding=protocol) for o in answer.objects]
    except ValueError:
        return None, ParseStatus.INVALID_VALUES
    return [(o.box, o.points) for o in objects], answer.status


def sample_differences(
    completion: str,
    image_size: tuple[int, int],
    frame: int | Frame,
    scores: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """The names (keys of :data:`DIFFERENCES`) of the differences that touch one sample.

    Args:
        completion: the reasoner's text ("" when the pipeline failed before it answered).
        image_size: ``(width, height)`` of the image.
        frame: the reasoner frame the answer is in (its side, or the :class:`~segzero.frames.Frame`).
        scores: per protocol, ``{"intersection", "union", "counted"}`` (as :func:`protocol_scores` gives).
    """
    names = []
    seg, ref = (scores[p] for p in PROTOCOLS)
    if (seg["intersection"], seg["union"]) != (ref["intersection"], ref["union"]):
        names.append("ignore")
    (ours, _), (theirs, status) = (_image_prompts(completion, image_size, frame, p) for p in (SEGZERO, REFERENCE))
    if ours is not None and theirs is None:
        names.append("thinking" if status == ParseStatus.NO_THINKING else "reading")
    elif ours is None and theirs is not None:
        names.append("reading")
    elif ours is not None and ours != theirs:
        names.append("prompts")
    if not ref["counted"]:
        names.append("empty_union")
    return names


__all__ = ["DIFFERENCES", "sample_differences"]
