"""Command-line options generated from configuration dataclasses, so each setting is declared once.

A command takes the pipeline's settings as one :class:`~segzero.config.PipelineConfig`::

    @app.command()
    @model_options()
    def segment(image: ..., *, model: PipelineConfig) -> None:
        pipe = load_pipeline(model)

and ``--help`` lists each field as an option (``--reasoner``, ``--prompt``, ...) with the field's help
text and default. :func:`dataclass_options` does the same for any such dataclass (the server's
:class:`~segzero.serve.settings.ServeSettings`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer

from segzero.config import PipelineConfig, help_of

F = TypeVar("F", bound=Callable[..., Any])


def _option(cls: type, f: dataclasses.Field) -> Any:
    """The typer annotation of one dataclass field: its type, ``--flag``, help and minimum."""
    hints = typing.get_type_hints(cls)
    kind = hints[f.name]
    flag = "--" + f.name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    low = f.metadata.get("min")
    return Annotated[kind, typer.Option(*decls, help=help_of(f), min=low if low is not None else None)]


def dataclass_options(cls: type, param: str, *, without: Sequence[str] = ()) -> Callable[[F], F]:
    """Give a command ``cls``'s fields as options, passed to it as one keyword-only argument ``param``.

    Args:
        cls: a dataclass whose fields carry ``metadata={"help": ..., "min": ...}``; its defaults are the
            options' defaults, and its ``__post_init__`` checks the values.
        param: the name of the command's argument that receives the instance.
        without: fields the command does not offer (they keep the dataclass default).
    """
    fields = [f for f in dataclasses.fields(cls) if f.name not in without]
    defaults = {f.name: f.default for f in fields}

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != param]
        taken = {p.name for p in own}
        clash = [f.name for f in fields if f.name in taken]
        if clash:
            raise TypeError(f"{command.__name__} already has parameters named {clash}")
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [inspect.Parameter(f.name, keyword, annotation=_option(cls, f), default=defaults[f.name]) for f in fields]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            value = cls(**{f.name: kwargs.pop(f.name) for f in fields})
            return command(**kwargs, **{param: value})

        parameters = own + added
        run.__signature__ = signature.replace(parameters=parameters)  # what typer reads the options from
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def model_options(*, without: Sequence[str] = ()) -> Callable[[F], F]:
    """The pipeline's settings (:class:`~segzero.config.PipelineConfig`) as options, passed as ``model``."""
    return dataclass_options(PipelineConfig, "model", without=without)


def load_pipeline(config: PipelineConfig):
    """Build the :class:`~segzero.pipeline.ReasoningSegmenter`, with a spinner while the models load."""
    from rich.console import Console

    from segzero.pipeline import ReasoningSegmenter

    with Console(stderr=True).status(f"Loading {config.reasoner} and {config.segmenter}..."):
        return ReasoningSegmenter.from_config(config)
