"""The one way through: image + request -> reasoner -> answer -> frame mapping -> segmenter -> mask.

The CLI, the server, the evaluator and the demo all call :class:`ReasoningSegmenter`; its second
half (completion -> answer -> image-frame prompts -> masks) is :func:`segment_answers`, which the
``mask_iou`` training reward calls too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from segzero.answer import ParsedAnswer, ParseStatus, parse_answer
from segzero.config import PipelineConfig
from segzero.defaults import DEFAULT_REASONER, DEFAULT_SEGMENTER
from segzero.errors import InputError
from segzero.frames import Frame, ObjectPrompt, to_image_frame
from segzero.hub import check_hub_ids
from segzero.images import ImageInput, load_image
from segzero.prompts import normalize_request
from segzero.reasoner import Reasoner
from segzero.segmenter import Segmenter, SegmenterOutput, load_segmenter


@dataclass
class SegmentationResult:
    """What the pipeline says about one request.

    Attributes:
        request: the request as given.
        thinking: the model's reasoning (inside ``<think>``), or None.
        completion: the raw completion text.
        objects: per object, box and points in the ORIGINAL image's pixel frame (each names it).
        answer: the parsed answer, coordinates on the reasoner's answer grid.
        mask: bool ``(height, width)`` of the original image; all False when the answer was unusable.
        score: the segmenter's score (mean over objects), or None when nothing was segmented.
        status / reason: whether and why parsing failed (see :class:`segzero.answer.ParseStatus`).
        timings: seconds per stage for this request; batch stages are shared equally by its requests.
        image_size: ``(width, height)`` of the original image.
        image: the original image as the pipeline read it (RGB, EXIF rotation applied), which
            :meth:`overlay` draws on; None when unknown.
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
    image: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Whether the answer gave something to segment (``ok``, or ``partial``: some objects were kept)."""
        return self.status in (ParseStatus.OK, ParseStatus.PARTIAL)

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

    def caption(self) -> str:
        """The text under the overlay: the request, the reasoning, and why the answer was unusable if it was."""
        lines = [f"Request: {self.request}", f"Thinking: {self.thinking or '(none)'}"]
        if not self.usable:
            lines.append(f"No usable answer ({self.status.value}): {self.reason}")
        return "\n".join(lines)

    def overlay(self, image: Image.Image | None = None) -> Image.Image:
        """The picture of this result (:func:`segzero.drawing.draw_overlay`): the image beside it with the
        mask, boxes and points drawn, a legend, and the request and reasoning underneath.

        Args:
            image: the original image (default: :attr:`image`, the one the pipeline read).

        Raises:
            ValueError: no image given and none kept.
        """
        from segzero.drawing import draw_overlay

        image = image if image is not None else self.image
        if image is None:
            raise ValueError("this result keeps no image; pass the one it was computed on")
        return draw_overlay(image, self.mask, self.objects, self.caption())

    def save(
        self, out_dir: str | os.PathLike[str], name: str = "result", *, extra: dict[str, Any] | None = None,
        write_json: bool = True,
    ) -> dict[str, str]:  # fmt: skip
        """Write ``NAME.mask.png`` (0 / 255, the image's size), ``NAME.overlay.png`` (:meth:`overlay`) and
        ``NAME.json`` (:meth:`to_json` with the mask as COCO RLE, ``extra`` keys first, and ``files``) into
        ``out_dir``, as ``segzero segment`` does.

        Args:
            write_json: False writes the two PNGs only (``segzero batch`` gathers the records in one file).

        Returns:
            ``{"mask.png": path, "overlay.png": path[, "json": path]}``.
        """
        import json
        from pathlib import Path

        from segzero.masks import save_mask_png

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {kind: str(out / f"{name}.{kind}") for kind in ("mask.png", "overlay.png")}
        save_mask_png(self.mask, files["mask.png"])
        self.overlay().save(files["overlay.png"])
        if write_json:
            files["json"] = str(out / f"{name}.json")
            record = {**(extra or {}), **self.to_json(), "files": files}
            Path(files["json"]).write_text(json.dumps(record, indent=2), encoding="utf-8")
        return files


def segment_answers(
    segmenter: Any,
    images: Sequence[Image.Image],
    completions: Sequence[str],
    frame: int | Frame,
    mode: str = "both",
) -> tuple[list[ParsedAnswer], list[list[ObjectPrompt]], list[SegmenterOutput]]:
    """The pipeline's second half: completions -> answers -> image-frame prompts -> one mask per completion.

    Args:
        segmenter: a :class:`~segzero.segmenter.Segmenter` or :class:`~segzero.segmenter.ConceptSegmenter`
            (anything with their ``segment_many``).
        images: the image each completion is about, in its original frame; give the same object for
            completions about the same image, so it is encoded once.
        completions: the reasoner's texts.
        frame: the grid the answers are on (its side, or the :class:`~segzero.frames.Frame`): the
            reasoner's :attr:`~segzero.reasoner.Reasoner.answer_frame`.
        mode: which prompts the segmenter uses (:data:`~segzero.defaults.SEGMENTER_MODES`).

    Returns:
        Per completion: the parsed answer (reasoner frame), its objects in image pixels, and the
        segmenter's output (an empty mask when the answer had no usable object).
    """
    answers = [parse_answer(c, frame) for c in completions]
    objects = [[to_image_frame(o, img.size) for o in a.objects] for a, img in zip(answers, images)]
    # One call for the whole list, so each distinct image is encoded once.
    return answers, objects, segmenter.segment_many(images, objects, mode)


class ReasoningSegmenter:
    """Reasoning segmentation with a reasoner (VLM) and a frozen segmenter (SAM 2 or SAM 3).

    Example::

        seg = ReasoningSegmenter.from_pretrained()  # Seg-Zero-7B + SAM2.1-large
        result = seg.segment("kitchen.jpg", "what can I use to cut the bread?")
        result.mask.shape == (height, width)

    ``config`` (a :class:`~segzero.config.PipelineConfig`) holds every setting; the models it names
    are the ones given here.

    Raises:
        InputError: the segmenter does not serve the config's segmenter mode (``concept`` needs SAM 3's
            text interface, :class:`~segzero.segmenter.ConceptSegmenter`).
    """

    def __init__(self, reasoner: Reasoner, segmenter: Segmenter, config: PipelineConfig | None = None) -> None:
        config = config or PipelineConfig(reasoner=reasoner.name or DEFAULT_REASONER,
                                          segmenter=segmenter.name or DEFAULT_SEGMENTER)  # fmt: skip
        # The loaded reasoner's frame and convention are the pipeline's; the prompt follows the usual rule.
        self.config = dataclasses.replace(
            config.resolved(), frame=reasoner.frame, coordinates=reasoner.coordinates
        )
        modes = getattr(segmenter, "modes", None)
        if modes is not None and self.config.segmenter_mode not in modes:
            raise InputError(
                f"The segmenter {segmenter.name or type(segmenter).__name__} serves the modes {', '.join(modes)}, "
                f"not --segmenter-mode {self.config.segmenter_mode}; the concept mode needs SAM 3's text interface."
            )
        self.reasoner = reasoner
        self.segmenter = segmenter

    @classmethod
    def from_config(cls, config: PipelineConfig) -> ReasoningSegmenter:
        """Load the models ``config`` names and build the pipeline it describes.

        Settings left None take the reasoner's ``segzero.json`` values, else the defaults
        (:meth:`~segzero.config.PipelineConfig.resolved`); that is read before any model loads, so a
        malformed file fails fast.

        Raises:
            ModelLoadError: a model cannot be loaded (a hub id that the hub cannot serve fails at once,
                before either model loads), or its ``segzero.json`` is malformed.
        """
        check_hub_ids(reasoner=config.reasoner, segmenter=config.segmenter)
        config = config.resolved()
        reasoner = Reasoner.from_pretrained(
            config.reasoner, device=config.device, dtype=config.dtype, frame=config.frame,
            coordinates=config.coordinates,
        )  # fmt: skip
        segmenter = load_segmenter(
            config.segmenter, mode=config.segmenter_mode, device=config.device, dtype=config.dtype
        )
        return cls(reasoner, segmenter, config)

    @classmethod
    def from_pretrained(
        cls, reasoner: str = DEFAULT_REASONER, segmenter: str = DEFAULT_SEGMENTER, **settings: Any
    ) -> ReasoningSegmenter:
        """Load both models by hub id or local folder; ``settings`` are :class:`~segzero.config.PipelineConfig`
        fields (``device``, ``dtype``, ``frame``, ``coordinates``, ``prompt``, ``segmenter_mode``,
        ``batch_size``, ``max_new_tokens``, ``max_pixels``).

        A reasoner folder saved by ``segzero train`` (or a ShapeWorld model) carries a ``segzero.json``
        saying the frame, the prompt variant and the coordinate convention it was trained with; they
        are the defaults here, so e.g. a model trained with the ``no_think`` prompt is asked with it.
        Explicit settings win, except a coordinate convention that contradicts the model's own.

        Raises:
            ModelLoadError: a model cannot be loaded, or its ``segzero.json`` is malformed.
            InputError: a setting is not one :class:`~segzero.config.PipelineConfig` accepts.
        """
        known = {f.name for f in dataclasses.fields(PipelineConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InputError(f"Unknown pipeline setting {unknown[0]!r}; the settings are: {', '.join(sorted(known))}.")
        return cls.from_config(PipelineConfig(reasoner=reasoner, segmenter=segmenter, **settings))

    # Read-only views of the settings the pipeline runs with.
    prompt = property(lambda self: self.config.prompt)
    segmenter_mode = property(lambda self: self.config.segmenter_mode)
    batch_size = property(lambda self: self.config.batch_size)
    max_new_tokens = property(lambda self: self.config.max_new_tokens)
    max_pixels = property(lambda self: self.config.max_pixels)

    @property
    def frame(self) -> int:
        """Side in pixels of the square image the reasoner is shown."""
        return self.reasoner.frame

    @property
    def answer_frame(self) -> Frame:
        """The grid the reasoner's answers are on (its pixels, or the 0-1000 grid)."""
        return self.reasoner.answer_frame

    def segment(self, image: ImageInput, request: str, **generate_kwargs: Any) -> SegmentationResult:
        """Segment what ``request`` means in ``image`` (a path, bytes, PIL image or uint8 array)."""
        return self.segment_batch([image], [request], **generate_kwargs)[0]

    def segment_batch(
        self, images: Sequence[ImageInput], requests: Sequence[str], **generate_kwargs: Any
    ) -> list[SegmentationResult]:
        """Segment many requests: one ``generate`` per ``batch_size`` requests, one segmenter encoding per
        distinct image.

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
        answers, objects, masks = segment_answers(
            self.segmenter, loaded, completions, self.answer_frame, self.segmenter_mode
        )
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
                image=img,
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

