"""The segmenter: SAM 2 or SAM 3 through transformers, frozen, prompted with boxes and positive points,
or (SAM 3) with the phrase that names the object.

Two verbs, as in Meta's predictor: :meth:`Segmenter.embed` encodes images once, and
:meth:`Segmenter.predict` turns positional prompts (image frame) into a mask, reusing the
embedding for every object and request on that image. :meth:`Segmenter.segment_many` does both
for a batch, encoding each distinct image once. SAM 3's tracker (``Sam3TrackerModel``) has SAM 2's
interface, so :class:`Segmenter` serves both families' box and point prompts alike.

:class:`ConceptSegmenter` is the ``concept`` mode: SAM 3's text interface (``Sam3Model``) finds the
instances of the phrase the reasoner names, and those inside the object's box (or on its points) make
its mask. :func:`load_segmenter` picks the class a mode needs; both have the same ``segment_many``.

``Segmenter(reference=True)`` prompts SAM2 as the reference release's evaluation does through Meta's
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

from segzero.defaults import CONCEPT_INSIDE_SHARE, CONCEPT_SCORE_THRESHOLD, DEFAULT_SEGMENTER, SEGMENTER_MODES
from segzero.errors import InputError, ModelLoadError
from segzero.families import SegmenterFamily, segmenter_family
from segzero.frames import Frame, ObjectPrompt
from segzero.hub import load_model_type, load_pretrained, pick_device, pick_dtype

SegmenterMode = Literal["both", "box", "points", "concept"]

#: The modes served by box and point prompts (:class:`Segmenter`); ``concept`` is :class:`ConceptSegmenter`'s.
POSITIONAL_MODES = ("both", "box", "points")


def _load(name: str, interface: str, device: str | None, dtype: str | None) -> tuple[Any, Any, str]:
    """Model, processor and device of the segmenter ``name`` through one of its family's interfaces.

    Args:
        interface: ``"positional"`` (boxes and points) or ``"concept"`` (text).

    Raises:
        ModelLoadError: the model cannot be found, is of a family segzero does not run, or its checkpoint
            lacks the interface.
    """
    import transformers

    model_type = load_model_type(name, "segmenter")
    family: SegmenterFamily = segmenter_family(model_type, name)
    if model_type not in getattr(family, interface):
        served = "box and point prompts" if interface == "positional" else "text prompts (--segmenter-mode concept)"
        raise ModelLoadError(
            f"The segmenter {name} is a {family.name} checkpoint of type {model_type!r}, which has no interface "
            f"for {served}; use a {family.name} checkpoint of type {' or '.join(getattr(family, interface))}."
        )
    model_class, processor_class = (getattr(transformers, c) for c in getattr(family, f"{interface}_classes"))
    device = pick_device(device)
    processor = load_pretrained(processor_class.from_pretrained, name, "segmenter")
    model = load_pretrained(model_class.from_pretrained, name, "segmenter", dtype=pick_dtype(device, dtype))
    model.to(device).eval()
    return model, processor, device


def load_segmenter(
    name: str = DEFAULT_SEGMENTER,
    *,
    mode: str = "both",
    device: str | None = None,
    dtype: str | None = None,
    reference: bool = False,
) -> Segmenter | ConceptSegmenter:
    """The segmenter ``mode`` needs: :class:`ConceptSegmenter` for ``concept``, else :class:`Segmenter`
    (prompted as the reference release does when ``reference``; see the module docstring).

    Raises:
        InputError: an unknown mode.
        ModelLoadError: see :func:`_load`.
    """
    if mode not in SEGMENTER_MODES:
        raise InputError(f"--segmenter-mode {mode!r} is not known; choose one of: {', '.join(SEGMENTER_MODES)}.")
    if mode == "concept":
        return ConceptSegmenter.from_pretrained(name, device=device, dtype=dtype)
    return Segmenter.from_pretrained(name, device=device, dtype=dtype, reference=reference)


def _check_frames(objects: Sequence[ObjectPrompt], size: tuple[int, int]) -> None:
    image_frame = Frame.image(size)
    for obj in objects:
        if obj.frame != image_frame:
            raise ValueError(
                f"the segmenter takes prompts in the image's pixels ({image_frame}), got an object in "
                f"the {obj.frame}; map it with segzero.frames.to_image_frame first"
            )


@dataclass
class ImageEmbedding:
    """The segmenter's features of one image, reusable across prompts.

    Attributes:
        features: what the model takes instead of pixels: per feature level a ``(1, C, h, w)`` tensor
            (SAM 2, SAM 3's tracker), or SAM 3's ``vision_embeds`` for one image (concept mode).
        size: the original image size ``(width, height)``.
    """

    features: list[Any]
    size: tuple[int, int]


@dataclass
class SegmenterOutput:
    """The mask for one request.

    Attributes:
        mask: bool ``(height, width)`` of the original image: the union over objects.
        score: mean over objects of their scores (None when there was nothing to segment).
        object_masks: bool ``(height, width)`` per object, in the order given.
        object_scores: per object, the predicted IoU of its chosen candidate (box and point prompts) or
            the best score of the instances kept for it (concept mode; 0 when none was kept).
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


class _FrozenSegmenter:
    """What both segmenters share: a frozen model and processor loaded through one of the family's
    interfaces (:attr:`interface`), and images encoded in batches of ``embed_batch_size``."""

    #: ``"positional"`` (boxes and points) or ``"concept"`` (text): which classes :func:`_load` picks.
    interface = "positional"
    #: The segmenter modes the class serves.
    modes: tuple[str, ...] = ()

    def __init__(self, model: Any, processor: Any, *, name: str = "", embed_batch_size: int = 4) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.embed_batch_size = embed_batch_size

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_SEGMENTER, *, device: str | None = None, dtype: str | None = None,
        **options: Any,
    ):  # fmt: skip
        """Load the model by hub id or local folder in transformers format; ``options`` go to the constructor.

        Raises:
            ModelLoadError: not found, not a SAM 2 or SAM 3 checkpoint, or one without this interface.
        """
        model, processor, _ = _load(name_or_path, cls.interface, device, dtype)
        return cls(model, processor, name=name_or_path, **options)

    @property
    def device(self) -> Any:
        return self.model.device

    def embed(self, images: Sequence[Image.Image]) -> list[ImageEmbedding]:
        """Encode RGB images (any sizes) in batches; one :class:`ImageEmbedding` per image."""
        import torch

        out: list[ImageEmbedding] = []
        for start in range(0, len(images), self.embed_batch_size):
            chunk = list(images[start : start + self.embed_batch_size])
            pixels = self._pixels(chunk)
            with torch.inference_mode(), self._precision():
                features = self._encode(pixels.to(self.device, self.model.dtype))
            out += [ImageEmbedding(f, img.size) for f, img in zip(features, chunk)]
        return out

    def _encode(self, pixels: Any) -> list[Any]:
        """The features of each image of a ``(n, 3, H, W)`` batch."""
        raise NotImplementedError

    def _pixels(self, images: list[Image.Image]) -> Any:
        """The encoder's input batch, as the processor makes it."""
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def _precision(self) -> Any:
        """The context the model runs in (none here; see :class:`Segmenter` under ``reference``)."""
        import contextlib

        return contextlib.nullcontext()


