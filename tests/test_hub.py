"""segzero.hub: the segzero.json saved beside a reasoner, and how the pipeline and CLI use it. No model runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segzero import pipeline as P
from segzero import reasoner as R
from segzero.errors import InputError, ModelLoadError
from segzero.hub import MODEL_META, read_model_meta, write_model_meta


def test_write_then_read_gives_frame_prompt_and_notes(tmp_path):
    path = write_model_meta(tmp_path, frame=448, prompt="no_think", method="grpo", base_model="Qwen/x")
    assert path == tmp_path / MODEL_META == tmp_path / "segzero.json"
    assert json.loads(path.read_text()) == {
        "reasoner_frame": 448,
        "prompt": "no_think",
        "method": "grpo",
        "base_model": "Qwen/x",
    }
    assert read_model_meta(tmp_path) == {
        "reasoner_frame": 448,
        "prompt": "no_think",
        "coordinates": None,
        "method": "grpo",
        "base_model": "Qwen/x",
    }
    assert read_model_meta(str(tmp_path))["prompt"] == "no_think"


def test_unknown_settings_are_none(tmp_path, monkeypatch):
    nothing = {"reasoner_frame": None, "prompt": None, "coordinates": None}
    assert read_model_meta(tmp_path) == nothing  # a folder without the file
    assert read_model_meta(tmp_path / "missing") == nothing
    # A hub id is not looked up: nothing reaches the network (and no file of that name exists here).
    monkeypatch.chdir(tmp_path)
    assert read_model_meta("Ricky06662/Seg-Zero-7B") == nothing
    # A file from before prompts were recorded (the ShapeWorld warm-up's form): the frame alone.
    (tmp_path / MODEL_META).write_text('{"reasoner_frame": 224}')
    assert read_model_meta(tmp_path) == {"reasoner_frame": 224, "prompt": None, "coordinates": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[224]", "JSON object"),
        ('{"reasoner_frame": "224"}', "positive integer"),
        ('{"reasoner_frame": 0}', "positive integer"),
        ('{"reasoner_frame": true}', "positive integer"),
        ('{"reasoner_frame": 840, "prompt": "nope"}', "prompt 'nope'.*seg_zero"),
        ('{"coordinates": "normalised"}', "coordinates 'normalised'.*pixels, relative"),
    ],
)
def test_a_malformed_file_is_one_clear_error(tmp_path, text, message):
    (tmp_path / MODEL_META).write_text(text)
    with pytest.raises(ModelLoadError, match=message):
        read_model_meta(tmp_path)


# --------------------------------------------------------------------------- the pipeline's defaults


class _Loaded:
    """Stands for a loaded model: records what ``from_pretrained`` was given."""

    def __init__(self, name, frame=None, coordinates=None, **kwargs):
        self.name, self.frame, self.coordinates, self.kwargs = name, frame, coordinates or "pixels", kwargs


@pytest.fixture
def no_models(monkeypatch):
    def reasoner(name, *, device=None, dtype=None, frame, coordinates=None):
        return _Loaded(name, frame, coordinates)

    def segmenter(name, *, device=None, dtype=None, reference=False):
        return _Loaded(name)

    monkeypatch.setattr(R.Reasoner, "from_pretrained", staticmethod(reasoner))
    monkeypatch.setattr(P.Segmenter, "from_pretrained", staticmethod(segmenter))
    monkeypatch.setattr(P, "check_hub_ids", lambda **models: None)  # the names stand for models, not hub ids


def test_from_pretrained_runs_a_model_with_its_saved_frame_and_prompt(tmp_path, no_models):
    write_model_meta(tmp_path, frame=448, prompt="no_think", method="sft")
    pipe = P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam")
    assert pipe.prompt == "no_think" and pipe.frame == 448
    # Explicit arguments win.
    pipe = P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam", prompt="seg_zero", frame=840)
    assert pipe.prompt == "seg_zero" and pipe.frame == 840
    # Other options still pass through.
    assert P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam", batch_size=3).batch_size == 3


def test_from_pretrained_defaults_without_a_saved_file(tmp_path, no_models):
    pipe = P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam")
    assert pipe.prompt == "seg_zero" and pipe.frame == 840
    with pytest.raises(InputError, match="--prompt 'nope' is not known"):
        P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam", prompt="nope")
    with pytest.raises(InputError, match="Unknown pipeline setting 'frames'"):
        P.ReasoningSegmenter.from_pretrained(str(tmp_path), "sam", frames=840)


def test_cli_model_options_leave_the_prompt_to_the_model(tmp_path, no_models):
    from segzero.cli.options import load_pipeline
    from segzero.config import PipelineConfig

    write_model_meta(tmp_path, frame=224, prompt="box_only")
    assert load_pipeline(PipelineConfig(reasoner=str(tmp_path), segmenter="sam")).prompt == "box_only"
    explicit = PipelineConfig(reasoner=str(tmp_path), segmenter="sam", prompt="seg_zero")
    assert load_pipeline(explicit).prompt == "seg_zero"


def test_the_model_default_rule_lives_in_one_function(tmp_path):
    from segzero.config import PipelineConfig, model_settings

    # A folder without config.json: its family, and so its coordinate convention, is not known yet.
    assert model_settings(str(tmp_path)) == {"prompt": "seg_zero", "frame": 840, "coordinates": None}
    write_model_meta(tmp_path, frame=224, prompt="box_only")
    assert model_settings(str(tmp_path)) == {"prompt": "box_only", "frame": 224, "coordinates": None}
    given = PipelineConfig(reasoner=str(tmp_path), frame=112)
    assert model_settings(str(tmp_path), given) == {"prompt": "box_only", "frame": 112, "coordinates": None}
    assert given.resolved().frame == 112 and given.resolved().prompt == "box_only"


def test_eval_config_records_the_prompt_the_model_runs_with(tmp_path):
    from segzero.evaluation.benchmarks import BenchmarkSpec
    from segzero.evaluation.runner import make_config

    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    (data / "val" / "a.json").write_text("{}")
    spec = BenchmarkSpec("reasonseg", "val", data)
    model = tmp_path / "model"
    model.mkdir()
    from segzero.config import PipelineConfig

    def recorded(**settings):
        return make_config(spec, PipelineConfig(reasoner=str(model), **settings)).pipeline

    assert recorded()["prompt"] == "seg_zero" and recorded()["frame"] == 840
    write_model_meta(model, frame=224, prompt="no_think")
    assert recorded()["prompt"] == "no_think" and recorded()["frame"] == 224
    assert recorded(prompt="seg_zero")["prompt"] == "seg_zero"


# --------------------------------------------------------------------------- no model hub

def _no_hub_env(tmp_path, port: int) -> dict[str, str]:
    """The environment of a machine whose hub endpoint refuses connections, with its own empty cache."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=f"http://127.0.0.1:{port}")
    return env


