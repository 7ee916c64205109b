"""The one way through: image + request -> reasoner -> answer -> frame mapping -> SAM2 -> mask.

The CLI, the server, the evaluator and the demo all call :class:`ReasoningSegmenter`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from segzero.answer import ObjectPrompt, ParsedAnswer, ParseStatus, parse_answer
from segzero.defaults import (
    DEFAULT_REASONER,
    DEFAULT_SEGMENTER,
    MAX_IMAGE_PIXELS,
    MAX_NEW_TOKENS,
    REASONER_FRAME,
)
from segzero.frames import to_image_frame
from segzero.hub import read_model_meta
from segzero.images import ImageInput, load_image
from segzero.prompts import DEFAULT_PROMPT, get_prompt, normalize_request
from segzero.reasoner import Reasoner
from segzero.segmenter import SEGMENTER_MODES, Segmenter, SegmenterMode


@dataclass
class SegmentationResult:
    """What the pipeline says about one request.

    Attributes:
        request: the request as given.
        thinking: the model's reasoning (inside ``<think>``), or None.
        completion: the raw completion text.
        objects: per object, box and points in the ORIGINAL image's pixel frame.
        answer: the parsed answer, coordinates in the reasoner frame.
        mask: bool ``(height, width)`` of the original image; all False when the answer was unusable.
        score: SAM2's predicted IoU (mean over objects), or None when nothing was segmented.
        status / reason: whether and why parsing failed (see :class:`segzero.answer.ParseStatus`).
        timings: seconds per stage for this request; batch stages are shared equally by its requests.
        image_size: ``(width, height)`` of the original image.
    """

    request: str
    thinking: str | None
    completion: str
    objects: list[ObjectPrompt]
    answer: ParsedAnswer
    mask: np.ndarray
    score: float | None
    status: ParseStatus
    reason: str
    image_size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self, *, mask_rle: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; the mask as COCO RLE (``{"size": [h, w], "counts": str}``) unless disabled."""
        from segzero.masks import encode_rle

        out: dict[str, Any] = {
            "request": self.request,
            "thinking": self.thinking,
            "completion": self.completion,
            "status": self.status.value,
            "reason": self.reason,
            "objects": [o.to_json() for o in self.objects],
            "reasoner_objects": [o.to_json() for o in self.answer.objects],
            "score": self.score,
            "image_size": list(self.image_size),
            "mask_area": int(self.mask.sum()),
            "timings": self.timings,
        }
        if mask_rle:
            out["mask_rle"] = encode_rle(self.mask)
        return out