class Segmenter(_FrozenSegmenter):
    """A frozen SAM 2 (``Sam2Model`` + ``Sam2Processor``) or SAM 3 tracker (``Sam3TrackerModel`` +
    ``Sam3TrackerProcessor``, the same interface) with embeddings computed once per image.

    :meth:`from_pretrained` loads SAM 2 (e.g. ``facebook/sam2.1-hiera-large``) or SAM 3's tracker (e.g.
    ``facebook/sam3``). ``multimask_output`` (default True) picks, per object, the candidate with the
    highest predicted IoU among the model's three; False asks for its single-mask output instead, which
    it replaces by its best candidate only when that output is unstable
    (``dynamic_multimask_via_stability``), as the reference release's training-data filter does.
    ``reference`` prompts it as the reference's evaluation does (module docstring).
    """

    modes = POSITIONAL_MODES

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
        super().__init__(model, processor, name=name, embed_batch_size=embed_batch_size)
        self.multimask_output = multimask_output
        self.reference = reference

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_SEGMENTER, *, device: str | None = None, dtype: str | None = None,
        reference: bool = False, **options: Any,
    ) -> Segmenter:  # fmt: skip
        """Load SAM 2 or SAM 3's tracker; ``reference`` keeps the weights in float32 whatever ``dtype`` says
        and prompts them as the reference's evaluation does (module docstring)."""
        return super().from_pretrained(
            name_or_path, device=device, dtype="float32" if reference else dtype, reference=reference, **options
        )

    def _precision(self) -> Any:
        """bfloat16 autocast on CUDA under ``reference`` (the reference's ``torch.autocast``); else nothing."""
        import torch

        if self.reference and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return super()._precision()

    def _pixels(self, images: list[Image.Image]) -> Any:
        """The encoder's input: the processor's, or under ``reference`` Meta's order (scale to [0, 1], then resize)."""
        if not self.reference:
            return super()._pixels(images)
        scaled = [np.asarray(img, dtype=np.float32) / 255.0 for img in images]
        return self.processor(images=scaled, do_rescale=False, return_tensors="pt")["pixel_values"]

    def _encode(self, pixels: Any) -> list[Any]:
        feats = self.model.get_image_embeddings(pixels)
        return [[f[i : i + 1] for f in feats] for i in range(len(pixels))]

    def predict(
        self, embedding: ImageEmbedding, objects: Sequence[ObjectPrompt], mode: SegmenterMode = "both"
    ) -> SegmenterOutput:
        """Segment each object from its prompts (image frame) and return the union.

        Each object gets its box and all its points as positive clicks (label 1); among the
        multimask candidates the one with the highest predicted IoU is kept (one output with
        ``multimask_output=False``, see the class docstring). Objects whose answer lacks what ``mode``
        needs (a box in ``"box"`` mode, points in ``"points"`` mode) fall back to whatever prompts they
        do have.

        Raises:
            ValueError: a mode this class does not serve, or an object not in this image's pixel frame (a
                reasoner-frame answer must be mapped first, with :func:`segzero.frames.to_image_frame`).
        """
        return self.predict_many(embedding, [objects], mode)[0]

    def predict_many(
        self, embedding: ImageEmbedding, requests: Sequence[Sequence[ObjectPrompt]], mode: SegmenterMode = "both"
    ) -> list[SegmenterOutput]:
        """:meth:`predict` for several requests on one image, all their objects decoded together: one decoder
        call per kind of prompt (box and points, box alone, points alone), whatever the number of requests.

        Raises:
            ValueError: as :meth:`predict`.
        """
        if mode not in self.modes:
            raise ValueError(f"box and point prompts serve the segmenter modes {self.modes}, got {mode!r}")
        objects = [obj for objs in requests for obj in objs]
        _check_frames(objects, embedding.size)
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
        outputs, start = [], 0
        for objs in requests:
            own = slice(start, start + len(objs))
            start += len(objs)
            union = np.logical_or.reduce(masks[own]) if objs else np.zeros((h, w), dtype=bool)
            outputs.append(SegmenterOutput(union, float(np.mean(scores[own])) if objs else None, masks[own], scores[own]))
        return outputs

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
        # Upscaled and thresholded where the model is; only the boolean masks travel to the CPU.
        full = self.processor.post_process_masks([low_res[:, None]], [[h, w]])[0][:, 0].bool().cpu().numpy()
        return list(full), iou.gather(1, best[:, None])[:, 0].tolist()

    def _processor_prompts(
        self, w: int, h: int, boxes: list[list[float]] | None, points: list[list[list[float]]] | None
    ) -> dict[str, Any]:
        """The prompts as transformers' processor normalises them to the model's input square."""
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

        Distinct images are encoded ``embed_batch_size`` at a time, the objects of every entry on one
        image are decoded together (:meth:`predict_many`), and the embeddings are dropped once decoded, so
        memory stays bounded however long the list.

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
                for i, out in zip(entries, self.predict_many(embedding, [prompts[i] for i in entries], mode)):
                    outputs[i] = out
        return outputs  # type: ignore[return-value]


