"""The pipeline's settings, declared once.

:class:`PipelineConfig` is the one declaration of everything that shapes how a request goes through
the pipeline: the models, the device and dtype, the frame, the prompt, the segmenter mode, batching,
the generation budget, the pixel cap. Each field carries its help text (as TRL's configs do), and
everything else is built from it:

- :meth:`segzero.pipeline.ReasoningSegmenter.from_config` loads the pipeline it describes;
- the CLI's model options (``segzero segment|batch|eval|serve``) and their ``--help`` are generated
  from its fields (:mod:`segzero.cli.options`);
- an evaluation run records the fields marked ``run`` in its ``run.json``
  (:meth:`PipelineConfig.run_settings`), so a resumed run is refused if any of them changed;
- the server takes its pixel cap and its models from it.

Some settings belong to the model as much as to the run: a reasoner trained here records its
frame, prompt and coordinate convention in ``segzero.json``, and its family (the ``model_type`` of
its ``config.json``, :mod:`segzero.families`) fixes its coordinate convention.
:meth:`PipelineConfig.resolved` applies the one rule for them (:func:`model_settings`): an explicit
value wins, else what the model says (its ``segzero.json``, else its family), else the project
default; where the model's own value is binding (the coordinate convention), an explicit value that
contradicts it is refused instead.

Field metadata keys: ``help`` (one sentence for ``--help`` and the docs), ``choices`` (allowed
values, listed in the help), ``min`` (smallest allowed number), ``model_key`` and ``fallback`` (the
``segzero.json`` key that supplies a ``None`` field, and the default when the model says nothing;
``fallback_text`` words a default that is not a constant), ``binding`` (an explicit value must agree
with the model's own), ``run`` (True when the setting changes an evaluation's results).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segzero.defaults import (
    COORDINATES,
    DEFAULT_PROMPT,
    DEFAULT_REASONER,
    DEFAULT_SEGMENTER,
    ENGINES,
    MAX_IMAGE_PIXELS,
    MAX_IN_FLIGHT,
    MAX_NEW_TOKENS,
    REASONER_FRAME,
    REFERENCE_SEGMENTER,
    SEGMENTER_MODES,
)
from segzero.errors import InputError
from segzero.protocols import PROTOCOLS, SEGZERO, check_pipeline, default_segmenter


def _prompt_names() -> tuple[str, ...]:
    from segzero.prompts import PROMPTS

    return tuple(PROMPTS)


@dataclass
class PipelineConfig:
    """How to build and run the pipeline (see the module docstring for how it is used)."""

    reasoner: str = field(
        default=DEFAULT_REASONER,
        metadata={"help": "Reasoner: hub id or local folder.", "run": True},
    )
    segmenter: str | None = field(
        default=None,
        metadata={
            "help": f"Segmenter (SAM2): hub id or local folder. Default: {DEFAULT_SEGMENTER}; "
            f"{REFERENCE_SEGMENTER} (SAM 2.0) under --protocol reference.",
            "run": True,
        },
    )
    protocol: str = field(
        default=SEGZERO,
        metadata={
            "help": "Whose rules for reading answers, mapping them and prompting the segmenter: segzero's, "
            "or the reference release's, to reproduce its figures (docs/reproducing.md).",
            "choices": PROTOCOLS,
            "run": True,
        },
    )
    prompt: str | None = field(
        default=None,
        metadata={
            "help": "Prompt variant (segzero.prompts).",
            "choices": _prompt_names,
            "model_key": "prompt",
            "fallback": DEFAULT_PROMPT,
            "run": True,
        },
    )
    segmenter_mode: str = field(
        default="both",
        metadata={
            "help": "Which prompts the segmenter gets from each object (concept: the phrase it names; SAM 3 only).",
            "choices": SEGMENTER_MODES,
            "run": True,
        },
    )
    frame: int | None = field(
        default=None,
        metadata={
            "help": "Side in pixels of the square image the reasoner is shown.",
            "min": 1,
            "model_key": "reasoner_frame",
            "fallback": REASONER_FRAME,
            "run": True,
        },
    )
    # Not a run setting: it is the reasoner's own (a contradicting value is refused), so the reasoner fixes it.
    coordinates: str | None = field(
        default=None,
        metadata={
            "help": "How the reasoner writes coordinates: pixels of the image it is shown (Qwen2.5-VL) or "
            "relative, on a 0-1000 grid over the image (Qwen3-VL); a value that contradicts the "
            "model's own is refused.",
            "choices": COORDINATES,
            "model_key": "coordinates",
            "fallback": None,
            "fallback_text": "its family's",
            "binding": True,
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "cuda, cuda:1, cpu, ... (default: CUDA when available, else CPU)."}
    )
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "bfloat16, float16 or float32 (default: bfloat16 on CUDA, float32 on CPU).",
            "run": True,
        },
    )
    batch_size: int = field(
        default=8,
        metadata={
            "help": "Requests per reasoner call: one generate call (transformers); handed over together, "
            "with the next batches queued behind (vllm, openai).",
            "min": 1,
        },
    )
    max_new_tokens: int = field(
        default=MAX_NEW_TOKENS, metadata={"help": "Generation budget per request, in tokens.", "min": 1,
                                          "run": True}
    )  # fmt: skip
    stop_runaway: bool = field(
        default=False,
        metadata={
            "help": "Stop a request's generation as soon as its completion runs away (ends in a long run of "
            "whitespace or one phrase repeated; segzero.runaway) instead of at --max-new-tokens; off under "
            "--protocol reference.",
            "run": True,
        },
    )
    max_pixels: int = field(
        default=MAX_IMAGE_PIXELS,
        metadata={"help": "Refuse images with more pixels than this (decompression-bomb guard).", "min": 1},
    )
    # The engine settings are not run settings: every engine gives the same greedy completions.
    engine: str = field(
        default="transformers",
        metadata={
            "help": "Where the reasoner runs: transformers (generate, in this process), vllm (vLLM in this "
            "process; pip install -e '.[vllm]') or openai (an OpenAI-compatible server at --reasoner-url).",
            "choices": ENGINES,
        },
    )
    reasoner_url: str | None = field(
        default=None,
        metadata={
            "help": "openai engine: the server's base URL, e.g. http://host:8000/v1 (vllm serve, SGLang, "
            "transformers serve); it must serve --reasoner under that name."
        },
    )
    api_key: str | None = field(
        default=None, repr=False, metadata={"help": "openai engine: the server's API key (default: $OPENAI_API_KEY, if set)."}
    )
    max_in_flight: int = field(
        default=MAX_IN_FLIGHT, metadata={"help": "openai engine: most requests sent to the server at once.", "min": 1}
    )
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vllm engine: GPUs the reasoner is split over (tensor parallelism).", "min": 1}
    )
    vllm_args: str | None = field(
        default=None,
        metadata={
            "help": "vllm engine: more vllm.LLM arguments as a JSON object, e.g. "
            '\'{"gpu_memory_utilization": 0.7, "max_model_len": 8192}\'.'
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)
        check_engine(self)

    def resolved(self) -> PipelineConfig:
        """This config with every ``None`` model setting filled by :func:`model_settings` and the segmenter
        by the protocol's default (:func:`segzero.protocols.default_segmenter`).

        Raises:
            InputError: a setting contradicts the protocol (:func:`segzero.protocols.check_pipeline`).
            ModelLoadError: the reasoner's ``segzero.json`` is malformed.
        """
        from segzero.hub import read_model_meta

        out = dataclasses.replace(
            self,
            segmenter=self.segmenter or default_segmenter(self.protocol),
            **model_settings(self.reasoner, self),
        )
        check_pipeline(out, read_model_meta(self.reasoner))
        return out

    def run_settings(self) -> dict[str, Any]:
        """The settings that change an evaluation's results (fields marked ``run``), by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("run")}


