"""The reasoner: a vision-language chat model that thinks and answers with a box and points.

It is shown the image resized to ``frame x frame`` (bilinear, aspect ratio not kept: the *view*) and
answers on its family's grid (:func:`segzero.frames.answer_grid`): the view's pixels for Qwen2.5-VL,
a 0-1000 grid over the image for Qwen3-VL. The families segzero runs are in
:mod:`segzero.families`; the released Seg-Zero checkpoints are Qwen2.5-VL.

Where the model runs is its *engine* (:class:`ReasonerEngine`, chosen by ``--engine``): :class:`Reasoner`
here runs transformers' ``generate`` in this process; :mod:`segzero.engines.vllm` runs vLLM in this
process and :mod:`segzero.engines.openai` asks an OpenAI-compatible server. Every engine builds the
same conversation (:func:`build_messages`) and the same view (:func:`reasoner_image`), so the same
model gives the same greedy completions through each. :func:`load_reasoner` builds the engine a
:class:`~segzero.config.PipelineConfig` names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from PIL import Image

from segzero.defaults import (
    DEFAULT_PROMPT,
    MAX_NEW_TOKENS,
    REASONER_FRAME,
    RUNAWAY_CHECK_EVERY,
    RUNAWAY_MAX_PERIOD,
    RUNAWAY_MIN_CHARS,
    RUNAWAY_MIN_REPEATS,
)
from segzero.families import reasoner_family
from segzero.frames import Frame, answer_grid
from segzero.hub import load_model_type, load_pretrained, pick_attention, pick_device, pick_dtype
from segzero.prompts import PromptVariant, get_prompt

if TYPE_CHECKING:
    from segzero.config import PipelineConfig

#: ``on_text(index, text)``: the next piece of the completion of request ``index`` (its place in the call),
#: handed over as the engine produces it; the pieces of a request join into its completion.
OnText = Callable[[int, str], None]


def reasoner_image(image: Image.Image, frame: int = REASONER_FRAME) -> Image.Image:
    """The image as the reasoner sees it: RGB resized to ``frame x frame`` with bilinear filtering."""
    return image.convert("RGB").resize((frame, frame), Image.BILINEAR)


def build_messages(
    request: str, prompt: str | PromptVariant = DEFAULT_PROMPT, coordinates: str = "pixels"
) -> list[dict[str, Any]]:
    """One user turn, image first then the prompt text (worded for the ``coordinates`` convention), as the
    released checkpoints were trained."""
    variant = get_prompt(prompt) if isinstance(prompt, str) else prompt
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": variant.render(request, coordinates)}],
        }
    ]


def chat_text(
    processor: Any, request: str, prompt: str | PromptVariant = DEFAULT_PROMPT, coordinates: str = "pixels"
) -> str:
    """The full chat-templated prompt string for one request (:func:`build_messages` through the model's chat
    template), generation prompt included."""
    return processor.apply_chat_template(
        build_messages(request, prompt, coordinates), tokenize=False, add_generation_prompt=True
    )


def reasoner_coordinates(name: str, coordinates: str | None = None, **kwargs: Any) -> str:
    """The coordinate convention to run a reasoner with, read from its config (no weights loaded).

    Args:
        name: hub id or folder.
        coordinates: an explicit convention, or None for the model's own
            (:func:`segzero.config.model_settings`: its ``segzero.json``, else its family's).
        kwargs: passed to ``AutoConfig.from_pretrained`` (``revision``, ``trust_remote_code``).

    Raises:
        ModelLoadError: the model cannot be found, or is of a family segzero does not run.
        InputError: ``coordinates`` contradicts the model's own.
    """
    from segzero.config import model_settings

    model_type = load_model_type(name, "reasoner", **kwargs)
    reasoner_family(model_type, name)  # an unsupported family is refused here
    return model_settings(name, {"coordinates": coordinates}, model_type=model_type)["coordinates"]


class ReasonerEngine:
    """What the pipeline asks of a reasoner, whichever engine runs it.

    :meth:`generate` takes images (any size) and requests and returns the completions (the text after the
    generation prompt, special tokens removed), greedy. An engine that takes requests one at a time as they
    come (:attr:`streams`: vllm, openai) also has :meth:`submit`, which returns at once; the engine then
    schedules every request it holds by itself, and each completes without waiting for the others.

    Attributes:
        engine: the engine's name (:data:`segzero.defaults.ENGINES`).
        streams: True when :meth:`submit` is served.
        frame: side in pixels of the square view the model is shown.
        coordinates: its coordinate convention, ``"pixels"`` or ``"relative"``; with ``frame`` it gives
            :attr:`answer_frame`, the grid its answers are on.
        name: the model's hub id or folder (the name a server serves it under, for openai).
    """

    engine = ""
    streams = False

    def __init__(self, *, frame: int = REASONER_FRAME, coordinates: str = "pixels", name: str = "") -> None:
        self.frame = frame
        self.coordinates = coordinates
        self.name = name

    @property
    def answer_frame(self) -> Frame:
        """The grid the model's answers are on (:func:`segzero.frames.answer_grid`)."""
        return answer_grid(self.frame, self.coordinates)

    def generate(
        self,
        images: Sequence[Image.Image],
        requests: Sequence[str],
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_text: OnText | None = None,
        stop_runaway: bool = False,
        **generate_kwargs: Any,
    ) -> list[str]:
        """The completions of all requests, in order; a streaming engine gets them all at once.

        Args:
            images: one RGB image per request, any size (resized to the reasoner frame by the engine).
            requests: the user requests, same length as ``images``.
            on_text: called with each new piece of text as it is produced (:data:`OnText`).
            stop_runaway: end a request's generation as soon as its text runs away
                (:func:`segzero.runaway.runaway_reason`); its completion is the text up to there.
            generate_kwargs: ``min_new_tokens``, and for transformers any ``model.generate`` argument.

        Raises:
            ReasonerRequestError: a request failed after the engine's retries (the first such, in order).
        """
        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        futures = [
            self.submit(
                image, request, prompt=prompt, max_new_tokens=max_new_tokens,
                on_text=None if on_text is None else _for_index(on_text, i), stop_runaway=stop_runaway,
                **generate_kwargs,
            )  # fmt: skip
            for i, (image, request) in enumerate(zip(images, requests))
        ]
        return [f.result() for f in futures]

    def submit(
        self,
        image: Image.Image,
        request: str,
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_text: Callable[[str], None] | None = None,
        stop_runaway: bool = False,
        **generate_kwargs: Any,
    ) -> Future[str]:
        """Hand one request to a streaming engine; the future gives its completion.

        ``on_text(text)`` gets each new piece of it as it is produced, on the engine's thread (keep it short).
        ``stop_runaway`` ends it as soon as its text runs away (:func:`segzero.runaway.runaway_reason`).
        The future fails with :class:`~segzero.errors.ReasonerRequestError` when the engine gave up on the
        request after its retries.
        """
        raise NotImplementedError(f"the {self.engine} engine answers whole batches; use generate")

    def close(self) -> None:
        """Let go of the engine's threads, connections and devices (a no-op where there are none)."""


def _for_index(on_text: OnText, index: int) -> Callable[[str], None]:
    return lambda text: on_text(index, text)


def min_new_tokens_of(engine: str, generate_kwargs: dict[str, Any]) -> int | None:
    """``min_new_tokens``, the one generation setting a streaming engine takes beside ``max_new_tokens``.

    Raises:
        InputError: any other setting.
    """
    from segzero.errors import InputError

    other = sorted(set(generate_kwargs) - {"min_new_tokens"})
    if other:
        raise InputError(f"The {engine} engine does not take the generation setting(s) {', '.join(other)}.")
    return generate_kwargs.get("min_new_tokens")


def load_reasoner(config: PipelineConfig) -> ReasonerEngine:
    """The reasoner engine ``config.engine`` names, loaded as ``config`` says (a resolved config: the frame and
    the coordinate convention filled in, :meth:`~segzero.config.PipelineConfig.resolved`).

    Raises:
        EngineError: the engine cannot run (vLLM not installed, the server unreachable or unfit).
        ModelLoadError: the model cannot be loaded, or is of a family segzero does not run.
        InputError: ``coordinates`` contradicts the model's own.
    """
    if config.engine == "vllm":
        from segzero.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(config)
    if config.engine == "openai":
        from segzero.engines.openai import OpenAIEngine

        return OpenAIEngine.from_config(config)
    return Reasoner.from_pretrained(
        config.reasoner, device=config.device, dtype=config.dtype, frame=config.frame, coordinates=config.coordinates
    )


class _TextStreamer:
    """A ``generate`` streamer that hands each row's new text to ``on_text(row, text)`` as tokens come.

    Each row is decoded whole at every token (special tokens removed), so pieces never split a character.
    """

    def __init__(self, tokenizer: Any, on_text: OnText) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.ids: list[list[int]] | None = None
        self.sent: list[int] = []

    def put(self, value: Any) -> None:
        if self.ids is None:  # the first call is the prompt
            self.ids = [[] for _ in range(value.shape[0])]
            self.sent = [0] * value.shape[0]
            return
        for row, token in enumerate(value.reshape(len(self.ids), -1).tolist()):
            self.ids[row] += token
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            if len(text) > self.sent[row] and not text.endswith("\ufffd"):
                self.on_text(row, text[self.sent[row] :])
                self.sent[row] = len(text)

    def end(self) -> None:
        pass


class _RunawayStop:
    """A ``generate`` stopping criterion that ends each row whose new text runs away
    (:func:`segzero.runaway.runaway_reason`), looking every ``every`` tokens at the row's last ``window``."""

    def __init__(self, tokenizer: Any, prompt_length: int, every: int = RUNAWAY_CHECK_EVERY) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.every = every
        # Enough tokens for the longest repeated unit's repeats (a token is at least one character).
        self.window = RUNAWAY_MAX_PERIOD * RUNAWAY_MIN_REPEATS + RUNAWAY_MIN_CHARS

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        from segzero.runaway import runaway_reason

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        new = input_ids.shape[1] - self.prompt_length
        if new <= 0 or new % self.every:
            return done
        tail = input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window) :]
        for row, text in enumerate(self.tokenizer.batch_decode(tail, skip_special_tokens=True)):
            done[row] = runaway_reason(text) is not None
        return done


