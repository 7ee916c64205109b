"""Stage 6: GRPO of the warmed-up reasoner through ``segzero train grpo``, the project's real training entry
point, with ``recipes/shapeworld_grpo.yaml``.

The data are a prepared dataset of ShapeWorld training requests (:func:`prepare_grpo_data`), sized to
what the recipe's steps read (:func:`grpo_requests_read`), so each request is read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segzero.errors import InputError
from segzero.shapeworld.training.common import GRPO_SEED_OFFSET, Log, print_log


def grpo_requests_read(recipe: str | Path, overrides: Sequence[str] = ()) -> int:
    """How many requests a single-process GRPO run of ``recipe`` (with ``overrides``) reads:
    ``max_steps`` x completions per step / ``num_generations``.

    The recipe is read and checked as ``segzero train grpo`` reads it
    (:func:`segzero.train.config.load_config`), so a recipe that run would refuse fails here too.
    """
    from segzero.train.config import load_config

    training = load_config("grpo", recipe, list(overrides)).training
    if training.max_steps <= 0:
        raise InputError(f"The GRPO recipe {recipe} must set max_steps (> 0) to size its data.")
    per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps
    return training.max_steps * per_step // training.num_generations


def prepare_grpo_data(
    path: str | Path, n: int, frame: int, family: str = "referring", templates: Sequence[str] = ()
) -> Path:
    """Write ``n`` training samples of ``family`` as a prepared dataset (prompts in the reasoner ``frame``).

    With ``templates`` sample ``i`` uses ``templates[i % len(templates)]``; otherwise each draws its own.
    """
    import shutil

    from segzero.data.prepared import save_prepared
    from segzero.shapeworld.generator import make_split

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    samples = make_split("train", n, family, seed_offset=GRPO_SEED_OFFSET, templates=templates)
    save_prepared(samples, path, frame=frame)
    return path


def run_grpo(
    recipe: str | Path,
    model: str | Path,
    dataset: str | Path,
    output_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    log: Log = print_log,
) -> Path:
    """Run ``segzero train grpo --config RECIPE`` in a child process; return the trained ``final`` folder.

    A child process keeps the trainer's memory and threads apart from the caller's, and runs exactly
    what a user types.
    """
    import subprocess
    import sys

    if not Path(recipe).is_file():
        raise FileNotFoundError(
            f"the GRPO recipe {recipe} does not exist (run from the repository root, or set grpo_recipe)"
        )
    # The `segzero` entry point with the training commands registered (they need TRL, an extra).
    entry = "from segzero.cli import main, train; main()"
    command = [
        sys.executable,
        "-c",
        entry,
        "train",
        "grpo",
        "--config",
        str(recipe),
        "--set",
        f"model_name_or_path={model}",
        "--set",
        f"dataset_path={dataset}",
        "--output-dir",
        str(output_dir),
        "--resume",
        "never",
    ]
    for item in overrides:
        command += ["--set", item]
    log("  $ segzero " + " ".join(command[3:]))
    subprocess.run(command, check=True)
    return Path(output_dir) / "final"