def model_settings(reasoner: str, given: Any = None, *, model_type: str | None = None) -> dict[str, Any]:
    """The one rule for settings a model records: given explicitly, else the model's own, else the default.

    The model's own value is what its ``segzero.json`` says, else (for the coordinate convention) what
    its family implies (:mod:`segzero.families`, from the ``model_type`` of its ``config.json``).

    Args:
        reasoner: hub id or folder of the reasoner (a hub id has no local ``segzero.json``).
        given: explicit values, as attributes (e.g. a :class:`PipelineConfig`) or a mapping; None
            stands for "not given", and so does ``given=None``.
        model_type: the reasoner's ``model_type`` when already known; else it is read from its
            ``config.json`` (:func:`segzero.hub.read_model_type`), and unknown when unreadable.

    Returns:
        ``{field name: value}`` for every field with a ``model_key`` (``prompt``, ``frame``,
        ``coordinates``); ``coordinates`` is None only when the family is not known yet (a hub id
        that cannot be reached: the loaded model decides).

    Raises:
        ModelLoadError: the reasoner's ``segzero.json`` is malformed, or its family is not supported.
        InputError: an explicit value contradicts the model's own where that is binding.
    """
    from segzero.families import reasoner_family
    from segzero.hub import read_model_meta, read_model_type

    meta = read_model_meta(reasoner)
    own = {key: (value, "its segzero.json") for key, value in meta.items() if value is not None}
    model_type = model_type or read_model_type(reasoner)
    if model_type is not None:
        family = reasoner_family(model_type, reasoner)
        own.setdefault("coordinates", (family.coordinates, f"as a {family.name} model"))
    out = {}
    for f in dataclasses.fields(PipelineConfig):
        if "model_key" not in f.metadata:
            continue
        explicit = given.get(f.name) if isinstance(given, Mapping) else getattr(given, f.name, None)
        recorded, source = own.get(f.metadata["model_key"], (None, ""))
        if f.metadata.get("binding") and None not in (explicit, recorded) and explicit != recorded:
            raise InputError(
                f"{option_name(f)} {explicit} contradicts the reasoner {reasoner}, which uses {recorded} "
                f"({source}); leave the option out."
            )
        value = explicit if explicit is not None else recorded
        out[f.name] = value if value is not None else f.metadata["fallback"]
    return out


