"""The segmenter: SAM2 through transformers, frozen, prompted with boxes and positive points.

Two verbs, as in Meta's predictor: :meth:`Segmenter.embed` encodes images once, and
:meth:`Segmenter.predict` turns positional prompts (image frame) into a mask, reusing the
embedding for every object and request on that image. :meth:`Segmenter.segment_many` does both
for a batch, encoding each distinct image once.

``reference=True`` prompts SAM2 as the reference release's evaluation does through Meta's
``SAM2ImagePredictor`` (SPEC section 9.1), where transformers' ``Sam2Processor`` differs:

- the image is scaled to [0, 1] before it is resized to 1024x1024 (Meta's ``ToTensor`` then ``Resize``);
  the processor resizes the 8-bit image and rounds it back to 8 bits first, which moves encoder inputs
  by up to one grey level;
- the prompts are normalised as ``x / W * 1024`` in float32 (the processor computes ``x * (1024 / W)``,
  equal up to float32 rounding) and a point at (-10, -10), which the processor would take for padding,
  stays a point;
- on CUDA the weights stay float32 and run under ``torch.autocast("cuda", dtype=torch.bfloat16)``
  instead of being cast to bfloat16 (on the CPU both run in float32).

What is already the same: the box enters as two corner tokens (labels 2 and 3) beside the two clicks
(label 1) and one padding token, in whatever corner order it has (the order of the tokens does not
change the decoder's result); three candidates, the one with the highest predicted IoU; the low-resolution
logits resized bilinearly to the image and thresholded at 0, with no hole or sprinkle removal.
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
    release's training-data filter does. ``reference`` prompts it as the reference's evaluation does
    (module docstring).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "",
        embed_batch_size: int = 4,
        multimask_output: bool = True,
        reference: bool = False,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.embed_batch_size = embed_batch_size
        self.multimask_output = multimask_output
        self.reference = reference

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
        dtype: str | None = None,
        multimask_output: bool = True,
        reference: bool = False,
    ) -> "Segmenter":
        """Load SAM2 in transformers format by hub id (e.g. ``facebook/sam2.1-hiera-large``) or local folder.

        ``reference``: prompt it as the reference's evaluation does, its weights in float32 whatever
        ``dtype`` says (class docstring).
        """
        from transformers import Sam2Model, Sam2Processor

        device = pick_device(device)
        processor = load_pretrained(Sam2Processor.from_pretrained, name_or_path, "segmenter")
        model = load_pretrained(
            Sam2Model.from_pretrained, name_or_path, "segmenter",
            dtype=pick_dtype(device, "float32" if reference else dtype),
        )  # fmt: skip
        model.to(device).eval()
        return cls(model, processor, name=name_or_path, multimask_output=multimask_output, reference=reference)

    @property
    def device(self) -> Any:
        return self.model.device

    def _precision(self) -> Any:
        """bfloat16 autocast on CUDA under ``reference`` (the reference's ``torch.autocast``); else nothing."""
        import contextlib

        import torch

        if self.reference and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _pixels(self, images: list[Image.Image]) -> Any:
        """The encoder's input: the processor's, or under ``reference`` Meta's order (scale to [0, 1], then resize)."""
        if not self.reference:
            return self.processor(images=images, return_tensors="pt")["pixel_values"]
        scaled = [np.asarray(img, dtype=np.float32) / 255.0 for img in images]
        return self.processor(images=scaled, do_rescale=False, return_tensors="pt")["pixel_values"]

    def embed(self, images: Sequence[Image.Image]) -> list[ImageEmbedding]:
        """Encode RGB images (any sizes) in batches; one :class:`ImageEmbedding` per image."""
        import torch

        out: list[ImageEmbedding] = []
        for start in range(0, len(images), self.embed_batch_size):
            chunk = list(images[start : start + self.embed_batch_size])
            pixels = self._pixels(chunk)
            with torch.inference_mode(), self._precision():
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
        model_inputs = (self._reference_prompts if self.reference else self._processor_prompts)(w, h, boxes, points)
        model_inputs = {k: v.to(self.device) for k, v in model_inputs.items()}
        for key in ("input_points", "input_boxes"):
            if key in model_inputs:
                model_inputs[key] = model_inputs[key].to(self.model.dtype)
        with torch.inference_mode(), self._precision():
            out = self.model(
                image_embeddings=embedding.features, multimask_output=self.multimask_output, **model_inputs
            )
        iou = out.iou_scores[0].float()  # (objects, candidates)
        best = iou.argmax(dim=-1)
        low_res = out.pred_masks[0].float()[torch.arange(len(best)), best]  # (objects, h', w')
        full = self.processor.post_process_masks([low_res[:, None].cpu()], [[h, w]])[0][:, 0]
        return [m.numpy().astype(bool) for m in full], iou.gather(1, best[:, None])[:, 0].tolist()

    def _processor_prompts(
        self, w: int, h: int, boxes: list[list[float]] | None, points: list[list[list[float]]] | None
    ) -> dict[str, Any]:
        """The prompts as transformers' processor normalises them to the 1024 input."""
        kwargs: dict[str, Any] = {}
        if boxes is not None:
            kwargs["input_boxes"] = [boxes]
        if points is not None:
            kwargs["input_points"] = [points]
            kwargs["input_labels"] = _labels(points)
        prompts = self.processor(original_sizes=[[h, w]], return_tensors="pt", **kwargs)
        return {k: prompts[k] for k in ("input_boxes", "input_points", "input_labels") if k in prompts}

    def _reference_prompts(
        self, w: int, h: int, boxes: list[list[float]] | None, points: list[list[list[float]]] | None
    ) -> dict[str, Any]:
        """The prompts normalised as Meta's predictor does: ``x / W * side``, ``y / H * side`` in float32, with
        ``side`` the square the encoder takes (1024 for the released SAM2)."""
        import torch

        side = self.processor.target_size

        def normalised(values: Any, shape: tuple[int, ...]) -> Any:
            xy = torch.as_tensor(values, dtype=torch.float32).reshape(*shape, 2).clone()
            xy[..., 0] = xy[..., 0] / w * side
            xy[..., 1] = xy[..., 1] / h * side
            return xy

        out: dict[str, Any] = {}
        if boxes is not None:
            out["input_boxes"] = normalised(boxes, (1, len(boxes), 2)).reshape(1, len(boxes), 4)
        if points is not None:
            longest = max(len(p) for p in points)
            padded = [list(p) + [[0.0, 0.0]] * (longest - len(p)) for p in points]
            out["input_points"] = normalised(padded, (1, len(points), longest))
            out["input_labels"] = torch.tensor(_labels(points), dtype=torch.int64)
        return out

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


def _labels(points: list[list[list[float]]]) -> list[list[list[int]]]:
    """Label 1 for every click; padding points (objects with fewer clicks) get the processor's pad label."""
    longest = max(len(p) for p in points)
    return [[[1] * len(p) + [-10] * (longest - len(p)) for p in points]]
