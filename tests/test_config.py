"""The pipeline's settings are declared once (PipelineConfig) and everything else is built from them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from segzero.cli import app
from segzero.config import PipelineConfig, help_of
from segzero.errors import InputError

runner = CliRunner()


@pytest.mark.parametrize("command", ["segment", "batch", "eval", "serve"])
def test_every_model_command_offers_the_config_fields_with_their_help(command):
    out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
    skip = {"segment": {"batch_size"}, "serve": {"batch_size"}}.get(command, set())
    for f in dataclasses.fields(PipelineConfig):
        flag = "--" + f.name.replace("_", "-")
        assert (flag in out) is (f.name not in skip), flag
        if f.name not in skip:
            assert f.metadata["help"].split(".")[0][:40] in " ".join(out.split()), f.name


def test_model_settings_say_where_their_default_comes_from():
    frame = next(f for f in dataclasses.fields(PipelineConfig) if f.name == "frame")
    assert help_of(frame).endswith("Default: the reasoner's segzero.json, else 840.")
    prompt = next(f for f in dataclasses.fields(PipelineConfig) if f.name == "prompt")
    assert "One of: seg_zero, multi_object" in help_of(prompt)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"segmenter_mode": "mask"}, "--segmenter-mode 'mask' is not known; choose one of: both, box, points"),
        ({"prompt": "nope"}, "--prompt 'nope' is not known"),
        ({"batch_size": 0}, "--batch-size must be a number of at least 1, got 0"),
        ({"frame": -1}, "--frame must be a number of at least 1"),
    ],
)
def test_bad_settings_are_one_sentence(settings, message):
    with pytest.raises(InputError, match=message):
        PipelineConfig(**settings)


def test_a_bad_setting_on_the_command_line_is_exit_2_before_any_model_loads(tmp_path):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(image), "cup", "--segmenter-mode", "mask",
         "--reasoner", str(tmp_path / "no-such-model")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--segmenter-mode 'mask' is not known" in proc.stderr


def test_run_settings_are_the_ones_that_change_results():
    assert set(PipelineConfig().run_settings()) == {
        "reasoner", "segmenter", "protocol", "prompt", "segmenter_mode", "frame", "dtype", "max_new_tokens",
        "stop_runaway",
    }  # fmt: skip
