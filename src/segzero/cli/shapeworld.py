"""``segzero demo`` and ``segzero shapeworld train-models|eval``: the Seg-Zero loop in miniature, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segzero.cli.app import app, output_in_use
from segzero.defaults import REASONER_FRAME

shapeworld_app = typer.Typer(
    help="ShapeWorld: procedural scenes, and mini SAM2 + Qwen2.5-VL models trained on them on a CPU.",
    no_args_is_help=True,
)
app.add_typer(shapeworld_app, name="shapeworld")

Models = Annotated[
    Path | None,
    typer.Option(
        "--models", help="Folder with reasoner/ and segmenter/ (default: the models shipped in the package)."
    ),
]


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for demo.png.")] = Path("demo-output"),
    models: Models = None,
    seed: Annotated[int, typer.Option(help="Which test scene to ask about.")] = 7,
    family: Annotated[
        str, typer.Option(help="Request family of the demo scene: reasoning or referring.")
    ] = "reasoning",
    n_eval: Annotated[
        int, typer.Option("--n-eval", min=0, help="Held-out scenes per family to evaluate (0: none).")
    ] = 16,
) -> None:
    """Offline demo: a ShapeWorld scene, a reasoning request, the model's thinking and answer, the mask
    (written as an overlay PNG), then gIoU/cIoU of both request families on held-out scenes."""
    from segzero.shapeworld.demo import run_demo

    run_demo(out, models=models, seed=seed, family=family, n_eval=n_eval, log=typer.echo)


Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Change one setting, as YAML: --set warmup.steps=2 --set knowledge=null. Repeatable; "
        "`segzero shapeworld fields` lists them.",
    ),
]


@shapeworld_app.command("train-models")
def train_models(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained models and their data.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file: flat `key: value` YAML lines, read before --set"),
    ] = None,
    sets: Sets = None,
) -> None:
    """Reproduce the shipped ShapeWorld models: generate data, train SAM2, pretrain the reasoner's vision
    tower, warm it up on referring requests, teach it the reasoning family's knowledge, then GRPO through
    `segzero train grpo`; prints the time of each stage. Every setting is checked before the first stage."""
    from segzero.shapeworld.training.run import train_all
    from segzero.shapeworld.training.settings import read_settings

    train_all(out, read_settings(config, sets or []), log=typer.echo)


@shapeworld_app.command("fields")
def fields() -> None:
    """List the settings of `train-models` (defaults: the shipped models') and of `export`, with help."""
    from rich.console import Console
    from rich.table import Table

    from segzero.shapeworld.generator import RequestMix
    from segzero.shapeworld.training.settings import describe_settings

    for title, config in (("train-models --set", None), ("export --set", RequestMix())):
        table = Table("key", "default", "help", title=title, show_lines=False)
        for key, default, help_text in describe_settings(config):
            table.add_row(key, default, help_text)
        Console().print(table)


@shapeworld_app.command("eval")
def evaluate(
    models: Models = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Held-out test scenes per family.")] = 64,
) -> None:
    """gIoU / cIoU / share of masks with IoU >= 0.5 of a ShapeWorld model pair on held-out scenes of both
    request families."""
    from segzero.shapeworld.demo import EVAL_HEADER, eval_row, evaluate_family, load_pipeline
    from segzero.shapeworld.generator import FAMILIES

    pipe = load_pipeline(models)
    typer.echo(EVAL_HEADER)
    for family in FAMILIES:
        typer.echo(eval_row(family, evaluate_family(pipe, family, n)))


@shapeworld_app.command("models")
def models_folder() -> None:
    """Print the folder of the ShapeWorld models shipped in the package, which holds reasoner/ and segmenter/:
    SW=$(segzero shapeworld models), then --reasoner $SW/reasoner --segmenter $SW/segmenter."""
    from segzero.shapeworld.demo import shipped_models

    typer.echo(shipped_models()[0].parent)


@shapeworld_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (must not hold files yet).")],
    split: Annotated[str, typer.Option(help="train, val or test (disjoint seed ranges).")] = "train",
    n: Annotated[int, typer.Option("-n", min=1, help="Samples per family.")] = 1000,
    family: Annotated[
        str, typer.Option(help="referring, reasoning, or both (comma-separated).")
    ] = "referring",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="prepared (the `segzero prepare` dataset, for training and eval) or reasonseg "
            "(LISA's folder layout, for `segzero eval --benchmark reasonseg`).",
        ),
    ] = "prepared",
    frame: Annotated[int, typer.Option(min=1, help="Reasoner frame of the prepared prompts.")] = REASONER_FRAME,
    answer_form: Annotated[
        str | None,
        typer.Option(
            "--answer-form",
            help="prepared format: the form of the solution column (single, multi, ...); default: single "
            "for one target, a list for none or several.",
        ),
    ] = None,
    like_reasonseg: Annotated[
        bool,
        typer.Option(
            "--like-reasonseg",
            help="reasonseg format: images that are not square and ignore regions around half the targets, "
            "as ReasonSeg has, so every difference between `segzero eval --protocol segzero|reference` shows.",
        ),
    ] = False,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="A request setting, as YAML: --set no_target_share=0.2 --set multi_target_share=0.3 "
            "(requests that match no shape, several shapes). Repeatable; `segzero shapeworld fields` "
            "lists them.",
        ),
    ] = None,
) -> None:
    """Write ShapeWorld samples as a dataset the other commands read: `segzero train`, `segzero eval`."""
    from dataclasses import asdict

    from segzero.data.prepared import ANSWER_FORMS
    from segzero.errors import InputError
    from segzero.shapeworld import generator
    from segzero.shapeworld.generator import FAMILIES, export_prepared, export_reasonseg_folder, make_split
    from segzero.shapeworld.training.settings import read_export_settings

    families = [f.strip() for f in family.split(",") if f.strip()]
    if not families or any(f not in FAMILIES for f in families):
        raise InputError(f"Unknown family {family!r}; choose from {', '.join(FAMILIES)} (comma-separated).")
    if fmt not in ("prepared", "reasonseg"):
        raise InputError(f"Unknown format {fmt!r}; choose prepared or reasonseg.")
    if like_reasonseg and fmt != "reasonseg":
        raise InputError("--like-reasonseg shapes a ReasonSeg folder; give it with --format reasonseg.")
    mix = read_export_settings(sets or [])
    if answer_form is not None:
        if fmt != "prepared":
            raise InputError(
                "--answer-form sets the prepared format's solutions; give it with --format prepared."
            )
        if answer_form not in ANSWER_FORMS:
            raise InputError(f"Unknown answer form {answer_form!r}; choose from {', '.join(ANSWER_FORMS)}.")
        if answer_form == "single" and (mix.no_target_share or mix.multi_target_share):
            raise InputError("single answers name one object; with no_target_share or multi_target_share "
                             "choose an answer form that holds a list.")
    if fmt == "reasonseg" and mix.no_target_share:
        raise InputError("ReasonSeg folders hold no target-free requests; export no_target_share with "
                         "--format prepared.")
    if output_in_use(out):
        raise InputError(f"{out} already holds files; choose an empty or new folder.")
    samples = [s for f in families for s in make_split(split, n, f, **asdict(mix))]
    if like_reasonseg:
        samples = [generator.like_reasonseg(s) for s in samples]
    if fmt == "reasonseg":
        export_reasonseg_folder(samples, out / split)
        typer.echo(
            f"wrote {len(samples)} samples to {out / split} (read it with --data {out} --split {split})"
        )
        return
    kept, skipped = export_prepared(samples, out, frame, answer_form)
    typer.echo(f"wrote {kept} samples of split {split} to {out} (prepared, frame {frame})")
    if skipped:
        ids = ", ".join(s.id for s in skipped[:10])
        typer.echo(f"skipped {len(skipped)} samples whose mask gives no box and points: {ids}")
