"""The whole run: every stage in order, from nothing to the shipped models (``segzero shapeworld
train-models``).

:class:`ShapeWorldTrainConfig` holds one config per stage and what joins them; its defaults are the
shipped models' configuration. :func:`train_all` checks all of it (the GRPO recipe included) before
the first stage, so a bad setting fails at once rather than hours into the run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from segzero.errors import InputError
from segzero.shapeworld.training.common import Log, print_log
from segzero.shapeworld.training.examples import (
    KNOWLEDGE_TEMPLATES,
    KNOWLEDGE_THINKING,
    THINKING,
    knowledge_examples,
    warmup_examples,
)
from segzero.shapeworld.training.grpo import grpo_requests_read, prepare_grpo_data, run_grpo
from segzero.shapeworld.training.reasoner import ReasonerBuildConfig, build_shapeworld_reasoner
from segzero.shapeworld.training.segmenter import SegmenterTrainConfig, train_segmenter
from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop
from segzero.shapeworld.training.tower import TowerPretrainConfig, pretrain_tower

#: What ``stages`` may name: the segmenter, and the reasoner (build, tower, warm-up, knowledge, GRPO).
STAGES = ("segmenter", "reasoner")


def _shipped_reasoner() -> ReasonerBuildConfig:
    # Rotary: theta 1e4 with no time bands, 2 row bands and 14 column bands, so that one column step
    # turns some bands visibly (the released 1e6 and [4, 6, 6] hardly turn them in a 32-wide head) and
    # slow bands remain for reading the request across the sequence. The vision tower is 4 x 128, the
    # size its dense pretraining was tuned at.
    return ReasonerBuildConfig(
        frame=112,
        hidden_size=128,
        num_heads=4,
        vision_depth=4,
        vision_hidden=128,
        vision_heads=4,
        rope_theta=1e4,
        mrope_section=(0, 2, 14),
    )


@dataclass
class ShapeWorldTrainConfig:
    """Everything ``segzero shapeworld train-models`` does, stage by stage; the defaults reproduce the
    shipped models. ``segzero shapeworld fields`` lists every field with its default and help."""

    stages: tuple[str, ...] = field(
        default=STAGES,
        metadata={
            "help": "What to train, of " + ", ".join(STAGES) + " (the reasoner: build, tower, warm-up, "
            "knowledge stage, GRPO)."
        },
    )
    device: str | None = field(
        default=None,
        metadata={
            "help": "cpu or cuda for every stage, GRPO included (use_cpu=false); null leaves each stage's "
            "own device."
        },
    )
    segmenter: SegmenterTrainConfig = field(
        default_factory=SegmenterTrainConfig, metadata={"help": "The mini SAM2's build and training."}
    )
    reasoner: ReasonerBuildConfig = field(
        default_factory=_shipped_reasoner, metadata={"help": "The reasoner's size and tokenizer."}
    )
    tower: TowerPretrainConfig | None = field(
        default_factory=TowerPretrainConfig,
        metadata={"help": "Dense pretraining of the vision tower before the warm-up; null skips it."},
    )
    warmup_thinking: str = field(
        default="scene-echo",
        metadata={
            "help": "The warm-up target's thinking (" + ", ".join(THINKING) + "): scene-echo lists the scene "
            "and repeats the request before the choice, so the language model reads it there."
        },
    )
    warmup_samples: int = field(default=8000, metadata={"help": "Referring training samples of the warm-up."})
    warmup_n_shapes: tuple[int, int] = field(
        default=(1, 4),
        metadata={
            "help": "Least and most shapes of the warm-up's scenes (one-shape scenes teach where "
            "before which)."
        },
    )
    warmup: SFTLoopConfig = field(
        # The pretrained tower stays fixed: the language model learns to read it.
        default_factory=lambda: SFTLoopConfig(steps=7000, vision_lr_scale=0.0),
        metadata={"help": "The warm-up's supervised loop, on referring requests."},
    )
    knowledge: SFTLoopConfig | None = field(
        default_factory=lambda: SFTLoopConfig(steps=4000, lr=5e-4, vision_lr_scale=0.0),
        metadata={
            "help": "A second supervised stage after the warm-up, on referring and reasoning requests with "
            "their reasoning written out: the toy's stand-in for the world knowledge a pretrained "
            "language model brings (which shapes roll, what colour a lemon is); null skips it."
        },
    )
    knowledge_templates: tuple[str, ...] = field(
        default=KNOWLEDGE_TEMPLATES,
        metadata={
            "help": "The reasoning templates the knowledge stage teaches; the rest stay out of domain."
        },
    )
    knowledge_mix: tuple[int, int] = field(
        default=(2, 3),
        metadata={
            "help": "Of every sum(knowledge_mix) knowledge examples, this many referring, then reasoning."
        },
    )
    knowledge_samples: tuple[int, int] = field(
        default=(8000, 12000), metadata={"help": "Referring and reasoning samples of the knowledge stage."}
    )
    grpo_recipe: str = field(
        default="recipes/shapeworld_grpo.yaml",
        metadata={
            "help": "The GRPO recipe, run through `segzero train grpo` (the real training entry point)."
        },
    )
    grpo_samples: int | None = field(
        default=None,
        metadata={
            "help": "Referring training samples of the GRPO data (disjoint from the warm-up's); null: what "
            "the recipe's steps read, each once."
        },
    )
    grpo_overrides: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra key=value settings of the GRPO recipe, e.g. [max_steps=4] for a quick run."},
    )

    @property
    def final_thinking(self) -> str:
        """The thinking of the last supervised stage: the form the checkpoint GRPO starts from writes."""
        return KNOWLEDGE_THINKING if self.knowledge is not None else self.warmup_thinking

    def check(self) -> None:
        """Raise :class:`InputError` for a setting no run can use (the GRPO recipe: :func:`train_all`)."""
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise InputError(
                f"Unknown stage(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(STAGES)}."
            )
        if self.warmup_thinking not in THINKING:
            raise InputError(f"warmup_thinking must be one of {THINKING}, got {self.warmup_thinking!r}")
        self.segmenter.check("segmenter")
        self.warmup.check("warmup")
        for name in ("tower", "knowledge"):
            stage = getattr(self, name)
            if stage is not None:
                stage.check(name)

    def on_device(self) -> ShapeWorldTrainConfig:
        """A copy with :attr:`device` set in every stage's config (itself when ``device`` is null)."""
        if self.device is None:
            return self

        def moved(stage: Any) -> Any:
            return None if stage is None else replace(stage, device=self.device)

        return replace(
            self,
            segmenter=moved(self.segmenter),
            tower=moved(self.tower),
            warmup=moved(self.warmup),
            knowledge=moved(self.knowledge),
        )


