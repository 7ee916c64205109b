"""Training configuration: one flat YAML recipe spread over three dataclasses.

A recipe (``recipes/*.yaml``) is one flat mapping. Each key belongs to one of:

* :class:`SegZeroArguments` (this project): data, prompt variant, frame, rewards, segmenter, resume;
* TRL's ``GRPOConfig`` (``segzero train grpo``) or ``SFTConfig`` (``segzero train sft``), which extend
  ``transformers.TrainingArguments``: every optimisation, batching, logging and saving setting,
  including ``reward_weights``, ``beta``, ``loss_type`` and ``use_vllm``;
* TRL's ``ModelConfig``: ``model_name_or_path``, ``dtype``, ``attn_implementation`` and the LoRA
  options (``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``).

Every field carries its help text, so ``segzero train fields grpo`` lists them all. Overrides from
the command line (``--set key=value``) are parsed as YAML values and replace the recipe's.
Numbers like ``1e-6`` are read as floats (plain YAML 1.1 would read a string).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from segzero.defaults import COORDINATES, DEFAULT_PROMPT, REASONER_FRAME
from segzero.errors import InputError
from segzero.prompts import PROMPTS
from segzero.rewards import REWARD_NAMES, SEGZERO_REWARDS

#: Folder under ``output_dir`` that receives the final model (full weights, LoRA merged).
FINAL_DIR = "final"
#: Folder under ``output_dir`` that receives the LoRA adapter of a LoRA run, before merging.
ADAPTER_DIR = "adapter"

RESUME_CHOICES = ("auto", "never")
TRAIN_KINDS = ("grpo", "sft")


@dataclass
class SegZeroArguments:
    """What segzero adds to TRL's configuration: the data, the prompt, the frame, the rewards."""

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Prepared dataset folder written by `segzero prepare` (required)."},
    )
    dataset_split: str | None = field(
        default=None,
        metadata={"help": "Split to train on when the prepared dataset holds several (default: its only one)."},
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "Train on the first N rows only (after shuffling with `subset_seed`); default: all."},
    )
    subset_seed: int | None = field(
        default=None,
        metadata={"help": "Shuffle the rows with this seed before `max_samples` is applied; default: keep order."},
    )
    prompt: str = field(
        default=DEFAULT_PROMPT,
        metadata={
            "help": f"Prompt variant (segzero.prompts): {', '.join(PROMPTS)}. "
            "Prompts are built by segzero.reasoner.build_messages, the same as at inference."
        },
    )
    frame: int | None = field(
        default=None,
        metadata={
            "help": f"Side in pixels of the square image the reasoner is shown ({REASONER_FRAME} in the paper). "
            "A reasoner that answers in pixels (Qwen2-VL, Qwen2.5-VL) answers in this frame, so it must be the dataset's "
            "`reasoner_frame` (the default; another value is refused); one that answers on the 0-1000 grid "
            f"(Qwen3-VL) may be shown any size (default {REASONER_FRAME})."
        },
    )
    coordinates: str | None = field(
        default=None,
        metadata={
            "help": f"The reasoner's coordinate convention: {', '.join(COORDINATES)}. Default: the model's own "
            "(its segzero.json, else its family's: pixels for Qwen2-VL and Qwen2.5-VL, relative for Qwen3-VL); "
            "a value that contradicts it is refused. Relative needs a dataset prepared with --coordinates "
            "relative (prompts on the 0-1000 grid)."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Drop rows whose prompt (chat template + image tokens) is longer than this many tokens, as "
            "the reference's filter_overlong_prompts did (TRL 1.16 GRPO has no prompt truncation, and "
            "truncating image tokens would break the model input). Default: keep all."
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: list(SEGZERO_REWARDS),
        metadata={
            "help": "GRPO rewards by name (segzero.rewards): " + ", ".join(REWARD_NAMES) + ". Summed with "
            "TRL's `reward_weights` (default 1 each). Default: the paper's five, strict format, hard accuracy."
        },
    )
    segmenter: str | None = field(
        default=None,
        metadata={
            "help": "SAM 2 or SAM 3 segmenter (hub id or folder) for the `mask_iou` reward; loaded on each process."
        },
    )
    segmenter_mode: str = field(
        default="both",
        metadata={
            "help": "What the `mask_iou` reward gives the segmenter: both, box, points, or (SAM 3) concept: the "
            "phrase the answer names (the `concept` prompt asks for it)."
        },
    )
    resume: str = field(
        default="auto",
        metadata={
            "help": "auto: continue from the newest `checkpoint-*` in output_dir if there is one, else start; "
            "never: start from scratch (refused when output_dir already holds checkpoints); or the path of a "
            "checkpoint folder to continue from."
        },
    )


class TrainConfig(NamedTuple):
    """A loaded recipe: segzero's arguments, TRL's trainer config and TRL's model config."""

    script: SegZeroArguments
    training: Any  # trl.GRPOConfig or trl.SFTConfig
    model: Any  # trl.ModelConfig


def config_classes(kind: str) -> tuple[type, type, type]:
    """The three dataclasses a ``kind`` ("grpo" or "sft") recipe is read into."""
    from trl import GRPOConfig, ModelConfig, SFTConfig

    if kind not in TRAIN_KINDS:
        raise InputError(f"Unknown training kind {kind!r}; choose one of: {', '.join(TRAIN_KINDS)}.")
    return SegZeroArguments, GRPOConfig if kind == "grpo" else SFTConfig, ModelConfig


# --------------------------------------------------------------------------- YAML


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader with YAML 1.2 scalars: ``1e-6`` (no dot) is a float, as people write learning rates,
        and only true/false are booleans (``save_strategy: no`` stays the string "no")."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def parse_value(text: str) -> Any:
    """One YAML scalar or flow value, as written after ``--set key=``."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise InputError(f"Cannot read the value {text!r} ({exc.__class__.__name__}); write it as YAML.") from None


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The flat mapping of a recipe file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"The recipe {path} does not exist; pass a YAML file such as recipes/seg_zero_3b.yaml.")
    try:
        data = yaml.load(path.read_text(), Loader=_yaml_loader())  # noqa: S506
    except yaml.YAMLError as exc:
        raise InputError(f"The recipe {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"The recipe {path} must be a mapping of `key: value` lines, not a {type(data).__name__}.")
    nested = [k for k, v in data.items() if isinstance(v, dict) and k not in _DICT_FIELDS]
    if nested:
        raise InputError(
            f"The recipe {path} has nested sections ({', '.join(nested)}); recipes are flat `key: value` files."
        )
    return data


# Fields whose values are mappings by design (so a nested value there is not a layout mistake).
_DICT_FIELDS = {
    "model_init_kwargs",
    "generation_kwargs",
    "chat_template_kwargs",
    "gradient_checkpointing_kwargs",
    "activation_checkpointing_kwargs",
    "lr_scheduler_kwargs",
    "dataset_kwargs",
    "transformers_continuous_batching_config",
    "fsdp_config",
    "deepspeed",
    "accelerator_config",
    "optim_args",
}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` to a mapping; values are YAML (``beta=5e-3``, ``report_to=[tensorboard]``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise InputError(f"Override {item!r} must look like key=value, e.g. --set learning_rate=1e-6.")
        out[key] = parse_value(value)
    return out


# --------------------------------------------------------------------------- loading


def field_names(kind: str) -> dict[str, type]:
    """Every accepted key of a ``kind`` recipe and the dataclass it belongs to."""
    names: dict[str, type] = {}
    for cls in config_classes(kind):
        for f in dataclasses.fields(cls):
            if f.init:
                if f.name in names:  # a TRL upgrade that adds a field segzero also has
                    raise RuntimeError(f"recipe key {f.name!r} is both in {names[f.name].__name__} and {cls.__name__}")
                names[f.name] = cls
    return names


def load_config(
    kind: str,
    recipe: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
) -> TrainConfig:
    """Read a recipe, apply overrides and build the three config objects.

    Args:
        kind: ``"grpo"`` or ``"sft"``.
        recipe: YAML file (flat mapping); None for defaults only.
        overrides: ``{"key": value}`` or ``["key=value", ...]``; they replace the recipe's values.

    Raises:
        InputError: missing file, bad YAML, an unknown key (with the closest known ones), or a value the
            config classes refuse.
    """
    values = read_recipe(recipe) if recipe is not None else {}
    extra = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    values.update(extra)
    known = field_names(kind)  # each key belongs to exactly one class (checked in field_names)
    reject_unknown(values, known, f"{kind} setting(s)", f"segzero train fields {kind}")
    try:
        script, training, model = (
            cls(**{k: v for k, v in values.items() if known[k] is cls}) for cls in config_classes(kind)
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"Invalid {kind} configuration: {exc}".replace("\n", " ")) from None
    config = TrainConfig(script, training, model)
    validate(kind, config)
    return config


def reject_unknown(keys: Iterable[str], known: Iterable[str], what: str, listing: str) -> None:
    """Raise one :class:`InputError` naming every key not in ``known``, each with its closest known keys.

    Args:
        what: what the keys are, for the sentence ("grpo setting(s)").
        listing: the command that lists the known keys.
    """
    known = list(known)
    unknown = [k for k in keys if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, known, n=2)
            hints.append(f"{k}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise InputError(f"Unknown {what}: {'; '.join(hints)}. List them all with `{listing}`.")


def validate(kind: str, config: TrainConfig) -> None:
    """Checks that need more than one dataclass; each failure is one sentence saying what to change."""
    from segzero.defaults import SEGMENTER_MODES
    from segzero.prompts import get_prompt

    script, training, model = config
    if not script.dataset_path:
        raise InputError("Set `dataset_path` to a prepared dataset (write one with `segzero prepare`).")
    if not model.model_name_or_path:
        raise InputError("Set `model_name_or_path` to the reasoner to train (hub id or folder).")
    if not training.output_dir:
        raise InputError("Set `output_dir` (in the recipe, or --output-dir) to the run folder.")
    get_prompt(script.prompt)
    if script.coordinates is not None and script.coordinates not in COORDINATES:
        raise InputError(f"coordinates must be one of {', '.join(COORDINATES)}, got {script.coordinates!r}.")
    if script.resume not in RESUME_CHOICES and not Path(script.resume).is_dir():
        raise InputError(
            f"resume={script.resume!r} is neither auto, never nor an existing checkpoint folder."
        )
    if kind != "grpo":
        return
    if isinstance(script.reward_funcs, str):
        script.reward_funcs = [script.reward_funcs]
    bad = [name for name in script.reward_funcs if name not in REWARD_NAMES]
    if bad:
        raise InputError(f"Unknown reward(s) {', '.join(bad)}; choose from: {', '.join(REWARD_NAMES)}.")
    if not script.reward_funcs:
        raise InputError("Name at least one reward in `reward_funcs`.")
    weights = training.reward_weights
    if weights is not None and len(weights) != len(script.reward_funcs):
        raise InputError(
            f"reward_weights has {len(weights)} values for {len(script.reward_funcs)} rewards "
            f"({', '.join(script.reward_funcs)}); give one weight per reward."
        )
    if "mask_iou" in script.reward_funcs and not script.segmenter:
        raise InputError("The `mask_iou` reward needs `segmenter` (a SAM 2 or SAM 3 hub id or folder).")
    if script.segmenter_mode not in SEGMENTER_MODES:
        raise InputError(f"segmenter_mode must be one of {', '.join(SEGMENTER_MODES)}.")


def describe_fields(kind: str, include_inherited: bool = False) -> list[tuple[str, str, Any, str]]:
    """``(key, owner, default, help)`` for every recipe key of ``kind``.

    Without ``include_inherited``, the plain ``transformers.TrainingArguments`` fields are left out except
    the ones recipes commonly set (:data:`COMMON_TRAINING_FIELDS`).
    """
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    rows = []
    for cls in config_classes(kind):
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if not include_inherited and f.name in base and f.name not in COMMON_TRAINING_FIELDS:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            help_text = " ".join(str(f.metadata.get("help", "")).split())
            rows.append((f.name, cls.__name__, default, help_text))
    return rows


#: ``TrainingArguments`` fields that recipes set, listed by ``segzero train fields`` without ``--all``.
COMMON_TRAINING_FIELDS = frozenset(
    {
        "output_dir",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "weight_decay",
        "lr_scheduler_type",
        "warmup_steps",
        "max_grad_norm",
        "bf16",
        "activation_checkpointing",
        "logging_steps",
        "report_to",
        "run_name",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_only_model",
        "seed",
        "use_cpu",
        "deepspeed",
    }
)
