"""Options shared by every command that runs the pipeline (segment, batch, eval, serve): defined once.

A command takes them as one :class:`ModelOptions` through :func:`model_options`::

    @app.command()
    @model_options()
    def segment(image: ..., *, model: ModelOptions) -> None:
        pipe = model.load()

and ``--help`` lists each of its fields as an option (``--reasoner``, ``--prompt``, ...), with the
dataclass's defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

from segzero.defaults import DEFAULT_REASONER, DEFAULT_SEGMENTER, MAX_IMAGE_PIXELS, MAX_NEW_TOKENS
from segzero.prompts import DEFAULT_PROMPT, PROMPTS

F = TypeVar("F", bound=Callable[..., Any])


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

        settings = dataclasses.asdict(self)
        reasoner, segmenter = settings.pop("reasoner"), settings.pop("segmenter")
        with Console(stderr=True).status(f"Loading {reasoner} and {segmenter}..."):
            return ReasoningSegmenter.from_pretrained(reasoner, segmenter, **settings)


#: The command-line option of each :class:`ModelOptions` field.
OPTIONS: dict[str, Any] = {
    "reasoner": Annotated[str, typer.Option("--reasoner", help="Reasoner: hub id or local folder.")],
    "segmenter": Annotated[str, typer.Option("--segmenter", help="SAM2 segmenter: hub id or local folder.")],
    "prompt": Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help=f"Prompt variant: {', '.join(PROMPTS)} (default: the one the model's segzero.json names, "
            f"else {DEFAULT_PROMPT}).",
        ),
    ],
    "segmenter_mode": Annotated[
        str, typer.Option("--segmenter-mode", help="Which prompts SAM2 gets: both, box or points.")
    ],
    "frame": Annotated[
        int | None,
        typer.Option(
            "--frame", help="Reasoner frame side in pixels (default: the model's segzero.json, else 840)."
        ),
    ],
    "device": Annotated[
        str | None, typer.Option("--device", help="cuda, cuda:1, cpu... (default: automatic).")
    ],
    "dtype": Annotated[
        str | None, typer.Option("--dtype", help="bfloat16, float16, float32 (default: bf16 on CUDA).")
    ],
    "batch_size": Annotated[int, typer.Option("--batch-size", min=1, help="Requests per generate call.")],
    "max_new_tokens": Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Generation budget per request.")
    ],
    "max_pixels": Annotated[
        int, typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this.")
    ],
}


def model_options(*, without: Sequence[str] = ()) -> Callable[[F], F]:
    """Give a command the pipeline options as one keyword-only ``model: ModelOptions`` argument.

    Args:
        without: fields the command does not offer as options (they keep the dataclass default), e.g.
            ``batch_size`` where the command decides it.
    """
    names = [name for name in OPTIONS if name not in without]
    defaults = ModelOptions()

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "model"]
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [
            inspect.Parameter(name, keyword, annotation=OPTIONS[name], default=getattr(defaults, name))
            for name in names
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            model = ModelOptions(**{name: kwargs.pop(name) for name in names})
            return command(**kwargs, model=model)

        parameters = own + added
        run.__signature__ = signature.replace(parameters=parameters)  # what typer reads the options from
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate
