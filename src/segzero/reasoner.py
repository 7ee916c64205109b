"""The reasoner: a Hugging Face image-text-to-text chat model that thinks and answers with a box and points.

It is shown the image resized to ``frame x frame`` (bilinear, aspect ratio not kept: the *view*) and
answers on its family's grid (:func:`segzero.frames.answer_grid`): the view's pixels for Qwen2.5-VL,
a 0-1000 grid over the image for Qwen3-VL. The families segzero runs are in
:mod:`segzero.families`; the released Seg-Zero checkpoints are Qwen2.5-VL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from segzero.defaults import MAX_NEW_TOKENS, REASONER_FRAME
from segzero.families import reasoner_family
from segzero.frames import Frame, answer_grid
from segzero.hub import load_model_type, load_pretrained, pick_attention, pick_device, pick_dtype
from segzero.prompts import DEFAULT_PROMPT, PromptVariant, get_prompt


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


class Reasoner:
    """Batched generation with a chat VLM.

    Use :meth:`from_pretrained`; :meth:`generate` takes images (any size) and requests and returns
    the completions (text after the generation prompt, special tokens removed).

    Attributes:
        frame: side in pixels of the square view the model is shown.
        coordinates: its coordinate convention, ``"pixels"`` or ``"relative"``; with ``frame`` it gives
            :attr:`answer_frame`, the grid its answers are on.
    """

    def __init__(
        self, model: Any, processor: Any, *, frame: int = REASONER_FRAME, coordinates: str = "pixels", name: str = ""
    ) -> None:
        self.model = model
        self.processor = processor
        self.frame = frame
        self.coordinates = coordinates
        self.name = name
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

    @property
    def answer_frame(self) -> Frame:
        """The grid the model's answers are on (:func:`segzero.frames.answer_grid`)."""
        return answer_grid(self.frame, self.coordinates)

    def chat_text(self, request: str, prompt: str | PromptVariant = DEFAULT_PROMPT) -> str:
        """The full chat-templated prompt string for one request, generation prompt included."""
        return self.processor.apply_chat_template(
            build_messages(request, prompt, self.coordinates), tokenize=False, add_generation_prompt=True
        )

    def generate(
        self,
        images: Sequence[Image.Image],
        requests: Sequence[str],
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        do_sample: bool = False,
        temperature: float = 1.0,
        **generate_kwargs: Any,
    ) -> list[str]:
        """One ``generate`` call for the whole batch (left padded). Greedy unless ``do_sample``.

        Args:
            images: one RGB image per request, any size (resized to the reasoner frame here).
            requests: the user requests, same length as ``images``.
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
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling, **generate_kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
