"""The one way through: image + request -> reasoner -> answer -> frame mapping -> segmenter -> mask.

The CLI, the server, the evaluator and the demo all call :class:`ReasoningSegmenter`; its second
half (completion -> answer -> image-frame prompts -> masks) is :func:`segment_answers`, which the
``mask_iou`` training reward calls too.

The reasoner runs on an engine (:class:`~segzero.reasoner.ReasonerEngine`, ``PipelineConfig.engine``).
The transformers engine answers a batch with one ``generate`` call, then the segmenter masks the batch.
A streaming engine (vllm, openai) takes every request of a batch at once and schedules them itself; the
segmenter stage runs on a thread of its own, masking each image as soon as all its requests are answered,
while the engine goes on with the others (:meth:`ReasoningSegmenter.submit_batch`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from segzero.answer import NOTHING_MATCHES, PARSERS, ParsedAnswer, ParseStatus
from segzero.config import PipelineConfig
from segzero.defaults import DEFAULT_REASONER, STREAM_WINDOW
from segzero.errors import InputError, ReasonerRequestError
from segzero.frames import Frame, ObjectPrompt, to_image_frame
from segzero.hub import check_hub_ids
from segzero.protocols import REFERENCE, SEGZERO, check_protocol, default_segmenter
from segzero.images import ImageInput, load_image
from segzero.prompts import normalize_request
from segzero.reasoner import OnText, ReasonerEngine, load_reasoner
from segzero.runaway import runaway_reason
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
        mask: bool ``(height, width)`` of the original image; all False when the answer was unusable or
            says that nothing matches.
        score: the segmenter's score (mean over objects), or None when nothing was segmented.
        status / reason: whether and why parsing failed (see :class:`segzero.answer.ParseStatus`);
            ``no_target`` (an empty list, "nothing in the image matches") is an answer, not a failure.
        timings: seconds per stage for this request: ``load``, ``reason``, ``segment`` and their ``total``. A
            stage run for a whole batch is shared equally by its requests, except ``reason`` on a streaming
            engine, which is the request's own wait for its completion (requests overlap there).
        image_size: ``(width, height)`` of the original image.
        error: why the reasoner engine failed on this request after its retries (the mask is then empty and
            ``status`` is ``no_answer``), else None.
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
    error: str | None = None
    image: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Whether the model gave an answer: objects to segment (``ok``, or ``partial``: some were kept), or
        ``no_target`` (nothing matches); every other status is a failure (:attr:`ParseStatus.usable`)."""
        return self.status.usable

    @property
    def no_target(self) -> bool:
        """True when the model answered that nothing in the image matches the request (empty mask)."""
        return self.status is ParseStatus.NO_TARGET

    def to_json(self, *, mask_rle: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; the mask as COCO RLE (``{"size": [h, w], "counts": str}``) unless disabled.

        ``no_target`` is true when the model answered that nothing matches (status ``no_target``).
        """
        from segzero.masks import encode_rle

        out: dict[str, Any] = {
            "request": self.request,
            "thinking": self.thinking,
            "completion": self.completion,
            "status": self.status.value,
            "reason": self.reason,
            "no_target": self.no_target,
            "objects": [o.to_json() for o in self.objects],
            "reasoner_objects": [o.to_json() for o in self.answer.objects],
            "score": self.score,
            "image_size": list(self.image_size),
            "mask_area": int(self.mask.sum()),
            "timings": self.timings,
            "error": self.error,
        }
        if mask_rle:
            out["mask_rle"] = encode_rle(self.mask)
        return out

    def caption(self) -> str:
        """The text under the overlay: the request, the reasoning, and why the answer was unusable if it was."""
        lines = [f"Request: {self.request}", f"Thinking: {self.thinking or '(none)'}"]
        if self.no_target:
            lines.append(NOTHING_MATCHES)
        elif not self.usable:
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
    mode: str,
    protocol: str,
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
        protocol: whose rules read and map the answers (:data:`segzero.answer.PARSERS`, the rounding of
            :func:`segzero.frames.map_object`). Under ``reference`` an answer whose coordinates cannot be
            mapped to whole pixels fails, as it does there.

    Returns:
        Per completion: the parsed answer (reasoner frame), its objects in image pixels, and the
        segmenter's output (an empty mask of the image's size, score None, when the answer had no usable
        object or says that nothing matches: those never reach the segmenter).
    """
    parse = PARSERS[check_protocol(protocol)]
    answers = [_runaway(parse(c, frame), c) for c in completions]
    objects: list[list[ObjectPrompt]] = []
    for n, (answer, img) in enumerate(zip(answers, images)):
        try:
            objects.append([to_image_frame(o, img.size, rounding=protocol) for o in answer.objects])
        except ValueError as exc:  # reference rounding only: a coordinate too large for a pixel
            answers[n] = dataclasses.replace(
                answer, objects=(), status=ParseStatus.INVALID_VALUES, reason=str(exc)
            )
            objects.append([])
    todo = [i for i, objs in enumerate(objects) if objs]
    outputs = [SegmenterOutput(np.zeros((img.size[1], img.size[0]), dtype=bool), None) for img in images]
    if todo:  # one call for the whole list, so each distinct image is encoded once
        masked = segmenter.segment_many([images[i] for i in todo], [objects[i] for i in todo], mode)
        for i, out in zip(todo, masked, strict=True):
            outputs[i] = out
    return answers, objects, outputs


class ReasoningSegmenter:
    """Reasoning segmentation with a reasoner (VLM) and a frozen segmenter (SAM 2 or SAM 3).

    Example::

        seg = ReasoningSegmenter.from_pretrained()  # Seg-Zero-7B + SAM2.1-large
        result = seg.segment("kitchen.jpg", "what can I use to cut the bread?")
        result.mask.shape == (height, width)

    ``config`` (a :class:`~segzero.config.PipelineConfig`) holds every setting; the models it names
    are the ones given here. ``reasoner`` is any :class:`~segzero.reasoner.ReasonerEngine`.

    Raises:
        InputError: the segmenter does not serve the config's segmenter mode (``concept`` needs SAM 3's
            text interface, :class:`~segzero.segmenter.ConceptSegmenter`).
    """

    def __init__(self, reasoner: ReasonerEngine, segmenter: Segmenter, config: PipelineConfig | None = None) -> None:
        config = config or PipelineConfig(reasoner=reasoner.name or DEFAULT_REASONER,
                                          segmenter=segmenter.name or None)  # fmt: skip
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
        self._stage: _SegmenterStage | None = None
        self._stage_lock = threading.Lock()

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
        # The openai engine's reasoner is a name the server serves, not something loaded here.
        hub_models = {} if config.engine == "openai" else {"reasoner": config.reasoner}
        check_hub_ids(**hub_models, segmenter=config.segmenter or default_segmenter(config.protocol))
        config = config.resolved()
        reasoner = load_reasoner(config)  # first: a missing vLLM or an unreachable server fails fast
        try:
            segmenter = load_segmenter(
                config.segmenter, mode=config.segmenter_mode, device=config.device, dtype=config.dtype,
                reference=config.protocol == REFERENCE,
            )
        except BaseException:
            reasoner.close()
            raise
        return cls(reasoner, segmenter, config)

    @classmethod
    def from_pretrained(
        cls, reasoner: str = DEFAULT_REASONER, segmenter: str | None = None, **settings: Any
    ) -> ReasoningSegmenter:
        """Load both models by hub id or local folder; ``settings`` are :class:`~segzero.config.PipelineConfig`
        fields (``protocol``, ``device``, ``dtype``, ``frame``, ``coordinates``, ``prompt``, ``segmenter_mode``,
        ``batch_size``, ``max_new_tokens``, ``max_pixels``, and the engine's: ``engine``, ``reasoner_url``,
        ``api_key``, ``max_in_flight``, ``tensor_parallel_size``, ``vllm_args``). ``segmenter`` None is the
        protocol's default (:func:`segzero.protocols.default_segmenter`).

        A reasoner folder saved by ``segzero train`` (or a ShapeWorld model) carries a ``segzero.json``
        saying the frame, the prompt variant and the coordinate convention it was trained with; they
        are the defaults here, so e.g. a model trained with the ``no_think`` prompt is asked with it.
        Explicit settings win, except a coordinate convention that contradicts the model's own.

        Raises:
            ModelLoadError: a model cannot be loaded, or its ``segzero.json`` is malformed.
            EngineError: the engine cannot run (vLLM missing; the server unreachable, serving another model,
                refusing images).
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
    protocol = property(lambda self: self.config.protocol)

    @property
    def frame(self) -> int:
        """Side in pixels of the square image the reasoner is shown."""
        return self.reasoner.frame

    @property
    def answer_frame(self) -> Frame:
        """The grid the reasoner's answers are on (its pixels, or the 0-1000 grid)."""
        return self.reasoner.answer_frame

    @property
    def streams(self) -> bool:
        """True when the engine takes requests as they come (vllm, openai): :meth:`submit_batch` then returns at
        once and each result completes on its own."""
        return self.reasoner.streams

    def segment(self, image: ImageInput, request: str, **generate_kwargs: Any) -> SegmentationResult:
        """Segment what ``request`` means in ``image`` (a path, bytes, PIL image or uint8 array)."""
        return self.segment_batch([image], [request], **generate_kwargs)[0]

    def segment_batch(
        self,
        images: Sequence[ImageInput],
        requests: Sequence[str],
        *,
        on_text: OnText | None = None,
        **generate_kwargs: Any,
    ) -> list[SegmentationResult]:
        """Segment many requests: the transformers engine runs one ``generate`` per ``batch_size`` requests, a
        streaming engine gets them all at once; the segmenter encodes each distinct image once.

        The same path (or the same image object) given for several requests is loaded and
        encoded once. Unparseable answers give an empty mask and a status saying why, and a request the
        engine failed on after its retries gives a result with ``error`` set; the batch goes on.

        Args:
            on_text: called with each new piece of a request's completion as it is produced
                (:data:`~segzero.reasoner.OnText`; the index is the request's place in ``requests``).
            generate_kwargs: ``max_new_tokens`` (default: the config's), ``min_new_tokens``, and for the
                transformers engine any other ``generate`` argument.

        Raises:
            InputError: an image cannot be read or a request is empty (before any model runs).
        """
        if self.streams:
            return [f.result() for f in self.submit_batch(images, requests, on_text=on_text, **generate_kwargs)]
        loaded, load_s = self._check_and_load(images, requests)
        if not requests:
            return []
        t1 = time.perf_counter()
        generate_kwargs = {**self._generation(), **generate_kwargs}
        completions: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            chunk_text = None if on_text is None else _offset(on_text, start)
            completions += self.reasoner.generate(
                loaded[chunk], list(requests[chunk]), prompt=self.prompt, on_text=chunk_text, **generate_kwargs
            )
        t2 = time.perf_counter()
        answers, objects, masks = segment_answers(
            self.segmenter, loaded, completions, self.answer_frame, self.segmenter_mode, self.protocol
        )
        n = len(requests)
        timings = {"load": load_s / n, "reason": (t2 - t1) / n, "segment": (time.perf_counter() - t2) / n}
        return [
            _result(req, comp, ans, objs, out, img, timings)
            for req, comp, ans, objs, out, img in zip(requests, completions, answers, objects, masks, loaded)
        ]

    def submit_batch(
        self,
        images: Sequence[ImageInput],
        requests: Sequence[str],
        *,
        on_text: OnText | None = None,
        **generate_kwargs: Any,
    ) -> list[Future[SegmentationResult]]:
        """Hand requests over and return at once: one future per request, in order.

        With a streaming engine every request goes to the engine now; the segmenter stage masks each image
        as soon as all its requests here are answered, so a result never waits for another image's. With the
        transformers engine this is :meth:`segment_batch`, and the futures are done on return.

        Raises:
            InputError: an image cannot be read or a request is empty (nothing is handed over then).
        """
        if not self.streams:
            futures: list[Future[SegmentationResult]] = []
            for result in self.segment_batch(images, requests, on_text=on_text, **generate_kwargs):
                futures.append(Future())
                futures[-1].set_result(result)
            return futures
        loaded, load_s = self._check_and_load(images, requests)
        generate_kwargs = {**self._generation(), **generate_kwargs}
        load_s /= max(len(requests), 1)
        by_image: dict[int, list[int]] = {}
        for i, img in enumerate(loaded):
            by_image.setdefault(id(img), []).append(i)
        futures = [Future() for _ in requests]
        stage = self._segmenter_stage()
        for indices in by_image.values():
            job = _Job(loaded[indices[0]], [requests[i] for i in indices], [futures[i] for i in indices], load_s)
            for k, i in enumerate(indices):
                sent = self.reasoner.submit(
                    job.image, requests[i], prompt=self.prompt,
                    on_text=None if on_text is None else functools.partial(on_text, i), **generate_kwargs,
                )  # fmt: skip
                sent.add_done_callback(functools.partial(stage.answered, job, k))
        return futures

    def submit(self, image: ImageInput, request: str, **kwargs: Any) -> Future[SegmentationResult]:
        """One request through :meth:`submit_batch`: its future (done on return with the transformers engine)."""
        return self.submit_batch([image], [request], **kwargs)[0]

    def segment_chunks(
        self, chunks: Iterable[tuple[Sequence[ImageInput], Sequence[str]]], **generate_kwargs: Any
    ) -> Iterator[list[SegmentationResult] | Exception]:
        """Each chunk's results, in order, for long runs (``segzero batch``, evaluation).

        A streaming engine is handed the chunks ahead, up to :data:`~segzero.defaults.STREAM_WINDOW`
        requests beyond the chunk being collected, so it always has many requests to schedule and never
        waits for a chunk's slowest one. A chunk that raises (e.g. an unreadable image) yields its exception
        instead of results, and the chunks after it go on.
        """
        ahead: deque[tuple[int, list[Future[SegmentationResult]] | Exception]] = deque()
        held = 0

        def collect(item: list[Future[SegmentationResult]] | Exception) -> list[SegmentationResult] | Exception:
            if isinstance(item, Exception):
                return item
            try:
                return [f.result() for f in item]
            except Exception as exc:  # noqa: BLE001 - handed to the caller with the chunk it belongs to
                return exc

        for images, requests in chunks:
            try:
                ahead.append((len(requests), self.submit_batch(images, requests, **generate_kwargs)))
            except Exception as exc:  # noqa: BLE001 - see above
                ahead.append((0, exc))
            held += ahead[-1][0]
            while ahead and (not self.streams or held - ahead[0][0] >= STREAM_WINDOW):
                size, item = ahead.popleft()
                held -= size
                yield collect(item)
        while ahead:
            yield collect(ahead.popleft()[1])

    def close(self) -> None:
        """Stop the segmenter stage's thread and let go of the engine (its threads, connections, GPUs)."""
        with self._stage_lock:
            if self._stage is not None:
                self._stage.stop()
                self._stage = None
        self.reasoner.close()

    def _generation(self) -> dict[str, Any]:
        """The config's generation settings, as the engine takes them (``stop_runaway`` only when on, so an
        engine written before it still serves a pipeline that leaves it off)."""
        stop = {"stop_runaway": True} if self.config.stop_runaway else {}
        return {"max_new_tokens": self.max_new_tokens, **stop}

    def _segmenter_stage(self) -> _SegmenterStage:
        with self._stage_lock:
            if self._stage is None:
                self._stage = _SegmenterStage(self)
            return self._stage

    def _check_and_load(
        self, images: Sequence[ImageInput], requests: Sequence[str]
    ) -> tuple[list[Image.Image], float]:
        """Refuse empty requests, load the images (each distinct one once); the seconds it took."""
        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        for r in requests:
            normalize_request(r)
        t0 = time.perf_counter()
        return self._load_images(images), time.perf_counter() - t0

    def _load_images(self, images: Sequence[ImageInput]) -> list[Image.Image]:
        cache: dict[Any, Image.Image] = {}
        loaded = []
        for img in images:
            key = os.fspath(img) if hasattr(img, "__fspath__") else img if isinstance(img, (str, bytes)) else id(img)
            if key not in cache:
                cache[key] = load_image(img, self.max_pixels)
            loaded.append(cache[key])
        return loaded



def _runaway(answer: ParsedAnswer, completion: str) -> ParsedAnswer:
    """``answer`` with the status ``runaway`` when it gave nothing to segment and ``completion`` ends in a
    runaway (:func:`segzero.runaway.runaway_reason`): that, not the format, is why there is no answer."""
    if answer.status.usable or answer.status is ParseStatus.NO_THINKING:
        return answer
    why = runaway_reason(completion)
    if why is None:
        return answer
    return dataclasses.replace(answer, status=ParseStatus.RUNAWAY, reason=f"the completion ran away: {why}")


def _offset(on_text: OnText, start: int) -> OnText:
    return lambda index, text: on_text(start + index, text)


def _result(
    request: str,
    completion: str,
    answer: ParsedAnswer,
    objects: list[ObjectPrompt],
    out: SegmenterOutput,
    image: Image.Image,
    timings: dict[str, float],
) -> SegmentationResult:
    return SegmentationResult(
        request=request,
        thinking=answer.thinking,
        completion=completion,
        objects=objects,
        answer=answer,
        mask=out.mask,
        score=out.score,
        status=answer.status,
        reason=answer.reason,
        image_size=image.size,
        timings={**timings, "total": sum(timings.values())},
        image=image,
    )


def _failed_result(request: str, error: str, image: Image.Image, timings: dict[str, float]) -> SegmentationResult:
    """The result of a request the engine gave up on: no answer, an empty mask, ``error`` set."""
    answer = ParsedAnswer(None, (), ParseStatus.NO_ANSWER, error)
    w, h = image.size
    result = _result(request, "", answer, [], SegmenterOutput(np.zeros((h, w), dtype=bool), None), image, timings)
    result.error = error
    return result


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Give ``future`` its result or error, unless its caller cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


@dataclass
class _Job:
    """The requests of one batch on one image, handed to a streaming engine; masked together once all are answered."""

    image: Image.Image
    requests: list[str]
    futures: list[Future[SegmentationResult]]
    load_s: float
    started: float = field(default_factory=time.perf_counter)
    completions: list[str | BaseException | None] = field(init=False)
    reason_s: list[float] = field(init=False)
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.completions = [None] * len(self.requests)
        self.reason_s = [0.0] * len(self.requests)
        self.left = len(self.requests)


class _SegmenterStage:
    """A thread that masks the jobs whose requests are all answered: every job ready when it looks, in one
    :func:`segment_answers` call, while the engine goes on with the others."""

    def __init__(self, pipe: ReasoningSegmenter) -> None:
        self.pipe = pipe
        self.ready: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="segzero-segmenter", daemon=True)
        self.thread.start()

    def answered(self, job: _Job, k: int, done: Future[str]) -> None:
        """The engine's future for request ``k`` of ``job`` is done (called on the engine's thread)."""
        try:
            job.completions[k] = done.result()
        except BaseException as exc:  # noqa: BLE001 - kept with the request; the stage decides what it means
            job.completions[k] = exc
        job.reason_s[k] = time.perf_counter() - job.started
        with self.lock:
            job.left -= 1
            if job.left:
                return
        self.ready.put(job)

    def stop(self) -> None:
        self.ready.put(None)

    def _run(self) -> None:
        while True:
            jobs = [self.ready.get()]
            while True:
                try:
                    jobs.append(self.ready.get_nowait())
                except queue.Empty:
                    break
            live = [job for job in jobs if job is not None]
            try:
                self._segment(live)
            except BaseException as exc:  # noqa: BLE001 - the requests fail with the segmenter's error, none hangs
                for job in live:
                    for future in job.futures:
                        _settle(future, error=exc)
            if None in jobs:
                return

    def _segment(self, jobs: list[_Job]) -> None:
        pipe = self.pipe
        entries = [(job, k) for job in jobs for k in range(len(job.requests))]
        for job, k in entries:  # an engine failure other than a request's own is the whole request's error
            completion = job.completions[k]
            if isinstance(completion, BaseException) and not isinstance(completion, ReasonerRequestError):
                _settle(job.futures[k], error=completion)
        answered = [(job, k) for job, k in entries if isinstance(job.completions[k], str)]
        t0 = time.perf_counter()
        answers, objects, masks = segment_answers(
            pipe.segmenter, [job.image for job, _ in answered], [job.completions[k] for job, k in answered],
            pipe.answer_frame, pipe.segmenter_mode, pipe.protocol,
        )  # fmt: skip
        segment_s = (time.perf_counter() - t0) / max(len(answered), 1)
        for (job, k), answer, objs, out in zip(answered, answers, objects, masks):
            timings = {"load": job.load_s, "reason": job.reason_s[k], "segment": segment_s}
            _settle(job.futures[k], _result(job.requests[k], job.completions[k], answer, objs, out, job.image, timings))
        for job, k in entries:
            if isinstance(job.completions[k], ReasonerRequestError):
                timings = {"load": job.load_s, "reason": job.reason_s[k], "segment": 0.0}
                _settle(job.futures[k], _failed_result(job.requests[k], str(job.completions[k]), job.image, timings))
