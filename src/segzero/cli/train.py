"""``segzero train grpo|sft|fields`` and ``segzero plot-training``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segzero.cli.app import app

train_app = typer.Typer(
    help="Train the reasoner from a recipe: GRPO (Seg-Zero) or the SFT baseline, on TRL.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

Config = Annotated[
    Path, typer.Option("--config", "-c", help="Recipe: a flat YAML file, e.g. recipes/seg_zero_3b.yaml.")
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override one recipe key, as YAML: --set learning_rate=1e-6 --set report_to=wandb. Repeatable.",
    ),
]
OutputDir = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run folder (overrides output_dir).")]
Resume = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="auto (continue from the newest checkpoint-* in output_dir, the default), never, or a checkpoint folder.",
    ),
]


def _run(kind: str, config: Path, sets: list[str] | None, output_dir: Path | None, resume: str | None) -> None:
    from segzero.train import train
    from segzero.train.config import load_config, parse_overrides

    overrides = parse_overrides(sets or [])
    if output_dir is not None:
        overrides["output_dir"] = str(output_dir)
    if resume is not None:
        overrides["resume"] = resume
    loaded = load_config(kind, config, overrides)
    final = train(kind, loaded)
    from accelerate import PartialState

    if PartialState().is_main_process:  # under a launcher every rank gets here; one says it
        Console(stderr=True).print(f"Trained reasoner saved to {final}", highlight=False)


@train_app.command("grpo")
def grpo(config: Config, sets: Sets = None, output_dir: OutputDir = None, resume: Resume = None) -> None:
    """GRPO with the format and accuracy rewards (Seg-Zero's RL stage).

    Multi-GPU: accelerate launch --config_file recipes/accelerate/zero3.yaml -m segzero.cli train grpo --config ...
    """
    _run("grpo", config, sets, output_dir, resume)


@train_app.command("sft")
def sft(config: Config, sets: Sets = None, output_dir: OutputDir = None, resume: Resume = None) -> None:
    """Supervised fine-tuning on the ground-truth answers (the paper's SFT baseline)."""
    _run("sft", config, sets, output_dir, resume)


@train_app.command("fields")
def fields(
    kind: Annotated[str, typer.Argument(help="grpo or sft.")] = "grpo",
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list every transformers.TrainingArguments field.")
    ] = False,
) -> None:
    """List the recipe keys of a training kind with their defaults and help text."""
    from rich.table import Table

    from segzero.train.config import describe_fields

    table = Table("key", "from", "default", "help", show_lines=False)
    for name, owner, default, help_text in describe_fields(kind, include_inherited=show_all):
        table.add_row(name, owner, repr(default), help_text)
    Console().print(table)


@app.command("plot-training")
def plot_training_command(
    run_dir: Annotated[Path, typer.Argument(help="A training output_dir (or its trainer_state.json).")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write (default RUN_DIR/training_curves.png).")] = None,
    smooth: Annotated[float, typer.Option(help="Exponential smoothing in [0, 1), as TensorBoard's.")] = 0.0,
) -> None:
    """Draw a run's rewards, completion length and KL over steps (the paper's Figures 7 and 8)."""
    from segzero.train.plot import plot_training

    path = plot_training(run_dir, out, smooth)
    Console().print(f"Curves written to {path}", highlight=False)
