"""Supervised fine-tuning baseline (the paper's "SFT" row) with TRL's ``SFTTrainer``.

Same prepared data as GRPO; the target is the ground-truth answer, ``<answer>{solution}</answer>``
(no reasoning: there is no reasoning data), learnt with the prompt tokens masked out (TRL's
completion-only loss on prompt/completion rows). See :mod:`segzero.train.data`.
"""

from __future__ import annotations

from pathlib import Path

from segzero.train.config import TrainConfig
from segzero.train.data import dataset_frame, drop_long_prompts, load_rows, sft_dataset
from segzero.train.run import (
    accept_saved_key_names,
    checkpoint_to_resume,
    load_processor,
    model_init_kwargs,
    save_final,
)


def train_sft(config: TrainConfig) -> Path:
    """Run (or continue) SFT; returns the ``output_dir/final`` folder of the trained reasoner."""
    from trl import SFTTrainer, get_peft_config

    script, args, model_args = config
    resume_from = checkpoint_to_resume(args.output_dir, script.resume)

    data = load_rows(script)
    frame = dataset_frame(data, script.frame)
    processor = load_processor(model_args, args.trust_remote_code)
    data = drop_long_prompts(data, processor, script, frame)
    train_dataset = sft_dataset(data, script.prompt, frame)

    args.model_init_kwargs = model_init_kwargs(model_args, args.model_init_kwargs)
    args.remove_unused_columns = False  # the lazy view already holds only prompt, completion, images
    if args.completion_only_loss is False:
        from segzero.errors import InputError

        raise InputError("SFT trains on the answer only: leave completion_only_loss unset or true.")
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=args,
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    accept_saved_key_names(trainer.accelerator.unwrap_model(trainer.model))
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_state()
    return save_final(trainer, model_args, frame=frame, prompt=script.prompt, method="sft")