def train_all(
    out_dir: str | Path, config: ShapeWorldTrainConfig | None = None, *, log: Log = print_log
) -> dict[str, float]:
    """Reproduce the ShapeWorld models end to end into ``out_dir``; returns seconds per stage.

    Writes ``segmenter/``, ``reasoner-init/`` (random), ``reasoner-tower/`` (after the tower's
    pretraining, when ``config.tower`` is set), ``reasoner-referring/`` (after the referring warm-up, when
    ``config.knowledge`` is set), ``reasoner-warmup/`` (after the supervised stages: the one GRPO starts from),
    ``reasoner/`` (after GRPO), the GRPO run in ``grpo/`` and its data in ``data/grpo``, and
    ``timings.json``.
    """
    config = (config or ShapeWorldTrainConfig()).on_device()
    config.check()
    # Made (lazily, so at no cost) and so checked before any stage runs.
    examples = warmup_examples(config)
    knowledge_set = knowledge_examples(config) if config.knowledge is not None else None
    out = Path(out_dir)
    warm, grpo_data, grpo_run = out / "reasoner-warmup", out / "data" / "grpo", out / "grpo"
    grpo_overrides = list(config.grpo_overrides)
    if config.device not in (None, "cpu"):
        grpo_overrides.append("use_cpu=false")
    if "reasoner" in config.stages:
        # Read (and checked) first, so a recipe GRPO would refuse fails before hours of the other stages.
        read_with = [f"model_name_or_path={warm}", f"dataset_path={grpo_data}", f"output_dir={grpo_run}"]
        n_grpo = config.grpo_samples or grpo_requests_read(config.grpo_recipe, read_with + grpo_overrides)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[{name}]")
        t = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - t
        log(f"[{name}] done in {timings[name]:.0f}s")
        return value

    if "segmenter" in config.stages:
        stage("segmenter", lambda: train_segmenter(out / "segmenter", config.segmenter, log=log))
    if "reasoner" in config.stages:
        frame = config.reasoner.frame
        start = stage(
            "reasoner-build", lambda: build_shapeworld_reasoner(out / "reasoner-init", config.reasoner)
        )
        if config.tower is not None:
            tower = config.tower
            start = stage("tower", lambda: pretrain_tower(start, out / "reasoner-tower", tower, log=log))[
                "out"
            ]
        knowledge = config.knowledge
        referring_warm = out / "reasoner-referring" if knowledge is not None else warm
        # The examples are made as the warm-up reads them (a few ms each), so their time is part of its.
        stage("warmup-sft", lambda: sft_loop(start, examples, referring_warm, config.warmup, log=log))
        if knowledge is not None:
            stage("knowledge-sft", lambda: sft_loop(referring_warm, knowledge_set, warm, knowledge, log=log))
        stage("grpo-data", lambda: prepare_grpo_data(grpo_data, n_grpo, frame))
        if grpo_run.exists():
            shutil.rmtree(grpo_run)
        final = stage(
            "grpo", lambda: run_grpo(config.grpo_recipe, warm, grpo_data, grpo_run, grpo_overrides, log=log)
        )
        if (out / "reasoner").exists():
            shutil.rmtree(out / "reasoner")
        shutil.copytree(final, out / "reasoner", ignore=shutil.ignore_patterns("training_args.bin"))
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    log("Stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return timings
