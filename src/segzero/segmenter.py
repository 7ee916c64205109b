"""The segmenter: SAM2 through transformers, frozen, prompted with boxes and positive points.

Two verbs, as in Meta's predictor: :meth:`Segmenter.embed` encodes images once, and
:meth:`Segmenter.predict` turns positional prompts (image frame) into a mask, reusing the
embedding for every object and request on that image. :meth:`Segmenter.segment_many` does both
for a batch, encoding each distinct image once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from segzero.defaults import DEFAULT_SEGMENTER, SEGMENTER_MODES
from segzero.frames import Frame, ObjectPrompt
from segzero.hub import load_pretrained, pick_device, pick_dtype

SegmenterMode = Literal["both", "box", "points"]


@dataclass
class ImageEmbedding:
    """SAM2's multi-scale features of one image, reusable across prompts.

    Attributes:
        features: per feature level, a ``(1, C, h, w)`` tensor on the model's device.
        size: the original image size ``(width, height)``.
    """

    features: list[Any]
    size: tuple[int, int]


@dataclass
class SegmenterOutput:
    """The mask for one request.

    Attributes:
        mask: bool ``(height, width)`` of the original image: the union over objects.
        score: mean predicted IoU of the chosen candidates (None when there was nothing to segment).
        object_masks: bool ``(height, width)`` per object, in the order given.
        object_scores: predicted IoU of each object's chosen candidate.
    """

    mask: np.ndarray
    score: float | None
    object_masks: list[np.ndarray] = field(default_factory=list)
    object_scores: list[float] = field(default_factory=list)


def _prompt_parts(obj: ObjectPrompt, mode: str) -> tuple[list[float] | None, list[list[float]]]:
    """The box and points this mode uses for one object (either may be missing from the answer)."""
    box = list(obj.box) if obj.box is not None and mode in ("both", "box") else None
    points = [list(p) for p in obj.points] if mode in ("both", "points") else []
    return box, points


class Segmenter:
    """A frozen SAM2 (``Sam2Model`` + ``Sam2Processor``) with embeddings computed once per image.

    ``multimask_output`` (default True) picks, per object, the candidate with the highest predicted IoU
    among SAM2's three; False asks SAM2 for its single-mask output instead, which it replaces by its best
    candidate only when that output is unstable (``dynamic_multimask_via_stability``), as the reference
    release's training-data filter does.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "",
        embed_batch_size: int = 4,
        multimask_output: bool = True,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.embed_batch_size = embed_batch_size
        self.multimask_output = multimask_output

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
        dtype: str | None = None,
        multimask_output: bool = True,
    ) -> "Segmenter":
        """Load SAM2 in transformers format by hub id (e.g. ``facebook/sam2.1-hiera-large``) or local folder."""
        from transformers import Sam2Model, Sam2Processor

        device = pick_device(device)
        processor = load_pretrained(Sam2Processor.from_pretrained, name_or_path, "segmenter")
        model = load_pretrained(
            Sam2Model.from_pretrained, name_or_path, "segmenter", dtype=pick_dtype(device, dtype)
        )
        model.to(device).eval()
        return cls(model, processor, name=name_or_path, multimask_output=multimask_output)

    @property
    def device(self) -> Any:
        return self.model.device

    def embed(self, images: Sequence[Image.Image]) -> list[ImageEmbedding]:
        """Encode RGB images (any sizes) in batches; one :class:`ImageEmbedding` per image."""
        import torch

        out: list[ImageEmbedding] = []
        for start in range(0, len(images), self.embed_batch_size):
            chunk = list(images[start : start + self.embed_batch_size])
            pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                feats = self.model.get_image_embeddings(pixels.to(self.device, self.model.dtype))
            for i, img in enumerate(chunk):
                out.append(ImageEmbedding([f[i : i + 1] for f in feats], img.size))
        return out

    def predict(
        self, embedding: ImageEmbedding, objects: Sequence[ObjectPrompt], mode: SegmenterMode = "both"
    ) -> SegmenterOutput:
        """Segment each object from its prompts (image frame) and return the union.

        Each object gets its box and all its points as positive clicks (label 1); among SAM2's
        multimask candidates the one with the highest predicted IoU is kept (one output with
        ``multimask_output=False``, see the class docstring). Objects whose answer lacks what ``mode``
        needs (a box in ``"box"`` mode, points in ``"points"`` mode) fall back to whatever prompts they
        do have.

        Raises:
            ValueError: an unknown mode, or an object not in this image's pixel frame (a reasoner-frame
                answer must be mapped first, with :func:`segzero.frames.to_image_frame`).
        """
        if mode not in SEGMENTER_MODES:
            raise ValueError(f"segmenter mode must be one of {SEGMENTER_MODES}, got {mode!r}")
        image_frame = Frame.image(embedding.size)
        for obj in objects:
            if obj.frame != image_frame:
                raise ValueError(
                    f"the segmenter takes prompts in the image's pixels ({image_frame}), got an object in "
                    f"the {obj.frame}; map it with segzero.frames.to_image_frame first"
                )
        w, h = embedding.size
        masks: list[np.ndarray] = [np.zeros((h, w), dtype=bool)] * len(objects)
        scores: list[float] = [0.0] * len(objects)
        # Objects with the same kind of prompt share one decoder call.
        groups: dict[tuple[bool, bool], list[int]] = {}
        parts = []
        for i, obj in enumerate(objects):
            box, points = _prompt_parts(obj, mode)
            if box is None and not points:  # the mode's prompt is missing: use what the answer has
                box, points = _prompt_parts(obj, "both")
            parts.append((box, points))
            if box is not None or points:
                groups.setdefault((box is not None, bool(points)), []).append(i)
        for (has_box, has_points), idx in groups.items():
            boxes = [parts[i][0] for i in idx] if has_box else None
            points = [parts[i][1] for i in idx] if has_points else None
            group_masks, group_scores = self._decode(embedding, boxes, points)
            for j, i in enumerate(idx):
                masks[i], scores[i] = group_masks[j], group_scores[j]
        union = np.logical_or.reduce(masks) if masks else np.zeros((h, w), dtype=bool)
        score = float(np.mean(scores)) if objects else None
        return SegmenterOutput(union, score, masks, scores)

    def _decode(
        self, embedding: ImageEmbedding, boxes: list[list[float]] | None, points: list[list[list[float]]] | None
    ) -> tuple[list[np.ndarray], list[float]]:
        import torch

        w, h = embedding.size
        kwargs: dict[str, Any] = {}
        if boxes is not None:
            kwargs["input_boxes"] = [boxes]
        if points is not None:
            kwargs["input_points"] = [points]
            # Padding points (objects with fewer clicks) get the processor's pad label, not 1.
            longest = max(len(p) for p in points)
            kwargs["input_labels"] = [[[1] * len(p) + [-10] * (longest - len(p)) for p in points]]
        prompts = self.processor(original_sizes=[[h, w]], return_tensors="pt", **kwargs)
        model_inputs = {
            k: prompts[k].to(self.device) for k in ("input_boxes", "input_points", "input_labels") if k in prompts
        }
        if "input_points" in model_inputs:
            model_inputs["input_points"] = model_inputs["input_points"].to(self.model.dtype)
        if "input_boxes" in model_inputs:
            model_inputs["input_boxes"] = model_inputs["input_boxes"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model(
                image_embeddings=embedding.features, multimask_output=self.multimask_output, **model_inputs
            )
        iou = out.iou_scores[0].float()  # (objects, candidates)
        best = iou.argmax(dim=-1)
        low_res = out.pred_masks[0].float()[torch.arange(len(best)), best]  # (objects, h', w')
        full = self.processor.post_process_masks([low_res[:, None].cpu()], [[h, w]])[0][:, 0]
        return [m.numpy().astype(bool) for m in full], iou.gather(1, best[:, None])[:, 0].tolist()

    def segment_many(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[Sequence[ObjectPrompt]],
        mode: SegmenterMode = "both",
    ) -> list[SegmenterOutput]:
        """Masks for many (image, objects) pairs; each distinct image object is encoded exactly once.

        Distinct images are encoded ``embed_batch_size`` at a time and their embeddings dropped once
        every entry on them is decoded, so memory stays bounded however long the list.

        Args:
            images: RGB images; the same object may appear several times (several requests on one image).
            prompts: per entry, the objects' prompts in that image's pixel frame (``Frame.image(size)``).
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompt lists")
        outputs: list[SegmenterOutput | None] = [None] * len(images)
        entries_by_image: dict[int, list[int]] = {}
        for i, (img, objs) in enumerate(zip(images, prompts)):
            if objs:
                entries_by_image.setdefault(id(img), []).append(i)
            else:
                w, h = img.size
                outputs[i] = SegmenterOutput(np.zeros((h, w), dtype=bool), None)
        groups = list(entries_by_image.values())
        for start in range(0, len(groups), self.embed_batch_size):
            chunk = groups[start : start + self.embed_batch_size]
            for entries, embedding in zip(chunk, self.embed([images[g[0]] for g in chunk])):
                for i in entries:
                    outputs[i] = self.predict(embedding, prompts[i], mode)
        return outputs  # type: ignore[return-value]