def check_engine(config: PipelineConfig) -> None:
    """Refuse engine options that do not fit together, in one sentence.

    Raises:
        InputError: ``--engine openai`` without ``--reasoner-url``, a ``--reasoner-url`` or ``--vllm-args`` for
            another engine, or ``--vllm-args`` that is not a JSON object.
    """
    if config.engine == "openai" and not config.reasoner_url:
        raise InputError("--engine openai needs --reasoner-url, the server's base URL (e.g. http://host:8000/v1).")
    if config.reasoner_url and config.engine != "openai":
        raise InputError(f"--reasoner-url is for --engine openai, not --engine {config.engine}; add --engine openai.")
    if config.vllm_args is not None:
        if config.engine != "vllm":
            raise InputError(f"--vllm-args is for --engine vllm, not --engine {config.engine}; add --engine vllm.")
        vllm_options(config.vllm_args)


def vllm_options(text: str | None) -> dict[str, Any]:
    """``--vllm-args`` read as a dict (empty when not given).

    Raises:
        InputError: not a JSON object.
    """
    import json

    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--vllm-args must be a JSON object, e.g. '{{\"max_model_len\": 8192}}' ({exc.msg}).") from None
    if not isinstance(options, dict):
        raise InputError(f"--vllm-args must be a JSON object, e.g. '{{\"max_model_len\": 8192}}', not {text!r}.")
    return options


def option_name(f: dataclasses.Field) -> str:
    """The command-line option of a field: ``--segmenter-mode`` for ``segmenter_mode``."""
    return "--" + f.name.replace("_", "-")


def choices_of(f: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of a field, or None when any value of its type goes."""
    choices = f.metadata.get("choices")
    return tuple(choices() if callable(choices) else choices) if choices is not None else None


def help_of(f: dataclasses.Field) -> str:
    """A field's help text with its choices and, for model settings, where its default comes from."""
    text = f.metadata.get("help", "")
    choices = choices_of(f)
    if choices:
        text += f" One of: {', '.join(choices)}."
    if "model_key" in f.metadata:
        fallback = f.metadata.get("fallback_text", f.metadata["fallback"])
        text += f" Default: the reasoner's segzero.json, else {fallback}."
    return text


def check_fields(config: Any) -> None:
    """Refuse values outside a dataclass's declared ``choices`` or ``min``, in one sentence.

    Raises:
        InputError: naming the field (as its command-line option) and what it accepts.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        option = option_name(f)
        choices = choices_of(f)
        if choices is not None and value not in choices:
            raise InputError(f"{option} {value!r} is not known; choose one of: {', '.join(choices)}.")
        low = f.metadata.get("min")
        if low is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
            raise InputError(f"{option} must be a number of at least {low}, got {value!r}.")
