"""Prompt templates for the reasoner, selectable by name.

The ``seg_zero`` and ``multi_object`` texts are the released checkpoints' exact
prompts (SPEC section 3): pieces joined with no separator, so that the sentences
run into each other exactly as the models were trained on them. The ablation
variants change only what the model is asked to output. ``concept`` asks, besides
Seg-Zero's box and points, for a short noun phrase naming the object (``"label"``,
as Qwen3-VL names what it grounds), which the ``concept`` segmenter mode gives
SAM 3's text interface.

Every variant is rendered for the reasoner's coordinate convention
(:func:`PromptVariant.render`): for a reasoner that answers in pixels (Qwen2.5-VL) the
text is exactly the template; for one that answers on the 0-1000 grid
(Qwen3-VL) one sentence says so, right before the example answer, and nothing else
changes. So each variant suits Qwen3-VL, and the pixel texts stay the released ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segzero.defaults import DEFAULT_PROMPT, RELATIVE_GRID
from segzero.errors import InputError

_SINGLE_EXAMPLE = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"
_MULTI_EXAMPLE = (
    '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
)
_CONCEPT_EXAMPLE = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180], 'label': 'red mug'}"
_THINK_THEN_ANSWER = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)
#: Where a template states the coordinate convention; see :data:`COORDINATE_SENTENCES`.
_COORDS = "{coordinates}"

#: What the prompt says about coordinates, per convention: nothing for pixels (the released texts),
#: one sentence for the relative grid.
COORDINATE_SENTENCES = {
    "pixels": "",
    "relative": f"Give every coordinate as an integer from 0 to {RELATIVE_GRID}, relative to the image's "
    "width and height.",
}


@dataclass(frozen=True)
class PromptVariant:
    """One way of asking the reasoner.

    Attributes:
        name: registry key, e.g. ``"seg_zero"``.
        template: text with ``{question}`` where the normalised request goes.
        multi_object: True when the answer is a JSON list of objects (VisionReasoner form).
        thinking: True when the model is asked to think in ``<think>`` tags first.
        uses_box / uses_points: which positional prompts the answer carries.
        description: one line for ``--help`` and the docs.
        names_object: True when the answer also names the object with a short phrase (``"label"``).
    """

    name: str
    template: str
    multi_object: bool
    thinking: bool
    uses_box: bool
    uses_points: bool
    description: str
    names_object: bool = False

    def render(self, request: str, coordinates: str = "pixels") -> str:
        """Return the prompt text for ``request`` (normalised with :func:`normalize_request`), worded for a
        reasoner whose ``coordinates`` convention is ``"pixels"`` or ``"relative"``."""
        return self.template.replace(_COORDS, COORDINATE_SENTENCES[coordinates]).replace(
            "{question}", normalize_request(request)
        )


# Control tokens of the Qwen-VL chat format ("<|im_end|>", "<|image_pad|>", ...). In a request they would
# end the user turn or open image slots the batch has no image for, failing every request batched with it.
_CONTROL_TOKEN_RE = re.compile(r"<\|[^<>|\s]{1,40}\|>")


def normalize_request(request: str) -> str:
    """Lower-case the request and strip surrounding whitespace and full stops, as the reference does.

    Raises:
        InputError: the request is empty once normalised, is not valid Unicode (an unpaired surrogate,
            which the tokenizer cannot encode), or holds a chat control token such as ``<|im_end|>``.
    """
    if not isinstance(request, str):
        raise InputError(f"The request must be text, got {type(request).__name__}.")
    try:
        request.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("The request is not valid Unicode (an unpaired surrogate); send UTF-8 text.") from None
    control = _CONTROL_TOKEN_RE.search(request)
    if control:
        raise InputError(
            f"The request contains {control.group()!r}, a control token of the model's chat format; remove it."
        )
    text = request.strip().lower().strip(".").strip()
    if not text:
        raise InputError("The request is empty: say what to segment, e.g. 'the cup on the left'.")
    return text


def _join(*pieces: str) -> str:
    return "".join(pieces)


PROMPTS: dict[str, PromptVariant] = {
    v.name: v
    for v in (
        PromptVariant(
            name=DEFAULT_PROMPT,
            template=_join(
                "Please find '{question}' with bbox and points.",
                "Compare the difference between objects and find the most closely matched one.",
                _THINK_THEN_ANSWER,
                "Output the one bbox and points of two largest inscribed circles inside the interested "
                "object in JSON format.",
                _COORDS,
                "i.e., <think> thinking process here </think>",
                f"<answer>{_SINGLE_EXAMPLE}</answer>",
            ),
            multi_object=False,
            thinking=True,
            uses_box=True,
            uses_points=True,
            description="Seg-Zero's prompt: think, then one bbox and two points (the released checkpoints').",
        ),
        PromptVariant(
            name="multi_object",
            template=_join(
                'Please find "{question}" with bboxs and points.',
                "Compare the difference between object(s) and find the most closely matched object(s).",
                _THINK_THEN_ANSWER,
                "Output the bbox(es) and point(s) inside the interested object(s) in JSON format.",
                _COORDS,
                "i.e., <think> thinking process here </think>",
                f"<answer>{_MULTI_EXAMPLE}</answer>",
            ),
            multi_object=True,
            thinking=True,
            uses_box=True,
            uses_points=True,
            description="VisionReasoner's prompt: think, then a list of objects, each a bbox_2d and a point_2d.",
        ),
        PromptVariant(
            name="no_think",
            template=_join(
                "Please find '{question}' with bbox and points.",
                "Compare the difference between objects and find the most closely matched one.",
                "Output the final answer in <answer> </answer> tags.",
                "Output the one bbox and points of two largest inscribed circles inside the interested "
                "object in JSON format.",
                _COORDS,
                f"i.e., <answer>{_SINGLE_EXAMPLE}</answer>",
            ),
            multi_object=False,
            thinking=False,
            uses_box=True,
            uses_points=True,
            description="Ablation: the answer without a thinking process.",
        ),
        PromptVariant(
            name="box_only",
            template=_join(
                "Please find '{question}' with bbox.",
                "Compare the difference between objects and find the most closely matched one.",
                _THINK_THEN_ANSWER,
                "Output the one bbox of the interested object in JSON format.",
                _COORDS,
                "i.e., <think> thinking process here </think>",
                "<answer>{'bbox': [10,100,200,210]}</answer>",
            ),
            multi_object=False,
            thinking=True,
            uses_box=True,
            uses_points=False,
            description="Ablation: think, then only a bbox.",
        ),
        PromptVariant(
            name="points_only",
            template=_join(
                "Please find '{question}' with points.",
                "Compare the difference between objects and find the most closely matched one.",
                _THINK_THEN_ANSWER,
                "Output the points of two largest inscribed circles inside the interested object in JSON format.",
                _COORDS,
                "i.e., <think> thinking process here </think>",
                "<answer>{'points_1': [30,110], 'points_2': [35,180]}</answer>",
            ),
            multi_object=False,
            thinking=True,
            uses_box=False,
            uses_points=True,
            description="Ablation: think, then only two points.",
        ),
        PromptVariant(
            name="concept",
            template=_join(
                "Please find '{question}' with bbox and points.",
                "Compare the difference between objects and find the most closely matched one.",
                _THINK_THEN_ANSWER,
                "Output the one bbox and points of two largest inscribed circles inside the interested "
                "object, and a short noun phrase naming it as label, in JSON format.",
                _COORDS,
                "i.e., <think> thinking process here </think>",
                f"<answer>{_CONCEPT_EXAMPLE}</answer>",
            ),
            multi_object=False,
            thinking=True,
            uses_box=True,
            uses_points=True,
            names_object=True,
            description="Seg-Zero's answer plus a label naming the object, for SAM 3's text interface "
            "(--segmenter-mode concept).",
        ),
    )
}


def get_prompt(name: str) -> PromptVariant:
    """Look up a prompt variant by name; raise :class:`InputError` listing the known names otherwise."""
    try:
        return PROMPTS[name]
    except KeyError:
        raise InputError(f"Unknown prompt variant {name!r}; choose one of: {', '.join(PROMPTS)}.") from None
