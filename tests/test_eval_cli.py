"""``segzero eval`` / ``segzero eval-merge`` end to end with tiny models, as a user runs them.

Fixtures are written in the release formats by the tests themselves: LISA's ReasonSeg folder (a
target and an ignore polygon per image, one truncated image) and the ``refer`` files (refs pickle,
instances.json, images). Every figure is recomputed here from the per-sample JSONL and ground
truth built independently of the readers.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli.app import app
from tests.conftest import TAUGHT_FRAME

runner = CliRunner()

# ReasonSeg fixture: per image (w, h), a target rectangle and an ignore rectangle over part of it
# (inclusive pixel corners); the ignore one is smaller, so it is drawn last and wins.
SIZES = [(64, 48), (48, 64), (64, 48), (56, 56), (64, 48), (48, 64)]
TARGET = (8, 6, 40, 40)
IGNORE = (30, 30, 47, 47)
TRUNCATED = "img4"  # header intact, pixels cut: the reader keeps it, decoding fails
N = len(SIZES)


def _rect(box):
    x1, y1, x2, y2 = box
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _plane(size, box):
    w, h = size
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def reasonseg_truth(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(target, ignore) boolean planes of image k, from the rectangles alone."""
    ignore = _plane(SIZES[k], IGNORE)
    return _plane(SIZES[k], TARGET) & ~ignore, ignore


@pytest.fixture(scope="module")
def reasonseg_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ReasonSeg")
    folder = root / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(SIZES):
        path = folder / f"img{k}.jpg"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path, quality=95)
        if path.stem == TRUNCATED:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        shapes = [
            {"label": "target", "points": _rect(TARGET), "shape_type": "polygon"},
            {"label": "ignore", "points": _rect(IGNORE), "shape_type": "polygon"},
            {"label": "flag", "points": _rect((0, 0, 5, 5)), "shape_type": "polygon"},
        ]
        record = {"text": [f"what holds thing {k}?", "unused"], "is_sentence": k % 3 == 0, "shapes": shapes}
        (folder / f"img{k}.json").write_text(json.dumps(record))
    return root


def _model_args(models, tokens: int = 60) -> list[str]:
    return ["--reasoner", str(models.reasoner), "--segmenter", str(models.segmenter),
            "--frame", str(TAUGHT_FRAME), "--max-new-tokens", str(tokens), "--batch-size", "2",
            "--device", "cpu"]  # fmt: skip


def _eval_args(models, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "-b", "reasonseg", "--split", "val", "--data", str(data), "--out", str(out),
            *_model_args(models), *extra]  # fmt: skip


def _figures(summary: dict) -> dict:
    return {"overall": summary["overall"], "subsets": summary["subsets"], "complete": summary["complete"]}


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _visualize(run: Path, k: int = 2) -> Image.Image:
    """`segzero visualize RUN`: the contact sheet, drawn from the dataset the run was made on."""
    res = runner.invoke(app, ["visualize", str(run), "-k", str(k)])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    sheet = Image.open(run / "contact_sheet.png")
    assert sheet.width > 0 and sheet.height > 0
    return sheet


