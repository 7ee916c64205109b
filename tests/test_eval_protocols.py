"""``segzero eval --protocol segzero|reference`` end to end, SAM2 prompted as the reference prompts it, and
the report that names protocols.

The ReasonSeg folder is written here in LISA's layout with images that are not square, an ignore
region beside each target and one image whose only region is ignore. Every figure is recomputed from
the per-sample records and the rectangles alone. The taught reasoner answers with the prompt's own
single-quoted example format, which the reference's ``json.loads`` cannot read: under the reference
every sample fails, as it would there.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from typer.testing import CliRunner

from segzero.answer import ParseStatus
from segzero.cli.app import app
from segzero.frames import Frame, ObjectPrompt
from segzero.pipeline import segment_answers
from segzero.segmenter import Segmenter
from tests.conftest import TAUGHT_FRAME
from tests.test_eval_cli import _plane, _rect

runner = CliRunner()

SIZES = [(150, 100), (90, 130), (120, 80), (100, 140)]
TARGET = (10, 12, 60, 70)  # inclusive corners
IGNORE_BOX = (61, 12, 75, 70)  # beside the target, touching it
ONLY_IGNORE = "img3"  # its one region is ignore: no target pixel under segzero, some under the reference


def truth(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(target, ignore) planes of image k from the rectangles alone."""
    ignore = _plane(SIZES[k], IGNORE_BOX)
    target = np.zeros_like(ignore) if f"img{k}" == ONLY_IGNORE else _plane(SIZES[k], TARGET) & ~ignore
    return target, ignore


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ReasonSeg")
    (root / "val").mkdir()
    rng = np.random.default_rng(5)
    for k, (w, h) in enumerate(SIZES):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(root / "val" / f"img{k}.jpg", quality=95)
        shapes = [{"label": "ignore", "points": _rect(IGNORE_BOX), "shape_type": "polygon"}]
        if f"img{k}" != ONLY_IGNORE:
            shapes.insert(0, {"label": "target", "points": _rect(TARGET), "shape_type": "polygon"})
        record = {"text": [f"the thing {k}"], "is_sentence": False, "shapes": shapes}
        (root / "val" / f"img{k}.json").write_text(json.dumps(record))
    return root


@pytest.fixture(scope="module")
def models(taught_models, tmp_path_factory):
    """The taught models, the reasoner copied with a segzero.json recording its frame: a reasoner that
    records its own frame keeps it under the reference protocol (the released ones answer in 840)."""
    import shutil

    from segzero.hub import write_model_meta

    reasoner = tmp_path_factory.mktemp("taught") / "reasoner"
    shutil.copytree(taught_models.reasoner, reasoner)
    write_model_meta(reasoner, frame=TAUGHT_FRAME, prompt="seg_zero")
    return dataclasses.replace(taught_models, reasoner=reasoner)


def _args(models, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "-b", "reasonseg", "--split", "val", "--data", str(data), "--out", str(out),
            "--reasoner", str(models.reasoner), "--segmenter", str(models.segmenter), "--batch-size", "2",
            "--device", "cpu", *extra]  # fmt: skip