@pytest.fixture
def closed_port():
    """A local port nothing listens on: connecting to it is refused at once, as with no network."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_fails_in_seconds_and_says_to_pass_a_folder(tmp_path, closed_port):
    import subprocess
    import sys
    import time

    from PIL import Image

    Image.new("RGB", (32, 24), (200, 100, 50)).save(tmp_path / "photo.png")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "photo.png"), "the cup",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=_no_hub_env(tmp_path, closed_port),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"the model hub (http://127.0.0.1:{closed_port}) does not answer" in message
    assert "--reasoner DIR" in message and "hf download Ricky06662/Seg-Zero-7B" in message
    # The hub library's retries (minutes of them) never start; the imports take the rest.
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < 90, seconds


def test_offline_mode_names_itself_and_checks_every_model_before_loading_any(tmp_path, monkeypatch, tiny_models):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    loaded = []
    monkeypatch.setattr(P, "load_reasoner", lambda *a, **k: loaded.append(a))
    # The reasoner is a folder that would load; the segmenter, a hub id, is refused before it loads.
    with pytest.raises(ModelLoadError, match=r"segmenter 'facebook/sam2.1-hiera-large': HF_HUB_OFFLINE is set.*"
                                             r"--segmenter DIR"):
        P.ReasoningSegmenter.from_pretrained(str(tiny_models.reasoner), "facebook/sam2.1-hiera-large")
    assert loaded == []


def test_a_hub_that_does_not_answer_switches_the_hub_library_offline(monkeypatch, closed_port):
    from huggingface_hub import constants

    from segzero.hub import check_hub_id, hub_offline

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert hub_offline() == f"the model hub (http://127.0.0.1:{closed_port}) does not answer from this machine"
    with pytest.raises(ModelLoadError, match="does not answer from this machine, and no copy of it is in the local"):
        check_hub_id("segzero-test/never-downloaded", "reasoner")
    # From here on the hub library looks in its cache alone, as HF_HUB_OFFLINE=1 makes it.
    assert constants.HF_HUB_OFFLINE is True


def test_a_cached_hub_id_loads_without_the_hub(tmp_path, monkeypatch, tiny_models):
    """A model in the hub cache's own layout (refs/main -> snapshots/COMMIT) loads by its id with no hub."""
    import shutil

    from huggingface_hub import constants

    commit = "0" * 40
    for what, folder in (("reasoner", tiny_models.reasoner), ("segmenter", tiny_models.segmenter)):
        repo = tmp_path / f"models--segzero-test--tiny-{what}"
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    pipe = P.ReasoningSegmenter.from_pretrained(
        "segzero-test/tiny-reasoner", "segzero-test/tiny-segmenter", frame=tiny_models.frame, device="cpu",
        max_new_tokens=4,
    )  # fmt: skip
    assert pipe.segment(np.zeros((24, 32, 3), np.uint8), "the cup").mask.shape == (24, 32)
