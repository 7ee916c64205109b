"""What the reasoner is taught: its target completions (thinking + answer) and the per-shape labels of
the vision tower's auxiliary heads.

A target is ``<think> ... </think><answer>{json}</answer>`` with the answer in the reasoner frame, as a
prepared dataset holds it. Its thinking (:data:`THINKING`) lists the scene (:func:`scene_thinking`):
every shape with its box, left to right, then the shape the request means; the warm-up adds the
request repeated before the choice, the knowledge stage the generator's explanation too.

Example sets are made as they are read (:class:`ShapeWorldExamples`, :class:`InterleavedExamples`),
so a stage can draw from tens of thousands of scenes without holding them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segzero.data.records import NO_TARGET_KEY
from segzero.errors import InputError
from segzero.shapeworld.generator import KINDS, PALETTE, SIZE_CLASSES, SPLIT_SEEDS, TEMPLATES
from segzero.shapeworld.training.common import KNOWLEDGE_SEED_OFFSET

if TYPE_CHECKING:
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig

#: What an example's ``<think>`` holds (:func:`reasoner_examples`).
THINKING = ("scene", "scene-echo", "scene-explain", "explanation", "none")
#: Words that end a :func:`scene_thinking` listing and introduce the shape the request means.
MEANS = "the request means"
#: What follows :data:`MEANS` when the request matches no shape in the scene.
NO_SHAPE = "no shape"

#: Reasoning templates that no training stage sees, so that they stay out of domain: the three that name
#: one shape and mean another (the GRPO learning test's, tests/test_shapeworld_learning.py).
HELD_OUT_TEMPLATES = ("closest_to_kind", "furthest_from_kind", "same_colour_as_kind")
#: The reasoning templates the knowledge stage teaches (:attr:`ShapeWorldTrainConfig.knowledge`).
KNOWLEDGE_TEMPLATES = tuple(t for t in sorted(TEMPLATES["reasoning"]) if t not in HELD_OUT_TEMPLATES)
#: The knowledge stage's thinking (:data:`THINKING`): the reasoning written out before the choice.
KNOWLEDGE_THINKING = "scene-explain"


@dataclass
class ReasonerExample:
    """One reasoner example: the original image, the request, the target completion, the gt in the frame."""

    image: Any  # PIL image, original frame
    request: str
    completion: str
    boxes: list[list[int]]  # reasoner frame
    points: list[list[list[int]]]  # reasoner frame
    sample: Any = None


def frame_box(sample: Any, shape: dict[str, Any], frame: int) -> tuple[int, ...]:
    """A shape's box (one of ``sample.extra["shapes"]``, image frame) in the reasoner ``frame``, mapped as
    ground truth is (:func:`segzero.frames.to_reasoner_frame`)."""
    from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame

    image = Frame.image((sample.width, sample.height))
    return to_reasoner_frame(ObjectPrompt.from_lists(shape["box"], (), image), frame).box


def scene_thinking(sample: Any, frame: int, echo: bool = False, explain: bool = False) -> str:
    """The scene listing: every shape with its box (reasoner frame), left to right, then the target::

        <think> small red triangle [x1,y1,x2,y2]; large blue circle [...]. the request means the small
        red triangle [x1,y1,x2,y2]. </think>

    Every shape's box is supervised in every example (grounded captioning, as grounding models are
    pretrained), and the answer's box is a copy of one the thinking listed; the generator's one-line
    explanation alone did not teach the reasoner where shapes are.

    With ``echo`` the request is repeated just before the choice (``... . the request is 'the red
    shape'; the request means the ...``): the choice then reads the request's words a few tokens back
    instead of across the prompt's instructions.

    With ``explain`` the generator's explanation follows the repeated request (``... the request is
    'the shape that has the most corners'; Counting corners: the red square has 4, the blue triangle has
    3. The square has the most. the request means the ...``): the reasoning written out, with the facts it
    needs (corner counts, what rolls, what colour a lemon is), so the choice copies a shape the text just
    named.

    A request that matches several shapes names them all (``the request means the ... and the ...``); one
    that matches none (``extra["no_target"]``) ends with ``the request means`` :data:`NO_SHAPE`.
    """
    shapes, targets = sample.extra.get("shapes"), sample.extra.get("targets")
    if not shapes or not (targets or sample.extra.get(NO_TARGET_KEY)):
        raise InputError(f"sample {sample.id} has no shape listing (extra['shapes'] / ['targets'])")

    def named(shape: dict[str, Any]) -> str:
        return f"{shape['name']} [{','.join(map(str, frame_box(sample, shape, frame)))}]"

    left_to_right = sorted(range(len(shapes)), key=lambda i: shapes[i]["box"][0] + shapes[i]["box"][2])
    listing = "; ".join(named(shapes[i]) for i in left_to_right)
    meant = " and the ".join(named(shapes[i]) for i in sorted(targets, key=left_to_right.index))
    meant = f"the {meant}" if targets else NO_SHAPE
    said = f"the request is '{sample.request}'; " if echo or explain else ""
    if explain:
        said += sample.extra["explanation"] + " "
    return f"<think> {listing}. {said}{MEANS} {meant}. </think>"


def reasoner_examples(
    samples: Sequence[Any], frame: int, thinking: str = "scene", answer_form: str = "single"
) -> list[ReasonerExample]:
    """Targets for ShapeWorld samples: ``<think> ... </think><answer>{json}</answer>``.

    The answer is :func:`segzero.data.prepared.build_solution` of the gt box and two inscribed points
    mapped into the reasoner frame, as a prepared dataset would hold it. With another ``answer_form``
    (``"multi"``, ``"generalized"``) it is the solution :func:`segzero.data.prepared.sample_to_row`
    writes (the list form; ``[]`` for a request that matches nothing), so a supervised stage teaches
    the answer that GRPO on such data is rewarded for.

    Args:
        thinking: one of :data:`THINKING`: ``"scene"`` (:func:`scene_thinking`), ``"scene-echo"`` (the
            same with the request repeated before the choice, the warm-up's), ``"scene-explain"`` (the
            request and the generator's explanation before the choice, the knowledge stage's),
            ``"explanation"`` (the generator's one-line explanation) or ``"none"`` (answer only).
    """
    from segzero.data.common import add_mask_prompts
    from segzero.data.prepared import build_solution, sample_to_row
    from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame

    if thinking not in THINKING:
        raise InputError(f"thinking must be one of {THINKING}, got {thinking!r}")
    out = []
    for sample in samples:
        if answer_form != "single":
            row = sample_to_row(sample, frame, answer_form=answer_form)
            boxes, points, solution = row["reasoner_boxes"], row["reasoner_points"], row["solution"]
        else:
            if sample.extra.get(NO_TARGET_KEY):
                raise InputError(
                    f"sample {sample.id} matches no shape: its answer needs the generalized form"
                )
            if not sample.points:
                add_mask_prompts(sample)
            image = Frame.image((sample.width, sample.height))
            prompt = ObjectPrompt.from_lists(sample.boxes[0], sample.points[0], image)
            mapped = to_reasoner_frame(prompt, frame)
            boxes = [list(mapped.box)]
            points = [[list(p) for p in mapped.points]]
            solution = build_solution(boxes, points, "single")
        answer = f"<answer>{solution}</answer>"
        if thinking in ("scene", "scene-echo", "scene-explain"):
            think = scene_thinking(
                sample, frame, echo=thinking == "scene-echo", explain=thinking == "scene-explain"
            )
        elif thinking == "explanation":
            think = f"<think> {sample.extra['explanation']} </think>"
        else:
            think = ""
        out.append(ReasonerExample(sample.image, sample.request, think + answer, boxes, points, sample))
    return out


class ShapeWorldExamples(Sequence[ReasonerExample]):
    """Reasoner examples of ``n`` ShapeWorld samples of a split, each made when it is read.

    Item ``i`` is :func:`reasoner_examples` of sample ``SPLIT_SEEDS[split].start + seed_offset + i``
    (as :func:`segzero.shapeworld.generator.make_split` yields it), so a warm-up can draw from tens of
    thousands of scenes without holding them all in memory (an example costs a few milliseconds).
    """

    def __init__(
        self,
        split: str,
        n: int,
        family: str,
        frame: int,
        *,
        thinking: str = "scene",
        seed_offset: int = 0,
        templates: Sequence[str] = (),
        **options: Any,
    ) -> None:
        """``options`` go to :func:`~segzero.shapeworld.generator.make_split` (e.g. ``n_shapes``); with
        ``templates`` item ``i`` uses ``templates[i % len(templates)]``."""
        if templates and "template" in options:
            raise InputError("give ShapeWorldExamples either template or templates, not both")
        seeds = SPLIT_SEEDS[split]
        if n < 0 or seed_offset < 0 or seeds.start + seed_offset + n > seeds.stop:
            raise InputError(
                f"split {split!r} holds {len(seeds)} seeds; n={n} from offset {seed_offset} does not fit."
            )
        self.split, self.n, self.family, self.frame = split, n, family, frame
        self.thinking, self.seed_offset, self.options = thinking, seed_offset, options
        self.templates = tuple(templates)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ReasonerExample:  # type: ignore[override]
        from segzero.shapeworld.generator import make_split

        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        options = dict(self.options)
        if self.templates:
            options["template"] = self.templates[i % len(self.templates)]
        (sample,) = make_split(self.split, 1, self.family, seed_offset=self.seed_offset + i, **options)
        return reasoner_examples([sample], self.frame, self.thinking)[0]


class InterleavedExamples(Sequence[ReasonerExample]):
    """Several example sequences in a fixed cycle: of every ``sum(counts)`` items, the first ``counts[0]``
    come from ``parts[0]``, the next ``counts[1]`` from ``parts[1]``, and so on, each part read in order.

    The length is as many whole cycles as the parts fill, so no item is read twice in one pass.
    """

    def __init__(self, parts: Sequence[Sequence[ReasonerExample]], counts: Sequence[int]) -> None:
        if not parts or len(parts) != len(counts) or any(c < 1 for c in counts):
            raise InputError(
                f"give one count >= 1 per part; got {len(parts)} parts and counts {list(counts)}"
            )
        self.parts, self.counts = list(parts), list(counts)
        self.n = min(len(part) // c for part, c in zip(parts, counts)) * sum(counts)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ReasonerExample:  # type: ignore[override]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        cycle, j = divmod(i % self.n, sum(self.counts))
        for part, count in zip(self.parts, self.counts):
            if j < count:
                return part[cycle * count + j]
            j -= count
        raise AssertionError("unreachable: j < sum(counts)")


def warmup_examples(config: ShapeWorldTrainConfig) -> ShapeWorldExamples:
    """The warm-up's examples: ``config.warmup_samples`` referring requests with the
    ``config.warmup_thinking`` thinking, on scenes of ``config.warmup_n_shapes`` shapes."""
    return ShapeWorldExamples(
        "train",
        config.warmup_samples,
        "referring",
        config.reasoner.frame,
        thinking=config.warmup_thinking,
        n_shapes=config.warmup_n_shapes,
    )


def knowledge_examples(config: ShapeWorldTrainConfig) -> InterleavedExamples:
    """The knowledge stage's examples: referring requests on the warm-up's scenes and reasoning requests
    of ``config.knowledge_templates`` (cycled) on scenes of their own, interleaved by
    ``config.knowledge_mix``, all with the :data:`KNOWLEDGE_THINKING` thinking."""
    unknown = sorted(set(config.knowledge_templates) - set(TEMPLATES["reasoning"]))
    if unknown or not config.knowledge_templates:
        raise InputError(
            f"knowledge_templates must be reasoning templates ({sorted(TEMPLATES['reasoning'])}); "
            f"got {list(config.knowledge_templates)}"
        )
    n_referring, n_reasoning = config.knowledge_samples
    frame = config.reasoner.frame
    referring = ShapeWorldExamples(
        "train", n_referring, "referring", frame, thinking=KNOWLEDGE_THINKING, n_shapes=config.warmup_n_shapes
    )
    reasoning = ShapeWorldExamples(
        "train",
        n_reasoning,
        "reasoning",
        frame,
        thinking=KNOWLEDGE_THINKING,
        seed_offset=KNOWLEDGE_SEED_OFFSET,
        templates=config.knowledge_templates,
    )
    return InterleavedExamples([referring, reasoning], config.knowledge_mix)


# --------------------------------------------------------------------------- per-shape labels

#: What each shape attribute's head chooses from (:attr:`SFTLoopConfig.shape_loss`, :func:`pretrain_tower`).
SHAPE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kind": tuple(sorted(KINDS)),
    "colour": tuple(PALETTE),
    "size": SIZE_CLASSES,
}

#: ``((first, centre, last) row, (first, centre, last) column)`` of a token grid (:func:`box_token_span`).
TokenSpan = tuple[tuple[int, ...], tuple[int, ...]]


def box_token_span(box: Sequence[float], merged: int, grid: int) -> TokenSpan:
    """Rows and columns of a ``grid x grid`` vision-tower token grid (``merged`` px per token) under a box
    in the reasoner frame: ``((first, centre, last) row, (first, centre, last) column)``."""
    x1, y1, x2, y2 = box
    rows = tuple(min(int(v // merged), grid - 1) for v in (y1, (y1 + y2) / 2, y2))
    cols = tuple(min(int(v // merged), grid - 1) for v in (x1, (x1 + x2) / 2, x2))
    return rows, cols


def shape_labels(sample: Any, frame: int, merged: int) -> list[tuple[TokenSpan, dict[str, int]]]:
    """Every shape of a ShapeWorld sample: the tokens its box covers (:func:`box_token_span`) and its
    index in each of :data:`SHAPE_ATTRIBUTES`."""
    grid = frame // merged
    out = []
    for shape in sample.extra.get("shapes") or []:
        rows, cols = box_token_span(frame_box(sample, shape, frame), merged, grid)
        size, colour, kind = shape["name"].split()
        labels = {
            "kind": SHAPE_ATTRIBUTES["kind"].index(kind),
            "colour": SHAPE_ATTRIBUTES["colour"].index(colour),
            "size": SHAPE_ATTRIBUTES["size"].index(size),
        }
        out.append(((rows, cols), labels))
    return out
