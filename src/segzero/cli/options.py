"""Options shared by every command that runs the pipeline (segment, batch, eval, serve, demo): defined once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from segzero.defaults import DEFAULT_REASONER, DEFAULT_SEGMENTER, MAX_IMAGE_PIXELS, MAX_NEW_TOKENS
from segzero.prompts import DEFAULT_PROMPT, PROMPTS

Reasoner = Annotated[str, typer.Option("--reasoner", help="Reasoner: hub id or local folder.")]
Segmenter = Annotated[str, typer.Option("--segmenter", help="SAM2 segmenter: hub id or local folder.")]
Prompt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        help=f"Prompt variant: {', '.join(PROMPTS)} (default: the one the model's segzero.json names, "
        f"else {DEFAULT_PROMPT}).",
    ),
]
SegmenterModeOpt = Annotated[
    str, typer.Option("--segmenter-mode", help="Which prompts SAM2 gets: both, box or points.")
]
Frame = Annotated[
    int | None,
    typer.Option("--frame", help="Reasoner frame side in pixels (default 840, or the model's segzero.json)."),
]
Device = Annotated[str | None, typer.Option("--device", help="cuda, cuda:1, cpu... (default: automatic).")]
Dtype = Annotated[str | None, typer.Option("--dtype", help="bfloat16, float16, float32 (default: bf16 on CUDA).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Requests per generate call.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Generation budget per request.")]
MaxPixels = Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this.")]


@dataclass
class ModelOptions:
    """Everything needed to build the pipeline; the CLI commands fill it from their options."""

    reasoner: str = DEFAULT_REASONER
    segmenter: str = DEFAULT_SEGMENTER
    prompt: str | None = None
    segmenter_mode: str = "both"
    frame: int | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 8
    max_new_tokens: int = MAX_NEW_TOKENS
    max_pixels: int = MAX_IMAGE_PIXELS

    def load(self):
        """Build the :class:`~segzero.pipeline.ReasoningSegmenter`, with a spinner while models load."""
        from rich.console import Console

        from segzero.pipeline import ReasoningSegmenter

        with Console(stderr=True).status(f"Loading {self.reasoner} and {self.segmenter}..."):
            return ReasoningSegmenter.from_pretrained(
                self.reasoner,
                self.segmenter,
                device=self.device,
                dtype=self.dtype,
                frame=self.frame,
                prompt=self.prompt,
                segmenter_mode=self.segmenter_mode,
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
                max_pixels=self.max_pixels,
            )