@pytest.fixture(scope="module")
def baseline(taught_models, reasonseg_data, tmp_path_factory):
    """An uninterrupted ReasonSeg val run with the taught reasoner: (run folder, CLI output)."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    res = runner.invoke(app, _eval_args(taught_models, reasonseg_data, out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_reasonseg_figures_match_an_independent_recount(baseline, taught_models, reasonseg_data):
    from segzero.masks import decode_rle

    run, output = baseline
    assert "Seg-Zero-7B" in output and "62.6" in output  # the paper's row for ReasonSeg val
    records = _lines(run)
    assert [r["id"] for r in records] == [f"img{k}" for k in range(N)]  # every sample, once, in order
    ious, inter_sum, union_sum, box_hits = [], 0, 0, 0
    by_subset: dict[str, list[float]] = {"short": [], "long": []}
    for k, r in enumerate(records):
        target, ignore = reasonseg_truth(k)
        if r["id"] == TRUNCATED:
            assert r["parse_status"] == "error" and "truncated" in r["error"]
            inter, union = 0, int(target.sum())
        else:
            assert r["parse_status"] == "ok" and r["thinking"] == "it is on the left"
            pred = decode_rle(r["pred_rle"])
            inter = int((pred & target & ~ignore).sum())
            union = int(((pred | target) & ~ignore).sum())
            assert pred.any() and inter > 0  # a real mask, overlapping the target
            box_hits += r["box_hit"]
        assert (r["intersection"], r["union"]) == (inter, union)
        ious.append(inter / union)
        inter_sum, union_sum = inter_sum + inter, union_sum + union
        by_subset["long" if k % 3 == 0 else "short"].append(inter / union)
        assert r["extra"]["subset"] == ("long" if k % 3 == 0 else "short")

    summary = json.loads((run / "summary.json").read_text())
    overall = summary["overall"]
    assert overall["n"] == N and overall["errors"] == 1 and overall["parse_failures"] == 0
    assert overall["giou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert overall["ciou"] == pytest.approx(inter_sum / union_sum, abs=1e-12)
    assert overall["box_accuracy"] == pytest.approx(box_hits / N)
    for name, values in by_subset.items():
        assert summary["subsets"][name]["n"] == len(values)
        assert summary["subsets"][name]["giou"] == pytest.approx(np.mean(values), abs=1e-12)
    assert summary["complete"] and summary["n_expected"] == N
    # A segzero run lines up with the figures of LISA's evaluation, whose scoring it follows; Seg-Zero's
    # own figures come from the reference's evaluation (shown in the report, never compared with).
    assert any(p["method"] == "LISA-7B-LLaVA1.5" and p["giou"] == 53.6 for p in summary["paper"])
    assert not any(p["method"] == "Seg-Zero-7B" for p in summary["paper"])

    report = runner.invoke(app, ["report", str(run)])  # `segzero report` reads the run as written
    assert report.exit_code == 0 and f"{100 * overall['ciou']:.1f}" in report.output
    again = runner.invoke(app, _eval_args(taught_models, reasonseg_data, run))  # finished: no model work
    assert again.exit_code == 0 and "0 evaluated now, 6 already done" in again.output
    assert _figures(json.loads((run / "summary.json").read_text())) == _figures(summary)
    assert summary["subset"] == "all"
    _visualize(run)  # from LISA's folder, the truncated image among the worst


def test_a_subset_run_is_reported_as_that_subset(baseline, taught_models, reasonseg_data, tmp_path):
    run = tmp_path / "long"
    res = runner.invoke(app, _eval_args(taught_models, reasonseg_data, run, "--subset", "long"))
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in _lines(run)] == ["img0", "img3"]  # is_sentence: k % 3 == 0
    summary = json.loads((run / "summary.json").read_text())
    base = json.loads((baseline[0] / "summary.json").read_text())
    assert summary["subset"] == "long" and summary["complete"] and summary["n_expected"] == 2
    assert summary["overall"] == base["subsets"]["long"]  # the same samples, the same figures
    assert summary["paper"] == []  # the paper publishes no long-query figures for val
    rows = json.loads(_report_json(run, tmp_path / "rows.json"))
    ours = [r for r in rows if r["source"] == "run"]  # the run, and its masks under the reference's rules
    assert [(r["subset"], r["protocol"]) for r in ours] == [("long", "segzero"), ("long", "reference")]
    assert ours[0]["vs"] is None
    assert ours[0]["giou"] == pytest.approx(100 * base["subsets"]["long"]["giou"])
    assert not [r for r in rows if r["source"] == "paper"]  # not the whole split's numbers
    _visualize(run, k=1)


def _report_json(run: Path, out: Path) -> str:
    res = runner.invoke(app, ["report", str(run), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out.read_text()


def test_killed_run_resumes_to_the_same_figures(baseline, taught_models, reasonseg_data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "segzero.cli", *_eval_args(taught_models, reasonseg_data, run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    results = run / "results.jsonl"
    deadline = time.monotonic() + 240
    try:
        while True:  # until the first batch (2 samples) is flushed
            text = results.read_text() if results.exists() else ""
            if text.count("\n") >= 2:
                break
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no batch was flushed in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= len(_lines(run)) < N, "the kill came after the run had finished"

    res = runner.invoke(app, _eval_args(taught_models, reasonseg_data, run))
    assert res.exit_code == 0, res.output
    ids = [r["id"] for r in _lines(run)]
    assert sorted(ids) == [f"img{k}" for k in range(N)] and len(ids) == N  # none twice, none missing
    resumed = json.loads((run / "summary.json").read_text())
    expected = json.loads((baseline[0] / "summary.json").read_text())
    assert _figures(resumed) == _figures(expected)


def test_two_shards_merge_to_the_unsharded_figures(baseline, taught_models, reasonseg_data, tmp_path):
    run = tmp_path / "run"
    first = runner.invoke(app, _eval_args(taught_models, reasonseg_data, run, "--shard", "0/2"))
    assert first.exit_code == 0, first.output
    assert "eval-merge" in first.output and not (run / "summary.json").exists()

    # The second shard as a launcher starts it: rank 1 of 2, picked up from the environment.
    launcher = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    both = _eval_args(taught_models, reasonseg_data, run, "--shard", "1/2")
    refused = runner.invoke(app, both, env=launcher)
    assert "give one or the other" in str(refused.exception)
    second = runner.invoke(app, _eval_args(taught_models, reasonseg_data, run), env=launcher)
    assert second.exit_code == 0, second.output
    assert "merged into" in second.output
    shard_sizes = [len(_lines(run / "shards" / f"{i}-of-2")) for i in range(2)]
    assert shard_sizes == [3, 3]
    expected = _figures(json.loads((baseline[0] / "summary.json").read_text()))
    assert _figures(json.loads((run / "summary.json").read_text())) == expected
    assert [r["id"] for r in _lines(run)] == [f"img{k}" for k in range(N)]

    again = runner.invoke(app, ["eval-merge", str(run)])  # merging again is harmless
    assert again.exit_code == 0 and _figures(json.loads((run / "summary.json").read_text())) == expected

    missing = runner.invoke(app, ["eval-merge", str(run / "shards" / "0-of-2"), "--out", str(tmp_path / "m")])
    assert "Shard 1/2 is missing" in str(missing.exception)
    shard1 = run / "shards" / "1-of-2" / "results.jsonl"
    with shard1.open("a") as f:  # a sample of shard 0 also in shard 1
        f.write((run / "shards" / "0-of-2" / "results.jsonl").read_text().splitlines()[0] + "\n")
    overlap = runner.invoke(app, ["eval-merge", str(run)])
    assert "more than one shard" in str(overlap.exception)


# --- RefCOCO from the refer files ---------------------------------------------------------------------

REFER_SIZE = (50, 40)  # (w, h) of every image
REFER_MASKS = {  # annotation id -> inclusive rectangle
    11: (5, 5, 20, 30),
    12: (25, 10, 45, 35),
    21: (0, 0, 49, 9),
}


def make_refcoco(root: Path) -> Path:
    """refer/refcoco: refs(unc).p + instances.json + images/: 2 images, 3 testA refs (4 sentences), 1 val."""
    from pycocotools import mask as mask_utils

    folder = root / "refcoco"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = []
    for image_id in (1, 2):
        name = f"COCO_train2014_{image_id:012d}.jpg"
        w, h = REFER_SIZE
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
    anns = []
    for ann_id, box in REFER_MASKS.items():
        rle = mask_utils.encode(np.asfortranarray(_plane(REFER_SIZE, box).astype(np.uint8)))
        anns.append({"id": ann_id, "image_id": ann_id // 10, "category_id": 1, "iscrowd": 0,
                     "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})  # fmt: skip
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": anns}))

    def ref(ref_id, ann_id, split, sentences):
        sents = [{"sent": s, "sent_id": 10 * ref_id + i} for i, s in enumerate(sentences)]
        return {"ref_id": ref_id, "ann_id": ann_id, "image_id": ann_id // 10, "split": split,
                "category_id": 1, "sentences": sents}  # fmt: skip

    refs = [
        ref(1, 11, "testA", ["left man", "man on the left"]),
        ref(2, 12, "testA", ["right man"]),
        ref(3, 21, "testA", ["top band"]),
        ref(4, 12, "val", ["a val sentence"]),
    ]
    with (folder / "refs(unc).p").open("wb") as f:
        pickle.dump(refs, f)
    return root


def test_refcoco_from_refer_files_counts_unparsed_answers(tiny_models, tmp_path):
    data = make_refcoco(tmp_path / "refer")
    coco = tmp_path / "coco" / "train2014"  # the images elsewhere, given with --images
    coco.parent.mkdir()
    (data / "refcoco" / "images").rename(coco)
    out = tmp_path / "run"
    args = ["eval", "-b", "refcoco", "--split", "testa", "--data", str(data), "--images", str(coco),
            "--out", str(out), *_model_args(tiny_models, tokens=8)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "80.3" in res.output  # Seg-Zero-7B's published RefCOCO testA cIoU
    records = _lines(out)
    assert [r["id"] for r in records] == ["1_10", "1_11", "2_20", "3_30"]
    areas = {"1": 16 * 26, "2": 21 * 26, "3": 50 * 10}
    for r in records:  # the random reasoner's answers do not parse: nothing predicted, target area lost
        assert r["parse_status"] != "ok" and r["pred_rle"] is None
        assert (r["intersection"], r["union"]) == (0, areas[r["id"].split("_")[0]])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["split"] == "testA" and summary["config"]["extra"]["split_by"] == "unc"
    assert summary["overall"]["n"] == 4 and summary["overall"]["parse_failure_rate"] == 1.0
    assert summary["overall"]["giou"] == 0.0
    assert summary["overall"]["union"] == sum(r["union"] for r in records)
    assert summary["subsets"] == {}
    assert summary["config"]["images"] == str(coco.resolve())
    _visualize(out)  # the refer files again, the images from where --images said


def test_prepared_and_reference_formats(baseline, taught_models, reasonseg_data, tmp_path):
    import datasets

    from segzero.data import iter_samples, save_prepared

    prepared = tmp_path / "prepared"
    save_prepared(iter_samples("reasonseg", reasonseg_data, "val"), prepared)
    res = runner.invoke(app, _eval_args(taught_models, prepared, tmp_path / "p", "--limit", "2"))
    assert res.exit_code == 0, res.output
    _visualize(tmp_path / "p", k=1)
    base = {r["id"]: r for r in _lines(baseline[0])}
    for r in _lines(tmp_path / "p"):  # same pixels, same masks: the same scores as from the folder
        assert (r["intersection"], r["union"], r["extra"]) == (
            base[r["id"]]["intersection"], base[r["id"]]["union"], base[r["id"]]["extra"])  # fmt: skip

    # The reference release's format: the mask column has the ignore region as foreground.
    rows = {"id": [], "text": [], "image": [], "mask": []}
    for k in (0, 1):
        target, ignore = reasonseg_truth(k)
        rows["id"].append(f"img{k}")
        rows["text"].append(f"what holds thing {k}?")
        rows["image"].append(Image.open(reasonseg_data / "val" / f"img{k}.jpg").convert("RGB"))
        rows["mask"].append((target | ignore).astype(np.uint8).tolist())
    features = datasets.Features({
        "id": datasets.Value("string"), "text": datasets.Value("string"), "image": datasets.Image(),
        "mask": datasets.Sequence(datasets.Sequence(datasets.Value("uint8"))),
    })  # fmt: skip
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "reference"))
    res = runner.invoke(app, _eval_args(taught_models, tmp_path / "reference", tmp_path / "r"))
    assert res.exit_code == 0, res.output
    assert "turned ignore regions into foreground" in " ".join(res.output.split())
    records = _lines(tmp_path / "r")
    config = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert config["extra"]["format"] == "reference-hf" and [r["id"] for r in records] == ["img0", "img1"]
    for r in records:  # the ignore pixels now count: a larger union than LISA's masks give
        assert r["union"] > base[r["id"]]["union"]
        assert "subset" not in r["extra"]  # the reference format does not mark long queries
    _visualize(tmp_path / "r", k=1)


def test_bad_arguments_are_one_sentence(tmp_path, reasonseg_data):
    res = runner.invoke(app, ["eval", "-b", "refcoco", "--split", "test", "--data", str(reasonseg_data)])
    assert "refcoco has no split 'test'" in str(res.exception)
    res = runner.invoke(app, ["eval", "-b", "refcoco", "--split", "val", "--data", str(reasonseg_data)])
    assert "is a ReasonSeg folder, not refcoco" in str(res.exception)
    res = runner.invoke(app, ["eval", "-b", "reasonseg", "--data", str(tmp_path / "nowhere")])
    assert "does not exist" in str(res.exception)
    res = runner.invoke(app, ["eval", "-b", "reasonseg", "--data", str(reasonseg_data), "--shard", "2/2"])
    assert "A shard must be I/N" in str(res.exception)