class ConceptSegmenter(_FrozenSegmenter):
    """SAM 3's text interface (``Sam3Model`` + ``Sam3Processor``), frozen: the ``concept`` segmenter mode.

    For each object, the phrase the reasoner named (:attr:`ObjectPrompt.label`) is given to SAM 3, which
    returns every instance of it in the image with a score; the instances scoring above
    :attr:`score_threshold` that lie inside the object's box (at least :attr:`inside_share` of the
    instance's pixels) make the object's mask, or, for an answer without a box, those that cover one of
    its points. An object without a phrase is prompted with its box as SAM 3's visual exemplar instead
    (and gets an empty mask without a box either). Each distinct image is encoded once; the prompts of a
    chunk of images go through the detector in one batch. :meth:`from_pretrained` loads SAM 3's detector
    (e.g. ``facebook/sam3``).
    """

    interface = "concept"
    modes = ("concept",)
    #: Instances scoring above this are candidates.
    score_threshold = CONCEPT_SCORE_THRESHOLD
    #: Share of an instance's pixels that must lie inside the object's box.
    inside_share = CONCEPT_INSIDE_SHARE

    def _encode(self, pixels: Any) -> list[Any]:
        vision = self.model.get_vision_features(pixel_values=pixels)
        n = len(pixels)
        return [
            [[f[i : i + 1] for f in vision.fpn_hidden_states],
             [p[i : i + 1] if p.shape[0] == n else p for p in vision.fpn_position_encoding]]
            for i in range(n)
        ]  # fmt: skip

    def _instances(
        self, embeddings: Sequence[ImageEmbedding], texts: Sequence[str], boxes: Sequence[list[float]] | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """SAM 3's instances for each ``(embedding, text[, exemplar box])`` query, in one batch.

        Returns:
            Per query, bool masks ``(n, height, width)`` of the original image and their scores ``(n,)``.
        """
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        sizes = [[e.size[1], e.size[0]] for e in embeddings]
        kwargs: dict[str, Any] = {}
        if boxes is not None:
            kwargs = {"input_boxes": [[b] for b in boxes], "original_sizes": sizes}
        prompts = self.processor(text=list(texts), return_tensors="pt", **kwargs)
        vision = Sam3VisionEncoderOutput(
            fpn_hidden_states=[torch.cat(level) for level in zip(*(e.features[0] for e in embeddings))],
            fpn_position_encoding=[torch.cat(level) for level in zip(*(e.features[1] for e in embeddings))],
        )
        names = ("input_ids", "attention_mask", "input_boxes_labels")
        inputs = {k: prompts[k].to(self.device) for k in names if k in prompts}
        if "input_boxes" in prompts:
            inputs["input_boxes"] = prompts["input_boxes"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            out = self.model(vision_embeds=vision, **inputs)
        found = self.processor.post_process_instance_segmentation(
            out, threshold=self.score_threshold, mask_threshold=0.5, target_sizes=sizes
        )
        return [(r["masks"].bool().cpu().numpy(), r["scores"].float().cpu().numpy()) for r in found]

    def _keep(self, obj: ObjectPrompt, masks: np.ndarray) -> np.ndarray:
        """Which of the instance ``masks`` ``(n, h, w)`` belong to ``obj`` (image frame)."""
        if obj.box is not None:
            x1, y1, x2, y2 = (int(v) for v in obj.box)
            inside = masks[:, y1 : y2 + 1, x1 : x2 + 1].sum(axis=(1, 2))
            return inside >= self.inside_share * np.maximum(masks.sum(axis=(1, 2)), 1)
        if obj.points:
            return np.logical_or.reduce([masks[:, int(y), int(x)] for x, y in obj.points])
        return np.zeros(len(masks), dtype=bool)

    def segment_many(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[Sequence[ObjectPrompt]],
        mode: SegmenterMode = "concept",
    ) -> list[SegmenterOutput]:
        """Masks for many (image, objects) pairs, each distinct image object encoded exactly once.

        Args:
            images: RGB images; the same object may appear several times (several requests on one image).
            prompts: per entry, the objects in that image's pixel frame (``Frame.image(size)``); each
                object's ``label`` is its phrase.
            mode: must be ``"concept"``.

        Raises:
            ValueError: another mode, or an object not in its image's pixel frame.
        """
        if mode not in self.modes:
            raise ValueError(f"SAM 3's text interface serves the segmenter mode 'concept', got {mode!r}")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompt lists")
        entries_by_image: dict[int, list[int]] = {}
        for i, (img, objs) in enumerate(zip(images, prompts)):
            _check_frames(objs, img.size)
            entries_by_image.setdefault(id(img), []).append(i)
        groups = list(entries_by_image.values())
        outputs: list[SegmenterOutput | None] = [None] * len(images)
        for start in range(0, len(groups), self.embed_batch_size):
            chunk = groups[start : start + self.embed_batch_size]
            embeddings = self.embed([images[g[0]] for g in chunk])
            # One query per distinct (image, phrase), or (image, exemplar box) for an object without a phrase.
            by_text: dict[tuple[int, str], int] = {}
            by_box: dict[tuple[int, tuple], int] = {}
            for k, entries in enumerate(chunk):
                for obj in (o for i in entries for o in prompts[i]):
                    if obj.label is not None:
                        by_text.setdefault((k, obj.label), len(by_text))
                    elif obj.box is not None:
                        by_box.setdefault((k, tuple(obj.box)), len(by_box))
            found_text = (
                self._instances([embeddings[k] for k, _ in by_text], [t for _, t in by_text], None) if by_text else []
            )
            found_box = (
                self._instances(
                    [embeddings[k] for k, _ in by_box], ["visual"] * len(by_box), [list(b) for _, b in by_box]
                )
                if by_box
                else []
            )
            for k, entries in enumerate(chunk):
                w, h = embeddings[k].size
                for i in entries:
                    masks, scores = [], []
                    for obj in prompts[i]:
                        if obj.label is not None:
                            inst, inst_scores = found_text[by_text[(k, obj.label)]]
                        elif obj.box is not None:
                            inst, inst_scores = found_box[by_box[(k, tuple(obj.box))]]
                        else:
                            inst, inst_scores = np.zeros((0, h, w), dtype=bool), np.zeros(0)
                        keep = self._keep(obj, inst)
                        masks.append(np.logical_or.reduce(inst[keep]) if keep.any() else np.zeros((h, w), dtype=bool))
                        scores.append(float(inst_scores[keep].max()) if keep.any() else 0.0)
                    union = np.logical_or.reduce(masks) if masks else np.zeros((h, w), dtype=bool)
                    outputs[i] = SegmenterOutput(union, float(np.mean(scores)) if masks else None, masks, scores)
        return outputs  # type: ignore[return-value]


def _labels(points: list[list[list[float]]]) -> list[list[list[int]]]:
    """Label 1 for every click; padding points (objects with fewer clicks) get the processor's pad label."""
    longest = max(len(p) for p in points)
    return [[[1] * len(p) + [-10] * (longest - len(p)) for p in points]]
