"""``segzero eval --benchmark grefcoco`` end to end with tiny models, on a gRefCOCO folder in the released
layout: per-sample flags, gRefCOCO's figures recounted from the records, resume, shards, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli.app import app
from tests.conftest import TAUGHT_FRAME
from tests.test_data_fixtures import grefcoco_target, make_grefcoco

runner = CliRunner()

VAL_IDS = ["1_10", "1_11", "2_20", "3_30", "4_40", "8_80"]
NO_TARGET = {"3_30"}
TARGETS = {"1": (101,), "2": (101, 102), "4": (102, 103), "8": (201,)}  # ref -> its annotations


def _noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def grefcoco_data(tmp_path_factory) -> Path:
    return make_grefcoco(tmp_path_factory.mktemp("datasets"), image_maker=_noise)


def _eval(models, data: Path, out: Path, *extra: str, tokens: int = 60, frame: int = TAUGHT_FRAME):
    args = ["eval", "-b", "grefcoco", "--split", "val", "--data", str(data), "--out", str(out),
            "--reasoner", str(models.reasoner), "--segmenter", str(models.segmenter), "--frame", str(frame),
            "--max-new-tokens", str(tokens), "--batch-size", "2", "--device", "cpu", *extra]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _truth(sample_id: str) -> np.ndarray:
    ref = sample_id.split("_")[0]
    if sample_id in NO_TARGET:
        return np.zeros((30, 40), bool)
    return grefcoco_target(*TARGETS[ref]).astype(bool)


def _recount(records: list[dict]) -> dict:
    """gRefCOCO's figures from the records' masks and the fixture's rectangles alone."""
    from segzero.masks import decode_rle

    ious, inter_sum, union_sum, nt_hits, t_hits = [], 0, 0, 0, 0
    for r in records:
        truth = _truth(r["id"])
        read = r["parse_status"] in ("ok", "partial", "no_target")  # the usable answers
        pred = decode_rle(r["pred_rle"]) if read else np.zeros_like(truth)
        empty = (not pred.any()) if read else None
        assert r["pred_empty"] == empty and r["extra"]["no_target"] == (r["id"] in NO_TARGET)
        inter, union = int((pred & truth).sum()), int((pred | truth).sum())
        inter_sum, union_sum = inter_sum + inter, union_sum + union
        if r["id"] in NO_TARGET:
            ious.append(1.0 if empty is True else 0.0)
            nt_hits += empty is True
        else:
            ious.append(inter / union)
            t_hits += empty is False
    return {"giou": np.mean(ious), "ciou": inter_sum / union_sum if union_sum else 1.0,
            "n_acc": nt_hits / len(NO_TARGET), "t_acc": t_hits / (len(records) - len(NO_TARGET))}  # fmt: skip


@pytest.fixture(scope="module")
def taught_run(taught_models, grefcoco_data, tmp_path_factory):
    """An uninterrupted gRefCOCO val run of the reasoner taught to always answer one box."""
    out = tmp_path_factory.mktemp("taught") / "run"
    return out, _eval(taught_models, grefcoco_data, out)


def test_figures_match_an_independent_recount(taught_run, tmp_path):
    run, output = taught_run
    records = _lines(run)
    assert [r["id"] for r in records] == VAL_IDS
    assert all(r["parse_status"] == "ok" for r in records)
    summary = json.loads((run / "summary.json").read_text())
    gen = summary["generalized"]
    for key, value in _recount(records).items():
        assert gen[key] == pytest.approx(value, abs=1e-12), key
    assert gen["n_acc"] == 0.0  # a model that always answers a box never says "nothing matches"
    assert summary["config"]["extra"]["split_by"] == "unc" and summary["config"]["extra"]["format"] == "refer"
    assert summary["reader_skipped"]["n"] == 4  # the fixture's bad refs, each with its id

    assert "63.6" in output  # ReLA's published val gIoU beside the run
    table = tmp_path / "table.md"
    res = runner.invoke(app, ["report", str(run), "-o", str(table)])
    assert res.exit_code == 0, res.output
    lines = table.read_text().splitlines()
    assert "| gIoU | cIoU | N-acc | T-acc |" in lines[0]
    ours = next(line for line in lines if f"| {run} | segzero |" in line).split(" | ")
    assert ours[5:9] == [f"{100 * gen[k]:.1f}" for k in ("giou", "ciou", "n_acc", "t_acc")]
    sheet = runner.invoke(app, ["visualize", str(run), "-k", "3"])  # every sample, the no-target one too
    assert sheet.exit_code == 0, f"{sheet.output}\n{sheet.exception!r}"
    assert Image.open(run / "contact_sheet.png").width > 0


