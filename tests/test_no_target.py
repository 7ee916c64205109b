""""Nothing matches" from the model's answer to every way a user sees it: the pipeline's result, the CLI's
files and output, the server's response. A tiny reasoner is taught, by real gradient steps, to answer the
empty list whatever it is asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.answer import ParseStatus
from segzero.masks import decode_rle

#: 56 px is 2x2 image tokens for the tiny Qwen2.5-VL: teaching takes seconds.
FRAME = 56
NOTHING = "<think>there is none</think><answer>[]</answer>"


@pytest.fixture(scope="module")
def nothing_models(tmp_path_factory):
    """Tiny models whose reasoner answers :data:`NOTHING` to every request."""
    from segzero.tiny import make_tiny, teach

    models = make_tiny(tmp_path_factory.mktemp("nothing-models"), seed=1, frame=FRAME)
    teach(models.reasoner, NOTHING, FRAME)
    return models


@pytest.fixture(scope="module")
def nothing_pipe(nothing_models):
    from segzero.pipeline import ReasoningSegmenter

    return ReasoningSegmenter.from_pretrained(
        str(nothing_models.reasoner), str(nothing_models.segmenter), device="cpu", frame=FRAME,
        prompt="generalized", max_new_tokens=32,
    )  # fmt: skip


def _photo(w=90, h=70, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _spy_on(segmenter, monkeypatch) -> list:
    """Record the entries each ``segment_many`` call gets, and let it run."""
    calls: list = []
    real = segmenter.segment_many

    def spy(images, prompts, mode="both"):
        calls.append([len(p) for p in prompts])
        return real(images, prompts, mode)

    monkeypatch.setattr(segmenter, "segment_many", spy)
    return calls


def test_answers_without_objects_never_reach_the_segmenter(tiny_models, monkeypatch):
    from segzero.frames import Frame
    from segzero.pipeline import segment_answers
    from segzero.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(str(tiny_models.segmenter), device="cpu")
    calls = _spy_on(segmenter, monkeypatch)
    a, b = _photo(), _photo(40, 30, seed=1)
    completions = [NOTHING, "I cannot tell", '<answer>[{"bbox_2d": [5,5,40,40], "point_2d": [20,20]}]</answer>']
    answers, objects, outputs = segment_answers(segmenter, [a, b, a], completions, Frame.reasoner(FRAME), "both", "segzero")
    assert [x.status for x in answers] == [ParseStatus.NO_TARGET, ParseStatus.NO_ANSWER, ParseStatus.OK]
    assert [len(o) for o in objects] == [0, 0, 1]
    assert calls == [[1]]  # only the answer with an object
    assert [o.mask.shape for o in outputs] == [(70, 90), (30, 40), (70, 90)]
    assert not outputs[0].mask.any() and outputs[0].score is None and outputs[1].score is None
    assert outputs[2].score is not None

    calls.clear()
    answers, _, outputs = segment_answers(segmenter, [a, b], [NOTHING, NOTHING], Frame.reasoner(FRAME), "both", "segzero")
    assert calls == [] and all(x.ok for x in answers)  # nothing to segment: no call at all
    assert [o.mask.shape for o in outputs] == [(70, 90), (30, 40)] and not any(o.mask.any() for o in outputs)


def test_the_result_says_nothing_matches_with_an_empty_mask(nothing_pipe, monkeypatch):
    calls = _spy_on(nothing_pipe.segmenter, monkeypatch)
    result = nothing_pipe.segment(_photo(), "the dog")
    assert result.completion == NOTHING
    assert result.status is ParseStatus.NO_TARGET and result.no_target and result.answer.ok
    assert (result.reason, result.objects, result.score, result.error) == ("", [], None, None)
    assert result.mask.shape == (70, 90) and result.mask.dtype == bool and not result.mask.any()
    assert calls == []
    data = result.to_json()
    assert (data["status"], data["no_target"], data["objects"], data["mask_area"]) == ("no_target", True, [], 0)
    assert decode_rle(data["mask_rle"]).shape == (70, 90)


def _cli_models(m) -> list[str]:
    return ["--reasoner", str(m.reasoner), "--segmenter", str(m.segmenter), "--frame", str(FRAME),
            "--max-new-tokens", "32", "--device", "cpu", "--prompt", "generalized"]  # fmt: skip


def test_segment_and_batch_commands_say_nothing_matches(nothing_models, tmp_path):
    from segzero.cli.app import app

    photo = tmp_path / "kitchen.png"
    _photo().save(photo)
    args = ["segment", str(photo), "the dog", "-o", str(tmp_path / "one"), *_cli_models(nothing_models)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Nothing matches: nothing in the image matches the request" in " ".join(res.output.split())
    data = json.loads((tmp_path / "one" / "kitchen.json").read_text())
    assert (data["status"], data["no_target"], data["reason"]) == ("no_target", True, "")
    mask = np.asarray(Image.open(tmp_path / "one" / "kitchen.mask.png"))
    assert mask.shape == (70, 90) and not mask.any()

    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text(json.dumps({"image": "kitchen.png", "request": "the dog", "id": "dog"}) + "\n")
    res = CliRunner().invoke(app, ["batch", str(jsonl), "-o", str(tmp_path / "many"), *_cli_models(nothing_models)])
    assert res.exit_code == 0, res.output
    assert "1 segmented (1 where nothing matches, 0 without a usable answer)" in " ".join(res.output.split())
    (line,) = (tmp_path / "many" / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["id"] == "dog" and json.loads(line)["no_target"] is True


def test_the_server_answers_nothing_matches_not_an_error(nothing_pipe):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient

    from segzero.serve import ServeSettings, create_app

    buffer = io.BytesIO()
    _photo(64, 48).save(buffer, format="PNG")
    with TestClient(create_app(nothing_pipe, ServeSettings(max_wait_ms=5))) as client:
        response = client.post(
            "/v1/segment", files={"image": ("i.png", buffer.getvalue(), "image/png")},
            data={"request": "the dog", "overlay": "true"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["no_target"], body["reason"], body["objects"]) == ("no_target", True, "", [])
    assert body["mask_area"] == 0 and body["mask_rle"]["size"] == [48, 64]
    assert not decode_rle(body["mask_rle"]).any() and body["overlay_png_base64"]


@pytest.mark.slow
def test_grpo_trains_the_generalized_form_and_scores_target_free_prompts(nothing_models, tmp_path, monkeypatch):
    """The generalized recipe on the taught reasoner (it answers [] to everything): the rewards TRL calls see
    the target-free rows the share asks for, and give [] the full accuracy there and nothing elsewhere."""
    from segzero import rewards as R
    from segzero.answer import parse_answer
    from segzero.train import grpo
    from tests.test_train_cli import RECIPES, history, run_cli
    from tests.test_train_data import make_generalized_prepared

    data = make_generalized_prepared(tmp_path / "data", n=6, n_free=2)
    seen: list[tuple[str, str, list, float]] = []
    build = grpo.build_rewards

    def recording(script):
        def record(fn):
            def call(prompts=None, completions=(), **columns):
                out = fn(prompts, completions, **columns)
                texts = [R.completion_text(c) for c in completions]
                seen.extend(zip([fn.__name__] * len(out), texts, columns["reasoner_boxes"], out))
                return out

            call.__name__ = fn.__name__
            return call

        return [record(fn) for fn in build(script)]

    monkeypatch.setattr(grpo, "build_rewards", recording)
    run = tmp_path / "run"
    run_cli(
        "train", "grpo", "--config", str(RECIPES / "generalized_tiny_cpu.yaml"), "--output-dir", str(run),
        "--set", f"model_name_or_path={nothing_models.reasoner}", "--set", f"dataset_path={data}",
        # Nearly greedy: the taught answer was learnt under another prompt, and only its top choice is sure.
        "--set", "max_completion_length=32", "--set", "temperature=0.1",
    )  # fmt: skip

    logged = [e for e in history(run) if "loss" in e]
    assert [e["step"] for e in logged] == [1, 2, 3, 4]
    assert all(f"rewards/{name}/mean" in e for e in logged for name in R.GENERALIZED_REWARDS)
    assert json.loads((run / "final" / "segzero.json").read_text())["prompt"] == "generalized"

    # 4 steps x 2 prompts = the 8 rows drawn, 2 of them (no_target_share 0.25) target-free: 4 completions each.
    for name in R.GENERALIZED_REWARDS:
        rows = [(text, boxes, value) for n, text, boxes, value in seen if n == name]
        assert len(rows) == 16 and sum(not boxes for _, boxes, _ in rows) == 4, name
        for text, boxes, value in rows:  # each value is the pure reward on the row's ground truth
            gt = R.GroundTruth.from_columns(boxes, [[[0, 0]]] * len(boxes), 56)
            assert value == pytest.approx(R.REWARDS[name](text, gt)), (name, text, boxes)
    accuracy = [(text, boxes, value) for n, text, boxes, value in seen if n == "multi_accuracy"]
    for text, boxes, value in accuracy:
        nothing_said = parse_answer(text, 56).status is ParseStatus.NO_TARGET
        if not boxes:  # target-free: [] earns the full 3, anything else 0
            assert value == (3.0 if nothing_said else 0.0), text
        elif nothing_said:  # targets: [] earns nothing
            assert value == 0.0
    assert any(value == 3.0 for _, boxes, value in accuracy if not boxes)  # the taught answer was sampled