def _records(run: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def runs(models, data, tmp_path_factory):
    """The same folder evaluated under each protocol: {protocol: run folder}."""
    out = {}
    for protocol in ("segzero", "reference"):
        run = tmp_path_factory.mktemp(protocol) / "run"
        res = runner.invoke(app, _args(models, data, run, "--protocol", protocol))
        assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
        out[protocol] = run
    return out


def test_segzero_run_scores_its_masks_under_both_ignore_conventions(runs):
    from segzero.masks import decode_rle

    run = runs["segzero"]
    records = _records(run)
    assert sorted(records) == ["img0", "img1", "img2"]  # img3 has no target pixel: skipped, and said so
    assert "img3" in (run / "skipped.jsonl").read_text()
    sums = {"segzero": [0, 0, []], "reference": [0, 0, []]}
    for k in range(3):
        r = records[f"img{k}"]
        target, ignore = truth(k)
        pred = decode_rle(r["pred_rle"])
        assert r["parse_status"] == "ok" and r["image_size"] == list(SIZES[k])
        lisa = (int((pred & target & ~ignore).sum()), int(((pred | target) & ~ignore).sum()))
        ref = (int((pred & (target | ignore)).sum()), int((pred | target | ignore).sum()))
        assert (r["intersection"], r["union"]) == lisa
        assert (r["scores"]["reference"]["intersection"], r["scores"]["reference"]["union"]) == ref
        for name, (i, u) in (("segzero", lisa), ("reference", ref)):
            sums[name][0] += i
            sums[name][1] += u
            sums[name][2].append(i / u)
        # The single quotes of the taught answer: json.loads fails, so the reference reads nothing.
        assert "reading" in r["differences"]
        assert ("ignore" in r["differences"]) is (lisa != ref)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["protocol"] == "segzero" and summary["config"]["pipeline"]["protocol"] == "segzero"
    other = summary["other_protocols"]["reference"]["overall"]
    for figures, name in ((summary["overall"], "segzero"), (other, "reference")):
        assert figures["giou"] == pytest.approx(np.mean(sums[name][2]), abs=1e-12)
        assert figures["ciou"] == pytest.approx(sums[name][0] / sums[name][1], abs=1e-12)
    assert summary["differences"]["reading"] == 3
    # Under segzero the paper rows are LISA's (the scoring it follows), never the reference's.
    assert {p["evaluation"] for p in summary["paper"]} == {"lisa"}


def test_reference_run_fails_unreadable_answers_and_counts_ignore_as_target(runs):
    run = runs["reference"]
    records = _records(run)
    assert sorted(records) == ["img0", "img1", "img2", "img3"]  # the reference keeps img3
    for k in range(4):
        r = records[f"img{k}"]
        target, ignore = truth(k)
        assert r["parse_status"] == "invalid_json" and r["objects"] == [] and r["pred_rle"] is None
        assert (r["intersection"], r["union"], r["iou"], r["counted"]) == (0, int((target | ignore).sum()), 0.0, True)
        assert (r["scores"]["segzero"]["intersection"], r["scores"]["segzero"]["union"]) == (0, int(target.sum()))
        assert r["answer"].startswith("<think>it is on the left</think>")  # the completion is kept for audit
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "run.json").read_text())["config"]
    assert summary["protocol"] == "reference" and config["pipeline"]["protocol"] == "reference"
    assert config["extra"]["keep_empty"] is True
    assert summary["overall"]["giou"] == 0.0 and summary["overall"]["parse_failure_rate"] == 1.0
    # img3 under segzero's rules: an empty target and nothing predicted agree (IoU 1).
    assert summary["other_protocols"]["segzero"]["overall"]["giou"] == pytest.approx(0.25)
    assert summary["differences"]["reading"] == 4 and summary["differences"]["ignore"] == 4
    assert {p["evaluation"] for p in summary["paper"]} == {"reference"}


def test_resuming_under_the_other_protocol_is_refused(runs, models, data):
    res = runner.invoke(app, _args(models, data, runs["reference"]))  # default: segzero
    assert "protocol='reference'" in str(res.exception) and "choose another output folder" in str(res.exception)


def test_report_names_protocols_and_shows_the_other_convention(runs, tmp_path):
    res = runner.invoke(app, ["report", str(runs["segzero"]), str(runs["reference"]), "-o", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "r.json").read_text())
    ours = [r for r in rows if r["source"] == "run" and r["subset"] == "all"]
    assert [(r["protocol"], r["name"].endswith(")")) for r in ours] == [
        ("segzero", False), ("reference", True), ("reference", False), ("segzero", True)
    ]  # each run, then its masks under the other protocol's rules
    assert all(r["vs"] is None for r in ours)  # not a released checkpoint: nothing to compare with
    assert any(r["name"].endswith("(ignore as target)") for r in ours)
    assert "Samples each protocol difference touches" in " ".join(res.output.split())


def test_shapeworld_export_is_labelled_and_never_compared_with_the_paper(models, tmp_path):
    export = runner.invoke(app, ["shapeworld", "export", "--out", str(tmp_path / "sw"), "--split", "val", "-n", "2",
                                 "--family", "reasoning", "--format", "reasonseg", "--like-reasonseg"])  # fmt: skip
    assert export.exit_code == 0, export.output
    run = tmp_path / "run"
    res = runner.invoke(app, _args(models, tmp_path / "sw", run), env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["origin"] == "shapeworld" and summary["paper"] == []
    assert "ShapeWorld export, not the paper's data" in " ".join(res.output.split())
    records = _records(run)
    assert {tuple(r["image_size"]) for r in records.values()} == {(112, 154), (200, 130)}  # seeds 10000000, 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "lisa"], "--protocol 'lisa' is not known; choose one of: segzero, reference."),
        (["--protocol", "reference", "--frame", "672"], "--frame 672 contradicts --protocol reference"),
        (["--protocol", "reference", "--segmenter-mode", "box"], "--segmenter-mode box contradicts"),
        (["--protocol", "reference", "--max-new-tokens", "64"], "--max-new-tokens 64 contradicts"),
        (["--protocol", "reference", "--prompt", "no_think"], "--prompt no_think contradicts"),
    ],
)
def test_bad_protocol_options_are_one_sentence_before_any_model_loads(data, tmp_path, extra, message):
    args = ["eval", "-b", "reasonseg", "--data", str(data), "--out", str(tmp_path / "run"),
            "--reasoner", str(tmp_path / "no-such-model"), *extra]  # fmt: skip
    res = runner.invoke(app, args)
    assert message in str(res.exception)
    assert not (tmp_path / "run").exists()