def test_a_resumed_run_gives_the_same_figures(taught_run, taught_models, grefcoco_data, tmp_path):
    expected = json.loads((taught_run[0] / "summary.json").read_text())

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("run.json", "results.jsonl"):  # a run killed after its first batch of two
        text = (taught_run[0] / name).read_text()
        (resumed / name).write_text(
            "".join(text.splitlines(keepends=True)[:2]) if name.endswith("l") else text
        )
    output = _eval(taught_models, grefcoco_data, resumed)
    assert "4 evaluated now, 2 already done" in output
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["generalized"] == expected["generalized"] and summary["overall"] == expected["overall"]


def test_two_shards_merge_to_the_same_figures(taught_run, taught_models, grefcoco_data, tmp_path):
    expected = json.loads((taught_run[0] / "summary.json").read_text())
    sharded = tmp_path / "sharded"
    first = _eval(taught_models, grefcoco_data, sharded, "--shard", "0/2")
    assert "eval-merge" in first and not (sharded / "summary.json").exists()
    _eval(taught_models, grefcoco_data, sharded, "--shard", "1/2")
    merged = json.loads((sharded / "summary.json").read_text())
    assert merged["generalized"] == expected["generalized"]
    assert [r["id"] for r in _lines(sharded)] == VAL_IDS


def test_failed_answers_count_neither_as_empty_nor_as_found(tiny_models, grefcoco_data, tmp_path):
    """The random tiny reasoner's answers do not parse: gRefCOCO's figures are all 0, while the generic gIoU
    counts the no-target sample's empty union as agreement."""
    run = tmp_path / "run"
    _eval(tiny_models, grefcoco_data, run, tokens=8, frame=tiny_models.frame)
    records = _lines(run)
    assert all(r["parse_status"] != "ok" and r["pred_empty"] is None for r in records)
    summary = json.loads((run / "summary.json").read_text())
    gen = summary["generalized"]
    assert (gen["giou"], gen["ciou"], gen["n_acc"], gen["t_acc"]) == (0.0, 0.0, 0.0, 0.0)
    assert summary["overall"]["giou"] == pytest.approx(1 / 6)


@pytest.mark.slow
def test_a_reasoner_that_answers_nothing_gets_every_no_target_sample(tmp_path, grefcoco_data):
    """A tiny reasoner taught, by real gradient steps, to answer ``[]``: N-acc 1, T-acc 0."""
    from segzero.tiny import make_tiny, teach

    models = make_tiny(tmp_path / "models", seed=2, frame=TAUGHT_FRAME)
    teach(models.reasoner, "<think>nothing here</think><answer>[]</answer>", TAUGHT_FRAME)
    run = tmp_path / "run"
    _eval(models, grefcoco_data, run, tokens=24)
    records = _lines(run)
    assert all(r["parse_status"] == "no_target" and r["pred_empty"] is True for r in records)
    gen = json.loads((run / "summary.json").read_text())["generalized"]
    assert gen["n_acc"] == 1.0 and gen["t_acc"] == 0.0
    assert gen["giou"] == pytest.approx(1 / 6) and gen["ciou"] == 0.0
    for key, value in _recount(records).items():
        assert gen[key] == pytest.approx(value, abs=1e-12), key