class ReasoningSegmenter:
    """Reasoning segmentation with a reasoner (VLM) and a frozen segmenter (SAM2).

    Example::

        seg = ReasoningSegmenter.from_pretrained()  # Seg-Zero-7B + SAM2.1-large
        result = seg.segment("kitchen.jpg", "what can I use to cut the bread?")
        result.mask.shape == (height, width)
    """

    def __init__(
        self,
        reasoner: Reasoner,
        segmenter: Segmenter,
        *,
        prompt: str = DEFAULT_PROMPT,
        segmenter_mode: SegmenterMode = "both",
        batch_size: int = 8,
        max_new_tokens: int = MAX_NEW_TOKENS,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        get_prompt(prompt)  # fail early on an unknown name
        if segmenter_mode not in SEGMENTER_MODES:
            raise ValueError(f"segmenter mode must be one of {SEGMENTER_MODES}, got {segmenter_mode!r}")
        self.reasoner = reasoner
        self.segmenter = segmenter
        self.prompt = prompt
        self.segmenter_mode = segmenter_mode
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(
        cls,
        reasoner: str = DEFAULT_REASONER,
        segmenter: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
        dtype: str | None = None,
        frame: int | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> "ReasoningSegmenter":
        """Load both models by hub id or local folder.

        A reasoner folder saved by ``segzero train`` (or a ShapeWorld model) carries a ``segzero.json``
        (:func:`segzero.hub.read_model_meta`) saying the frame and the prompt variant it was trained
        with; they are the defaults here, so e.g. a model trained with the ``no_think`` prompt is asked
        with it. Explicit arguments win.

        Args:
            reasoner / segmenter: hub ids or folders.
            device / dtype: chosen automatically (CUDA + bf16 when available) unless given.
            frame: reasoner frame side; default: the saved one, else 840.
            prompt: prompt variant name; default: the saved one, else ``seg_zero``.
            kwargs: other :class:`ReasoningSegmenter` options (segmenter_mode, batch_size, ...).

        Raises:
            ModelLoadError: a model cannot be loaded, or its ``segzero.json`` is malformed.
        """
        meta = read_model_meta(reasoner)
        frame = frame or meta["reasoner_frame"] or REASONER_FRAME
        prompt = prompt or meta["prompt"] or DEFAULT_PROMPT
        get_prompt(prompt)  # an unknown name fails before minutes of model loading
        return cls(
            Reasoner.from_pretrained(reasoner, device=device, dtype=dtype, frame=frame),
            Segmenter.from_pretrained(segmenter, device=device, dtype=dtype),
            prompt=prompt,
            **kwargs,
        )

    @property
    def frame(self) -> int:
        return self.reasoner.frame

    def segment(self, image: ImageInput, request: str, **generate_kwargs: Any) -> SegmentationResult:
        """Segment what ``request`` means in ``image`` (a path, bytes, PIL image or uint8 array)."""
        return self.segment_batch([image], [request], **generate_kwargs)[0]

    def segment_batch(
        self, images: Sequence[ImageInput], requests: Sequence[str], **generate_kwargs: Any
    ) -> list[SegmentationResult]:
        """Segment many requests: one ``generate`` per ``batch_size`` requests, one SAM2 encoding per distinct image.

        The same path (or the same image object) given for several requests is loaded and
        encoded once. Unparseable answers give an empty mask and a status saying why; the
        batch goes on.

        Raises:
            InputError: an image cannot be read or a request is empty (before any model runs).
        """
        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        if not requests:
            return []
        for r in requests:
            normalize_request(r)
        t0 = time.perf_counter()
        loaded = self._load_images(images)
        t1 = time.perf_counter()
        generate_kwargs = {"max_new_tokens": self.max_new_tokens, **generate_kwargs}
        completions: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            completions += self.reasoner.generate(
                loaded[chunk], list(requests[chunk]), prompt=self.prompt, **generate_kwargs
            )
        t2 = time.perf_counter()
        answers = [parse_answer(c, frame=self.frame) for c in completions]
        objects = [[to_image_frame(o, img.size, self.frame) for o in a.objects] for a, img in zip(answers, loaded)]
        # One call for the whole request list, so each distinct image is encoded once.
        masks = self.segmenter.segment_many(loaded, objects, self.segmenter_mode)
        t3 = time.perf_counter()
        n = len(requests)
        timings = {"load": (t1 - t0) / n, "reason": (t2 - t1) / n, "segment": (t3 - t2) / n}
        timings["total"] = sum(timings.values())
        return [
            SegmentationResult(
                request=req,
                thinking=ans.thinking,
                completion=comp,
                objects=objs,
                answer=ans,
                mask=out.mask,
                score=out.score,
                status=ans.status,
                reason=ans.reason,
                image_size=img.size,
                timings=dict(timings),
            )
            for req, comp, ans, objs, out, img in zip(requests, completions, answers, objects, masks, loaded)
        ]

    def _load_images(self, images: Sequence[ImageInput]) -> list[Image.Image]:
        cache: dict[Any, Image.Image] = {}
        loaded = []
        for img in images:
            key = os.fspath(img) if hasattr(img, "__fspath__") else img if isinstance(img, (str, bytes)) else id(img)
            if key not in cache:
                cache[key] = load_image(img, self.max_pixels)
            loaded.append(cache[key])
        return loaded

