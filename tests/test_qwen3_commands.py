"""Every command with the tiny Qwen3-VL reasoner and SAM 3 segmenter, as a user runs them: segment, batch, eval,
serve, and training (GRPO with SAM 3 in the loop, SFT) on data prepared on the 0-1000 grid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli import app
from segzero.errors import DatasetError, InputError
from tests.test_eval_cli import reasonseg_data  # noqa: F401  (the ReasonSeg release folder fixture)
from tests.test_train_data import make_prepared

runner = CliRunner()
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _models(models, *extra: str) -> list[str]:
    return ["--reasoner", str(models.reasoner), "--segmenter", str(models.segmenter), "--frame", str(models.frame),
            "--device", "cpu", "--max-new-tokens", "4", *extra]  # fmt: skip


def _ok(result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray((np.random.default_rng(2).random((48, 80, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("mode", ["both", "concept"])
def test_segment_and_batch(tiny_qwen3, photo, tmp_path, mode):
    out = tmp_path / "out"
    _ok(runner.invoke(app, ["segment", str(photo), "the cup", "--out", str(out), *_models(tiny_qwen3),
                            "--segmenter-mode", mode]))  # fmt: skip
    record = json.loads((out / "photo.json").read_text())
    assert record["mask_rle"]["size"] == [48, 80] and record["image"] == str(photo)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps({"image": photo.name, "request": r}) for r in ("a", "b")) + "\n")
    (tmp_path / photo.name).write_bytes(photo.read_bytes())
    _ok(runner.invoke(app, ["batch", str(requests), "--out", str(tmp_path / "batch"), *_models(tiny_qwen3),
                            "--segmenter-mode", mode]))  # fmt: skip
    assert len((tmp_path / "batch" / "results.jsonl").read_text().splitlines()) == 2


def test_eval_records_the_run_and_scores_every_sample(tiny_qwen3, reasonseg_data, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["eval", "-b", "reasonseg", "--split", "val", "--data", str(reasonseg_data),
                            "--out", str(run), "--limit", "2", *_models(tiny_qwen3, "--segmenter-mode", "concept")]))
    config = json.loads((run / "run.json").read_text())["config"]["pipeline"]
    assert config["reasoner"] == str(tiny_qwen3.reasoner) and config["segmenter_mode"] == "concept"
    assert config["frame"] == tiny_qwen3.frame
    lines = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 2


def test_serve_answers_with_qwen3_and_sam3(tiny_qwen3, monkeypatch):
    pytest.importorskip("fastapi")
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from segzero.serve import server

    calls = {}  # what `segzero serve` would serve; nothing listens
    not_served = SimpleNamespace(run=lambda: None)
    monkeypatch.setattr(server, "make_server", lambda app, **kw: calls.update(app=app, **kw) or not_served)
    _ok(runner.invoke(app, ["serve", *_models(tiny_qwen3), "--no-warmup"]))
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 20, 20)).save(buffer, format="PNG")
    with TestClient(calls["app"]) as client:
        assert client.get("/health").json()["frame"] == tiny_qwen3.frame
        response = client.post(
            "/v1/segment", files={"image": ("a.png", buffer.getvalue(), "image/png")}, data={"request": "the cup"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["mask_rle"]["size"] == [20, 30]


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def relative_data(tmp_path_factory) -> Path:
    """ShapeWorld rows prepared on the 0-1000 grid, as `segzero prepare --coordinates relative` writes them."""
    return make_prepared(tmp_path_factory.mktemp("relative") / "shapeworld", n=4, frame=1000)


@pytest.fixture(scope="module")
def pixel_data(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("pixels") / "shapeworld", n=2, frame=56)


def _train(kind: str, models, data: Path, out: Path, *sets: str) -> list[str]:
    recipe = RECIPES / ("tiny_cpu.yaml" if kind == "grpo" else "tiny_cpu_sft.yaml")
    args = ["train", kind, "--config", str(recipe), "--output-dir", str(out)]
    for item in (f"model_name_or_path={models.reasoner}", f"dataset_path={data}", f"frame={models.frame}", *sets):
        args += ["--set", item]
    return args


def test_prepare_writes_the_ground_truth_on_the_relative_grid(pixel_data, tmp_path):
    from segzero.data.prepared import load_prepared
    from segzero.frames import Frame, ObjectPrompt, map_object

    out = tmp_path / "relative"
    _ok(runner.invoke(app, ["prepare", "prepared", "--path", str(pixel_data), "--out", str(out),
                            "--coordinates", "relative", "--frame", "224"]))  # fmt: skip
    rows = load_prepared(out)
    for row, source in zip(rows, load_prepared(pixel_data)):
        assert row["reasoner_frame"] == 1000  # the grid, whatever --frame
        # The same image-frame prompts, mapped with the one mapping into the 0-1000 grid.
        image = Frame.image((row["width"], row["height"]))
        for box, points, old_box, old_points in zip(
            row["reasoner_boxes"], row["reasoner_points"], source["reasoner_boxes"], source["reasoner_points"]
        ):
            in_image = map_object(ObjectPrompt.from_lists(old_box, old_points, Frame.reasoner(56)), image)
            on_grid = map_object(in_image, Frame.reasoner(1000))
            assert box == list(on_grid.box) and points == [list(p) for p in on_grid.points]
    refused = runner.invoke(app, ["prepare", "refcocog", "--root", str(tmp_path), "--out", str(tmp_path / "ref"),
                                  "--protocol", "reference", "--coordinates", "relative"])  # fmt: skip
    assert isinstance(refused.exception, InputError) and not (tmp_path / "ref").exists()
    assert str(refused.exception) == (
        "--coordinates relative contradicts --protocol reference, where prompts are in the 840 pixels; "
        "drop --coordinates."
    )


def test_training_rows_are_on_the_grid_and_shown_at_the_view(relative_data, pixel_data):
    from segzero.rewards import SEGZERO_REWARDS, make_trl_rewards
    from segzero.train.config import SegZeroArguments
    from segzero.train.data import dataset_frame, grpo_dataset, load_rows

    data = load_rows(SegZeroArguments(dataset_path=str(relative_data)))
    assert dataset_frame(data, None, "relative") == 840 and dataset_frame(data, 128, "relative") == 128
    rows = [grpo_dataset(data, "seg_zero", 128, coordinates="relative")[i] for i in range(len(data))]
    assert all(r["reasoner_frame"] == 1000 and r["images"][0].size == (128, 128) for r in rows)
    assert "from 0 to 1000" in rows[0]["prompt"][0]["content"][1]["text"]
    # The ground truth is on the grid the rewards read the completion on: the solution earns every reward.
    completions = [f"<think>that one</think><answer>{s}</answer>" for s in data["solution"]]
    columns = {k: [r[k] for r in rows] for k in ("reasoner_boxes", "reasoner_points", "reasoner_frame")}
    for reward in make_trl_rewards(SEGZERO_REWARDS):
        assert reward(None, completions, **columns) == [1.0] * len(rows), reward.__name__
    # Pixel data: the rewards read the completion in the view's own pixels.
    pixels = load_rows(SegZeroArguments(dataset_path=str(pixel_data)))
    assert grpo_dataset(pixels, "seg_zero", 56)[0]["reasoner_frame"] == 56


def test_training_refuses_pixel_data_and_a_contradicting_convention(tiny_qwen3, pixel_data, tmp_path):
    result = runner.invoke(app, _train("grpo", tiny_qwen3, pixel_data, tmp_path / "a"))
    assert isinstance(result.exception, DatasetError)
    assert str(result.exception) == (
        "The reasoner answers on the 0-1000 grid but the dataset's prompts are in frame 56; "
        "prepare the data with --coordinates relative."
    )
    result = runner.invoke(app, _train("grpo", tiny_qwen3, pixel_data, tmp_path / "b", "coordinates=pixels"))
    assert isinstance(result.exception, InputError) and "contradicts the reasoner" in str(result.exception)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _final_segments(final: Path, models) -> None:
    from segzero.frames import Frame
    from segzero.pipeline import ReasoningSegmenter

    meta = json.loads((final / "segzero.json").read_text())
    assert meta["coordinates"] == "relative" and meta["reasoner_frame"] == models.frame
    pipe = ReasoningSegmenter.from_pretrained(str(final), str(models.segmenter), device="cpu", max_new_tokens=4)
    assert pipe.frame == models.frame and pipe.answer_frame == Frame.reasoner(1000)
    assert pipe.segment(Image.new("RGB", (40, 30)), "the red square").mask.shape == (30, 40)


def test_grpo_trains_qwen3_with_sam3_in_the_loop(tiny_qwen3, relative_data, tmp_path):
    run = tmp_path / "grpo"
    _ok(runner.invoke(app, _train(
        "grpo", tiny_qwen3, relative_data, run, "reward_funcs=[thinking_format, bbox_iou, points_l1, mask_iou]",
        f"segmenter={tiny_qwen3.segmenter}", "max_steps=2", "save_strategy=no",
    )))  # fmt: skip
    logged = [e for e in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert [e["step"] for e in logged] == [1, 2]
    assert all(0.0 <= e["rewards/mask_iou/mean"] <= 1.0 for e in logged)
    _final_segments(run / "final", tiny_qwen3)


def test_sft_trains_qwen3(tiny_qwen3, relative_data, tmp_path):
    run = tmp_path / "sft"
    _ok(runner.invoke(app, _train("sft", tiny_qwen3, relative_data, run, "max_steps=2", "save_strategy=no")))
    _final_segments(run / "final", tiny_qwen3)
