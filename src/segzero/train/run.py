"""What GRPO and SFT runs share: the run itself (:func:`run_training`), resuming, model loading options
and the final save."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segzero.errors import InputError
from segzero.hub import write_model_meta
from segzero.train.config import ADAPTER_DIR, FINAL_DIR, TrainConfig
from segzero.train.data import dataset_frame, drop_long_prompts, load_rows
from segzero.train.progress import quiet_training, use_step_log

#: ``make_trainer(rows, frame, coordinates, **common) -> trainer``: a TRL trainer on the prepared ``rows``
#: (those that fit ``max_prompt_length``), the reasoner shown ``frame x frame`` images and answering in the
#: ``coordinates`` convention; ``common`` holds the arguments every trainer takes (``model``, ``args``,
#: ``processing_class``, ``peft_config``).
MakeTrainer = Callable[..., Any]

_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")


def run_training(config: TrainConfig, method: str, make_trainer: MakeTrainer) -> Path:
    """Run (or continue) one training run; returns the ``output_dir/final`` folder of the trained reasoner.

    The order is what both methods need: refuse a bad ``resume`` and an unsupported reasoner family or
    contradicting coordinate convention before anything loads; read the rows, their frame and the
    processor; drop prompts over ``max_prompt_length``; build the trainer, reporting one line a step
    (:mod:`segzero.train.progress`); make checkpoints in the hub's key names loadable; train; save the
    state and the final model with its ``segzero.json`` (``method`` is recorded there).
    """
    from trl import get_peft_config

    from segzero.reasoner import reasoner_coordinates

    script, args, model_args = config
    resume_from = checkpoint_to_resume(args.output_dir, script.resume)
    coordinates = reasoner_coordinates(
        model_args.model_name_or_path, script.coordinates,
        revision=model_args.model_revision, trust_remote_code=args.trust_remote_code,
    )  # fmt: skip

    data = load_rows(script)
    frame = dataset_frame(data, script.frame, coordinates)
    processor = load_processor(model_args, args.trust_remote_code)
    data = drop_long_prompts(data, processor, script, frame, coordinates)

    args.model_init_kwargs = model_init_kwargs(model_args, args.model_init_kwargs)
    # The lazy views hand TRL exactly the columns it (and the rewards) need; the Trainer's column
    # pruning would look at the stored columns instead and drop the ground truth.
    args.remove_unused_columns = False
    with quiet_training(args):  # one readable line a step under a rich bar, each library warning once
        trainer = make_trainer(
            data,
            frame,
            coordinates,
            model=model_args.model_name_or_path,
            args=args,
            processing_class=processor,
            peft_config=get_peft_config(model_args),
        )
        use_step_log(trainer, f"{method.upper()} {Path(args.output_dir).name}")
        accept_saved_key_names(trainer.accelerator.unwrap_model(trainer.model))
        trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_state()
        return save_final(
            trainer, model_args, frame=frame, prompt=script.prompt, coordinates=coordinates, method=method
        )


def checkpoint_to_resume(output_dir: str | Path, resume: str) -> str | None:
    """The checkpoint folder to continue from, or None to start from scratch.

    Args:
        output_dir: the run folder; its ``checkpoint-<step>`` folders are what "auto" looks for.
        resume: ``"auto"`` (the newest complete checkpoint, if any), ``"never"``, or a checkpoint folder.

    A checkpoint is complete once its ``trainer_state.json`` is written, which the Trainer does
    last: a run killed while saving leaves a newer folder without it, and "auto" passes over it.

    Raises:
        InputError: ``"never"`` while ``output_dir`` holds checkpoints (a second run would mix its
            checkpoints and logs with the first one's), or a folder that is not a checkpoint.
    """
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if resume == "auto":
        return _newest_complete_checkpoint(out) if last is not None else None
    if resume == "never":
        if last is not None:
            raise InputError(
                f"{out} already holds checkpoints (newest {Path(last).name}); continue it with --resume auto, "
                "or choose another output_dir."
            )
        return None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise InputError(f"{path} is not a training checkpoint (it has no trainer_state.json).")
    return str(path)


def _newest_complete_checkpoint(out: Path) -> str | None:
    steps = [
        (int(match.group(1)), path)
        for path in out.iterdir()
        if (match := _CHECKPOINT_RE.fullmatch(path.name)) and (path / "trainer_state.json").is_file()
    ]
    return str(max(steps)[1]) if steps else None


def accept_saved_key_names(model: Any) -> None:
    """Let ``model.load_state_dict`` read checkpoints written in the model's original (hub) key names.

    transformers saves checkpoints with the key names of the original release (``model.layers.*``,
    ``visual.*`` for Qwen2.5-VL) but ``Trainer`` loads them on resume with a plain ``load_state_dict``
    on the renamed modules (``model.language_model.layers.*``, ``model.visual.*``), so nothing matches
    and training would silently continue from the base weights (transformers issues #43701, #48805).
    This pre-hook renames the keys with the model's own renaming rules (the ones ``from_pretrained``
    applied) before they are matched. DeepSpeed and PEFT checkpoints take other paths and need no help.
    """
    from transformers.core_model_loading import WeightRenaming

    renamings = [c for c in getattr(model, "_weight_conversions", None) or [] if isinstance(c, WeightRenaming)]
    if not renamings:
        return

    def rename(module: Any, state_dict: dict, prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name = key[len(prefix) :]
            for renaming in renamings:
                name, _ = renaming.rename_source_key(name)
            if prefix + name != key and prefix + name not in state_dict:
                state_dict[prefix + name] = state_dict.pop(key)

    model.register_load_state_dict_pre_hook(rename)


def model_init_kwargs(model_args: Any, given: dict[str, Any] | None) -> dict[str, Any]:
    """``from_pretrained`` options from TRL's ModelConfig; values already in ``given`` win."""
    kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return {**kwargs, **(given or {})}


def load_processor(model_args: Any, trust_remote_code: bool = False):
    """The reasoner's processor, left-padded and left-truncated as TRL's generation expects."""
    from transformers import AutoProcessor

    from segzero.hub import load_pretrained

    return load_pretrained(
        AutoProcessor.from_pretrained,
        model_args.model_name_or_path,
        "reasoner",
        revision=model_args.model_revision,
        padding_side="left",
        truncation_side="left",
        trust_remote_code=trust_remote_code,
    )


def save_final(trainer: Any, model_args: Any, *, frame: int, prompt: str, coordinates: str, method: str) -> Path:
    """Save the trained reasoner to ``output_dir/final`` in Hugging Face format and return that folder.

    The folder holds the model (full weights; a LoRA adapter is merged into the base weights), the
    processor, and ``segzero.json`` (``reasoner_frame``, ``prompt``, ``coordinates``, ``method``,
    ``base_model``), so ``ReasoningSegmenter.from_pretrained(output_dir/"final", segmenter)`` uses the
    right frame, prompt and convention. With LoRA the adapter alone is kept in ``output_dir/adapter`` too.

    Every process must call this (DeepSpeed ZeRO-3 gathers the weights collectively); only the main
    process writes.
    """
    out = Path(trainer.args.output_dir)
    final = out / FINAL_DIR
    peft = _is_peft(trainer.model)
    trainer.save_model(str(out / ADAPTER_DIR if peft else final))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if peft:
            _merge_adapter(out / ADAPTER_DIR, final, model_args)
            trainer.processing_class.save_pretrained(final)
        _fix_saved_config(final)
        write_model_meta(
            final, frame=frame, prompt=prompt, coordinates=coordinates, method=method,
            base_model=model_args.model_name_or_path,
        )  # fmt: skip
    trainer.accelerator.wait_for_everyone()
    return final


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel) or isinstance(getattr(model, "module", None), PeftModel)


def _merge_adapter(adapter_dir: Path, final: Path, model_args: Any) -> None:
    """Load the base model on the CPU, merge the saved adapter into it and save the full model.

    Reloading the base (rather than merging the live model) works the same under ZeRO-3, where the
    live weights are sharded across processes.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else "float32"
    base = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, dtype=getattr(torch, dtype)
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if final.exists():
        shutil.rmtree(final)
    merged.save_pretrained(final)


def _fix_saved_config(final: Path) -> None:
    """Turn the KV cache back on in the saved config: gradient checkpointing switched it off for training,
    and generation without it is many times slower."""
    path = final / "config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    changed = False
    for section in (config, config.get("text_config") or {}):
        if section.get("use_cache") is False:
            section["use_cache"] = True
            changed = True
    if changed:
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
