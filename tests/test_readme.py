"""README.md stays true: its shell blocks run as a reader runs them, and its options are the commands' own.

Which blocks run is decided in the README itself: a fenced ``bash`` block right after the line
``<!-- readme: run -->`` runs in :func:`test_readme_blocks_run`; after ``<!-- readme: run slow -->`` (a block
that takes over 30 s on a 2-core CPU) it runs in :func:`test_readme_slow_blocks_run`, after the fast ones.
They run in README order in one temporary folder laid out like a clone (``recipes/`` linked, and a
``photo.jpg`` standing for the reader's own photo), each with ``bash -eu``, this environment's ``segzero``
first on ``PATH`` and the hub switched off, so nothing reaches the network.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = re.compile(r"<!-- readme: run( slow)? -->\s*\n```bash\n(.*?)```", re.S)


def marked_blocks(text: str) -> list[tuple[bool, str]]:
    """``(slow, script)`` of each block the README marks to run, in order."""
    return [(bool(slow), script) for slow, script in MARK.findall(text)]


def bash_blocks(text: str) -> list[str]:
    """Every fenced ``bash`` block of the README."""
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def run_blocks(blocks: list[str], folder: Path) -> None:
    """Run each script in ``folder`` as a reader would, failing with its output when one fails."""
    (folder / "recipes").symlink_to(ROOT / "recipes")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(folder / "photo.jpg")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    for script in blocks:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, f"README block failed (exit {proc.returncode}):\n{script}\n{proc.stdout}\n{proc.stderr}"


def test_the_readme_marks_blocks_to_run():
    blocks = marked_blocks(README.read_text(encoding="utf-8"))
    assert any(not slow for slow, _ in blocks) and any(slow for slow, _ in blocks)


@pytest.mark.slow
def test_readme_blocks_run(tmp_path):
    run_blocks([script for slow, script in marked_blocks(README.read_text(encoding="utf-8")) if not slow], tmp_path)
    assert (tmp_path / "tiny" / "reasoner" / "config.json").is_file()
    assert (tmp_path / "segzero-out" / "photo.overlay.png").is_file()


@pytest.mark.slow
def test_readme_slow_blocks_run(tmp_path):
    run_blocks([script for _, script in marked_blocks(README.read_text(encoding="utf-8"))], tmp_path)
    assert (tmp_path / "runs" / "tiny_cpu" / "final" / "segzero.json").is_file()
    assert (tmp_path / "runs" / "tiny_cpu" / "training_curves.png").is_file()


# --------------------------------------------------------------------------- options


def segzero_invocations(script: str) -> list[list[str]]:
    """The argument lists after ``segzero`` (or ``-m segzero.cli``) on each command line of a shell block."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for n, word in enumerate(words):
            if word == "segzero" or (word == "segzero.cli" and n and words[n - 1] == "-m"):
                calls.append(words[n + 1 :])
                break
    return calls


def command_options(args: list[str]) -> tuple[str, set[str]]:
    """The command ``args`` name (walking segzero's command groups) and every option it takes."""
    import typer

    from segzero.cli import app

    command = typer.main.get_command(app)
    path = []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        path.append(args[0])
        command = command.commands[args.pop(0)]
    options = {"--help"}
    for param in command.params:
        options.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return " ".join(path), options


def test_every_option_a_readme_command_shows_is_one_it_takes():
    unknown = []
    for script in bash_blocks(README.read_text(encoding="utf-8")):
        for args in segzero_invocations(script):
            name, options = command_options(list(args))
            for word in args:
                if word.startswith("--") and word.split("=")[0] not in options:
                    unknown.append(f"segzero {name} {word}")
    assert unknown == []


def test_the_readme_lists_exactly_the_pipeline_options():
    """The README's list of the model options is PipelineConfig's fields; each model command takes them all
    but the ones the README says it leaves out."""
    import dataclasses

    from segzero.config import PipelineConfig, option_name

    text = README.read_text(encoding="utf-8")
    section = text.split("Every command that runs models takes the same options", 1)[1].split("\n\n", 1)[0]
    bullets = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    listed = {o for b in bullets for o in re.findall(r"`(--[a-z-]+)`", re.split(r"[(:]", b, maxsplit=1)[0])}
    fields = {option_name(f) for f in dataclasses.fields(PipelineConfig)}
    assert listed == fields
    for command in ("segment", "batch", "eval", "serve"):
        _, options = command_options([command])
        missing = fields - options
        assert missing <= {"--batch-size"}, (command, missing)
        if missing:
            assert f"`{command}`" in section.split("--batch-size", 1)[1].split("\n", 1)[0], command
