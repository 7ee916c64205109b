"""segzero.hub: the segzero.json saved beside a reasoner, and how the pipeline and CLI use it. No model runs."""

from __future__ import annotations

import json

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