def test_a_contradiction_exits_2_with_one_line(data, tmp_path):
    args = ["eval", "-b", "reasonseg", "--data", str(data), "--reasoner", str(tmp_path / "none"),
            "--protocol", "reference", "--frame", "672"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "segzero.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--frame 672 contradicts --protocol reference" in proc.stderr


# --- SAM2 prompted as the reference prompts it -------------------------------------------------------


@pytest.fixture(scope="module")
def segmenters(tiny_models):
    path = str(tiny_models.segmenter)
    return (
        Segmenter.from_pretrained(path, device="cpu"),
        Segmenter.from_pretrained(path, device="cpu", dtype="bfloat16", reference=True),
    )


def test_reference_segmenter_preprocesses_as_metas_predictor(segmenters):
    ours, ref = segmenters
    assert ref.model.dtype == torch.float32  # whatever dtype was asked for: the reference keeps float32 weights
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((70, 130, 3)) * 255).astype(np.uint8))
    side = ref.processor.target_size
    meta = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(T.Resize((side, side))(T.ToTensor()(image)))
    assert torch.equal(ref._pixels([image])[0], meta)  # scaled to [0, 1], then resized: exactly Meta's
    assert not torch.equal(ours._pixels([image])[0], meta)  # the 8-bit resize rounds in between


def test_reference_prompts_are_normalised_as_metas_and_keep_their_corner_order(segmenters, monkeypatch):
    _, ref = segmenters
    sent = []
    forward = ref.model.forward
    monkeypatch.setattr(ref.model, "forward", lambda *a, **kw: sent.append(kw) or forward(*a, **kw))
    image = Image.new("RGB", (130, 70), (90, 120, 30))
    obj = ObjectPrompt(box=(100, 60, 20, 10), points=((30, 40), (-10, -10)), frame=Frame.image((130, 70)))
    ref.segment_many([image], [[obj]])
    side = ref.processor.target_size
    box = sent[0]["input_boxes"][0, 0].tolist()
    assert box == pytest.approx([100 / 130 * side, 60 / 70 * side, 20 / 130 * side, 10 / 70 * side])
    points = sent[0]["input_points"][0, 0].flatten().tolist()
    assert points == pytest.approx([30 / 130 * side, 40 / 70 * side, -10 / 130 * side, -10 / 70 * side])
    assert sent[0]["input_labels"].tolist() == [[[1, 1]]] and sent[0]["multimask_output"] is True


def test_segment_answers_reads_and_maps_by_the_protocol(segmenters):
    ours, ref = segmenters
    image, large = Image.new("RGB", (420, 420), (200, 40, 40)), Image.new("RGB", (1000, 1000))
    answer = '<think>it</think><answer>{"bbox": [5, 1.9, 900, 300], "points_1": [3, 3], "points_2": [100, 50]}</answer>'
    huge = '<think>it</think>{"bbox": [1.7e308, 1, 2, 3], "points_1": [3, 3], "points_2": [100, 50]}'  # x 1000/840
    answers, objects, masks = segment_answers(ref, [image, large], [answer, huge], 840, "both", "reference")
    assert objects[0][0].box == (2, 0, 450, 150) and objects[0][0].points == ((2, 2), (50, 25))
    assert masks[0].mask.shape == (420, 420)
    assert answers[1].status is ParseStatus.INVALID_VALUES and "cannot be mapped" in answers[1].reason
    assert objects[1] == [] and not masks[1].mask.any()
    _, objects, _ = segment_answers(ours, [image], [answer], 840, "both", "segzero")
    assert objects[0][0].box == (3, 1, 419, 150) and objects[0][0].points == ((2, 2), (50, 25))
