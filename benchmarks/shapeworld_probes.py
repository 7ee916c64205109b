"""Probes of the ShapeWorld models: what they measure and diagnose, not what trains or runs them.

Used by the ``benchmarks/shapeworld_*.py`` scripts (run as ``python benchmarks/NAME.py``, which import
this module as ``shapeworld_probes``) and by the tests (as ``benchmarks.shapeworld_probes``):

* :func:`evaluate_segmenter`: the mini SAM2's mask IoU from ground-truth prompts;
* :func:`evaluate_reasoner`, :func:`score_completions`, :func:`generate_answers`: a reasoner's answers
  scored with the Seg-Zero rewards;
* :func:`listing_accuracy`, :func:`choice_outcome`: how a scene-listing thinking names the shapes it
  boxes, and whether it then chooses the meant one;
* :func:`answer_image_dependence`, :func:`mean_pairwise_tv`: how much the answer depends on the image
  and on the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero.shapeworld.shipped import MAX_COMPLETION_TOKENS
from segzero.shapeworld.training.examples import MEANS, ReasonerExample, frame_box
from segzero.shapeworld.training.segmenter import segmenter_objects


def evaluate_segmenter(
    segmenter_dir: str | Path,
    n_scenes: int = 100,
    split: str = "val",
    modes: Sequence[str] = ("both", "box", "points"),
) -> dict[str, float]:
    """Mean mask IoU of the segmenter on held-out ShapeWorld objects given their gt prompts.

    Goes through :class:`segzero.segmenter.Segmenter` (best of 3 candidates by predicted IoU), with
    the gt box and the two inscribed points in the image frame.

    Returns:
        mode -> mean IoU over every shape of ``n_scenes`` scenes of ``split``.
    """
    from PIL import Image

    from segzero.frames import Frame, ObjectPrompt
    from segzero.geometry import mask_iou
    from segzero.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(str(segmenter_dir), device="cpu", dtype="float32")
    objects = segmenter_objects(n_scenes, split=split)
    images: dict[int, Image.Image] = {}
    result = {}
    for mode in modes:
        imgs = [images.setdefault(id(o.image), Image.fromarray(o.image)) for o in objects]
        prompts = [
            [ObjectPrompt.from_lists(o.box, o.points, Frame.image(img.size))] for o, img in zip(objects, imgs)
        ]
        outs = segmenter.segment_many(imgs, prompts, mode=mode)
        result[mode] = float(np.mean([mask_iou(out.mask, o.mask) for out, o in zip(outs, objects)]))
    return result


#: Accuracy rewards summed into the "accuracy reward" of the learning test (the paper's hard ones).
ACCURACY_REWARDS = ("bbox_iou", "bbox_l1", "points_l1")
FORMAT_REWARDS = ("thinking_format", "seg_format_strict")


def evaluate_reasoner(
    reasoner: Any,
    examples: Sequence[ReasonerExample],
    batch_size: int = 32,
    max_new_tokens: int = MAX_COMPLETION_TOKENS,
    *,
    sample: bool = False,
    samples_per_prompt: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """Answers of a :class:`segzero.reasoner.Reasoner` on examples, scored with the Seg-Zero rewards.

    Args:
        sample: draw answers at temperature 1 (what GRPO optimises: the policy's expected reward)
            instead of greedy decoding; ``samples_per_prompt`` answers per example, seeded by ``seed``.

    Returns:
        The mean of each reward in :data:`FORMAT_REWARDS` and :data:`ACCURACY_REWARDS`, ``accuracy``
        (their accuracy sum, in [0, 3]), ``box_iou`` (mean IoU of the predicted box, 0 when unparsed)
        and ``parsed`` (share of answers with a box).
    """
    import torch

    repeated = [ex for ex in examples for _ in range(samples_per_prompt if sample else 1)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        completions = generate_answers(reasoner, repeated, batch_size, max_new_tokens, do_sample=sample)
    return score_completions(completions, repeated)


def generate_answers(
    reasoner: Any,
    items: Sequence[Any],
    batch_size: int = 32,
    max_new_tokens: int = MAX_COMPLETION_TOKENS,
    *,
    do_sample: bool = False,
) -> list[str]:
    """The reasoner's completions for items with ``.image`` and ``.request`` (ShapeWorld samples or
    :class:`ReasonerExample`), ``batch_size`` per ``generate`` call, in order."""
    completions: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        completions += reasoner.generate(
            [item.image for item in chunk],
            [item.request for item in chunk],
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
        )
    return completions


def score_completions(completions: Sequence[str], examples: Sequence[ReasonerExample]) -> dict[str, float]:
    """The metrics of :func:`evaluate_reasoner` for given completions."""
    from segzero.answer import parse_answer
    from segzero.rewards import REWARDS, GroundTruth, bbox_iou_soft

    sums: dict[str, float] = {name: 0.0 for name in (*FORMAT_REWARDS, *ACCURACY_REWARDS)}
    box_iou = parsed = 0.0
    for text, ex in zip(completions, examples):
        gt = GroundTruth.from_columns(ex.boxes, ex.points)
        for name in sums:
            sums[name] += REWARDS[name](text, gt)
        box_iou += bbox_iou_soft(text, gt)
        parsed += any(o.box is not None for o in parse_answer(text).objects)
    n = max(1, len(examples))
    out = {name: v / n for name, v in sums.items()}
    out["accuracy"] = sum(out[name] for name in ACCURACY_REWARDS)
    out["box_iou"] = box_iou / n
    out["parsed"] = parsed / n
    return out


#: One listed shape in a scene-listing thinking: size, colour and kind words, then its box.
_LISTED = re.compile(r"(\w+) (\w+) (\w+) \[(\d+),(\d+),(\d+),(\d+)\]")
#: The words of a shape name, in order (``"small blue ellipse"``).
NAME_PARTS = ("size", "colour", "kind")


def listing_accuracy(completions: Sequence[str], samples: Sequence[Any], frame: int) -> dict[str, float]:
    """How well completions' scene listings (:func:`~segzero.shapeworld.training.examples.scene_thinking`'s
    form) name the shapes they box.

    Each shape listed before :data:`MEANS` is matched to the scene shape whose box (reasoner
    frame) it overlaps most; with box IoU >= 0.5 it counts as matched and its size, colour and kind words
    are compared with that shape's name.

    Returns:
        ``shapes`` (scene shapes in all), ``listed`` (listed shapes parsed), ``matched``, and for each of
        :data:`NAME_PARTS` the share of matched shapes named right (0.0 when none matched).
    """
    from segzero.geometry import box_iou

    if len(completions) != len(samples):
        raise ValueError(f"{len(completions)} completions for {len(samples)} samples")
    counts = dict.fromkeys(("shapes", "listed", "matched", *NAME_PARTS), 0)
    for completion, sample in zip(completions, samples):
        truth = [(shape["name"].split(), frame_box(sample, shape, frame)) for shape in sample.extra["shapes"]]
        counts["shapes"] += len(truth)
        for item in _LISTED.finditer(completion.split(MEANS)[0]):
            counts["listed"] += 1
            words, box = item.groups()[:3], tuple(int(v) for v in item.groups()[3:])
            name, best = max(truth, key=lambda t: box_iou(box, t[1]))
            if box_iou(box, best) < 0.5:
                continue
            counts["matched"] += 1
            for part, said, true in zip(NAME_PARTS, words, name):
                counts[part] += said == true
    matched = counts["matched"]
    return {**counts, **{part: counts[part] / matched if matched else 0.0 for part in NAME_PARTS}}


#: What :func:`choice_outcome` says of a completion's choice of the meant shape.
CHOICE_OUTCOMES = ("right", "wrong", "unlisted", "none")
_CHOSEN = re.compile(MEANS + r" the \w+ \w+ \w+ \[(\d+),(\d+),(\d+),(\d+)\]")


def choice_outcome(completion: str, sample: Any, frame: int) -> str:
    """Which listed shape a completion in scene-listing form chose, judged by box (reasoner frame).

    ``"right"``: the box after :data:`MEANS` has IoU >= 0.5 with a target's; ``"wrong"``: it does not,
    though the listing before it boxes a target so (the choice failed, not the listing); ``"unlisted"``:
    no listed box matches a target (the listing failed); ``"none"``: no choice could be read.
    """
    from segzero.geometry import box_iou

    targets = [frame_box(sample, sample.extra["shapes"][i], frame) for i in sample.extra["targets"]]
    chosen = _CHOSEN.search(completion)
    if chosen is None:
        return "none"

    def hits(box: Sequence[int]) -> bool:
        return any(box_iou(box, target) >= 0.5 for target in targets)

    if hits(tuple(int(v) for v in chosen.groups())):
        return "right"
    listed = _LISTED.finditer(completion[: chosen.start()])
    return "wrong" if any(hits(tuple(int(v) for v in item.groups()[3:])) for item in listed) else "unlisted"


#: Where :func:`answer_image_dependence` reads the reasoner's next-token distribution: before the
#: first digit of the box, the first token of the answer that needs the image.
BOX_PREFIX = '<answer>{"bbox": ['


def answer_image_dependence(
    reasoner: Any, images: Sequence[Any], requests: Sequence[str], prefix: str = BOX_PREFIX
) -> dict[str, float]:
    """How much a reasoner's answer depends on the image, and how much on the request.

    Every request is paired with every image; for each pair the next-token distribution after the
    chat prompt and ``prefix`` (teacher-forced) is read. Distances are total variation (0: the same
    distribution, 1: disjoint).

    Args:
        images: PIL images, any frame (resized to the reasoner's), at least two.
        requests: request texts, at least two.

    Returns:
        ``{"image": mean distance between two images under the same request, "request": mean distance
        between two requests under the same image}``. A reasoner that does not look at the image has
        ``image`` near 0 whatever its ``request``.
    """
    import torch

    from segzero.reasoner import reasoner_image

    if len(images) < 2 or len(requests) < 2:
        raise ValueError("answer_image_dependence needs at least two images and two requests")
    frames = [reasoner_image(img, reasoner.frame) for img in images]
    probs = []  # [request][image] -> (vocab,)
    for request in requests:
        texts = [reasoner.chat_text(request) + prefix] * len(frames)
        inputs = reasoner.processor(text=texts, images=frames, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = reasoner.model(**inputs.to(reasoner.device)).logits[:, -1].float()  # left padded
        probs.append(logits.softmax(-1))
    grid = torch.stack(probs).cpu().numpy()  # (requests, images, vocab)
    return {"image": mean_pairwise_tv(grid), "request": mean_pairwise_tv(grid.transpose(1, 0, 2))}


def mean_pairwise_tv(p: np.ndarray) -> float:
    """Mean total-variation distance between the distributions of a group, over groups.

    Args:
        p: float ``(groups, members, outcomes)``, each ``p[g, m]`` a distribution; at least two members.

    Returns:
        The mean over groups and over ordered pairs of distinct members of ``0.5 * |p[g, a] - p[g, b]|_1``.
    """
    groups, members = p.shape[:2]
    d = 0.5 * np.abs(p[:, :, None] - p[:, None, :]).sum(-1)  # the diagonal is 0
    return float(d.sum() / (groups * members * (members - 1)))
