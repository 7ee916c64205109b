"""GRPO training of the reasoner with TRL's ``GRPOTrainer`` (Seg-Zero's reinforcement learning stage).

The script only wires things together: prepared rows -> lazy GRPO view (:mod:`segzero.train.data`),
reward names -> TRL callables (:func:`segzero.rewards.make_trl_rewards`), TRL's config as given by the
recipe. How TRL's loss settings map to the paper's objective is written out in ``recipes/README.md``
and in the recipes themselves.
"""

from __future__ import annotations

from pathlib import Path

from segzero.train.config import TrainConfig
from segzero.train.data import dataset_frame, drop_long_prompts, grpo_dataset, load_rows
from segzero.train.run import (
    accept_saved_key_names,
    checkpoint_to_resume,
    load_processor,
    model_init_kwargs,
    save_final,
)


def build_rewards(script) -> list:
    """TRL reward callables in ``script.reward_funcs`` order; loads SAM2 only for ``mask_iou``."""
    from segzero.rewards import make_trl_rewards

    segmenter = None
    if "mask_iou" in script.reward_funcs:
        from accelerate import PartialState

        from segzero.segmenter import Segmenter

        # One frozen SAM2 per process, on that process's device.
        segmenter = Segmenter.from_pretrained(script.segmenter, device=str(PartialState().device))
    return make_trl_rewards(script.reward_funcs, segmenter=segmenter, mode=script.segmenter_mode)


def train_grpo(config: TrainConfig) -> Path:
    """Run (or continue) GRPO training; returns the ``output_dir/final`` folder of the trained reasoner."""
    from trl import GRPOTrainer, get_peft_config

    script, args, model_args = config
    resume_from = checkpoint_to_resume(args.output_dir, script.resume)

    data = load_rows(script)
    frame = dataset_frame(data, script.frame)
    processor = load_processor(model_args, args.trust_remote_code)
    data = drop_long_prompts(data, processor, script, frame)
    train_dataset = grpo_dataset(data, script.prompt, frame, with_masks="mask_iou" in script.reward_funcs)

    args.model_init_kwargs = model_init_kwargs(model_args, args.model_init_kwargs)
    # The lazy view hands TRL exactly the columns it and the rewards need; the Trainer's column
    # pruning would look at the stored columns instead and drop the ground truth.
    args.remove_unused_columns = False
    trainer = GRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=build_rewards(script),
        args=args,
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    accept_saved_key_names(trainer.accelerator.unwrap_model(trainer.model))
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_state()
    return save_final(trainer, model_args, frame=frame, prompt=script.prompt, method="grpo")