class Reasoner(ReasonerEngine):
    """The transformers engine: batched generation with a chat VLM in this process.

    Use :meth:`from_pretrained`; :meth:`generate` runs one left-padded ``generate`` call for its whole
    batch (see :class:`ReasonerEngine` for the attributes).
    """

    engine = "transformers"

    def __init__(
        self, model: Any, processor: Any, *, frame: int = REASONER_FRAME, coordinates: str = "pixels", name: str = ""
    ) -> None:
        super().__init__(frame=frame, coordinates=coordinates, name=name)
        self.model = model
        self.processor = processor
        tokenizer = getattr(processor, "tokenizer", processor)
        # Batched decoder-only generation needs the prompt flush right, next to the new tokens.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = None,
        frame: int = REASONER_FRAME,
        coordinates: str | None = None,
    ) -> "Reasoner":
        """Load model and processor by hub id or local folder; device, dtype and attention chosen automatically.

        ``coordinates`` None takes the model's own convention (:func:`reasoner_coordinates`).

        Raises:
            ModelLoadError: the model cannot be loaded, or is of a family segzero does not run.
            InputError: ``coordinates`` contradicts the model's own.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        coordinates = reasoner_coordinates(name_or_path, coordinates)
        device = pick_device(device)
        processor = load_pretrained(AutoProcessor.from_pretrained, name_or_path, "reasoner")
        model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained,
            name_or_path,
            "reasoner",
            dtype=pick_dtype(device, dtype),
            attn_implementation=attn_implementation or pick_attention(device),
        )
        model.to(device).eval()
        return cls(model, processor, frame=frame, coordinates=coordinates, name=name_or_path)

    @property
    def device(self) -> Any:
        return self.model.device

    def chat_text(self, request: str, prompt: str | PromptVariant = DEFAULT_PROMPT) -> str:
        """The full chat-templated prompt string for one request (:func:`chat_text`)."""
        return chat_text(self.processor, request, prompt, self.coordinates)

    def generate(
        self,
        images: Sequence[Image.Image],
        requests: Sequence[str],
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_text: OnText | None = None,
        stop_runaway: bool = False,
        do_sample: bool = False,
        temperature: float = 1.0,
        **generate_kwargs: Any,
    ) -> list[str]:
        """One ``generate`` call for the whole batch (left padded). Greedy unless ``do_sample``.

        Args:
            images: one RGB image per request, any size (resized to the reasoner frame here).
            requests: the user requests, same length as ``images``.
            on_text: called with each row's new text as it is produced (:data:`OnText`).
            stop_runaway: end each row as soon as its text runs away (a stopping criterion,
                :func:`segzero.runaway.runaway_reason`); the others go on.
            generate_kwargs: passed on to ``model.generate`` (e.g. ``min_new_tokens``, ``top_p``).

        Returns:
            The decoded completions, in order.
        """
        import torch

        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        if not requests:
            return []
        texts = [self.chat_text(r, prompt) for r in requests]
        frames = [reasoner_image(img, self.frame) for img in images]
        inputs = self.processor(text=texts, images=frames, padding=True, return_tensors="pt").to(self.device)
        sampling = {"do_sample": True, "temperature": temperature} if do_sample else {"do_sample": False}
        if on_text is not None:
            generate_kwargs["streamer"] = _TextStreamer(self.processor.tokenizer, on_text)
        if stop_runaway:
            from transformers import StoppingCriteriaList

            stop = _RunawayStop(self.processor.tokenizer, inputs["input_ids"].shape[1])
            generate_kwargs["stopping_criteria"] = StoppingCriteriaList(
                [*generate_kwargs.get("stopping_criteria", []), stop]
            )
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling, **generate_kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
