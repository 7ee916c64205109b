"""The evaluation runner without models: specs, formats, launcher shards, batching, failures, merging.

A stand-in pipeline (``FakePipe``) answers with a fixed box mask so the runner's bookkeeping can be
checked exactly; the real pipeline runs end to end in tests/test_eval_cli.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from segzero.answer import ParseStatus
from segzero.config import PipelineConfig
from segzero.frames import Frame, ObjectPrompt
from segzero.errors import DatasetError, InputError
from segzero.evaluation.benchmarks import (
    BenchmarkSpec,
    detect_format,
    index_benchmark,
    iter_benchmark,
    samples_for,
)
from segzero.evaluation.results import RESULTS_FILE, SUMMARY_FILE, load_results, read_config
from segzero.evaluation.runner import EvaluationAborted, _aligned_batches, evaluate, make_config, run_batch
from segzero.evaluation.shards import launch_device, launched_shard, merge_run, shard_dir
from segzero.images import load_image

W, H = 40, 30
TARGET = (4, 5, 19, 24)  # inclusive x1, y1, x2, y2
IGNORE = (15, 20, 30, 28)


def _rect(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def make_reasonseg(root: Path, n: int = 5, truncated: set[int] = frozenset()) -> Path:
    """LISA's layout: val/NAME.jpg + NAME.json with a target and an ignore polygon; ``truncated``
    images keep their header but lose half their bytes (the reader keeps them, decoding fails)."""
    folder = root / "val"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        path = folder / f"img{k}.jpg"
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(path, quality=95)
        if k in truncated:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        shapes = [
            {"label": "target", "points": _rect(*TARGET), "shape_type": "polygon"},
            {"label": "ignore", "points": _rect(*IGNORE), "shape_type": "polygon"},
        ]
        record = {"text": [f"thing {k}"], "is_sentence": k % 2 == 0, "shapes": shapes}
        (folder / f"img{k}.json").write_text(json.dumps(record))
    return root


class FakePipe:
    """Stands in for ReasoningSegmenter: predicts the box (0, 0, 9, 9); fails on undecodable images."""

    frame = 112
    batch_size = 2

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_with = fail_with

    def segment_batch(self, images, requests):
        self.calls.append(list(requests))
        if self.fail_with is not None:
            raise self.fail_with
        loaded = [load_image(i) for i in images]  # raises InputError for a truncated file
        out = []
        for img, request in zip(loaded, requests):
            mask = np.zeros((img.height, img.width), bool)
            mask[:10, :10] = True
            out.append(SimpleNamespace(
                request=request, thinking="t", completion="c", mask=mask, status=ParseStatus.OK,
                objects=[ObjectPrompt(box=(0, 0, 9, 9), points=((2, 2),), frame=Frame.image(img.size))],
                timings={},
            ))  # fmt: skip
        return out


def _expected_terms():
    target = np.zeros((H, W), bool)
    target[TARGET[1] : TARGET[3] + 1, TARGET[0] : TARGET[2] + 1] = True
    ignore = np.zeros((H, W), bool)
    ignore[IGNORE[1] : IGNORE[3] + 1, IGNORE[0] : IGNORE[2] + 1] = True
    target &= ~ignore  # the ignore polygon is smaller, so it is drawn over the target
    pred = np.zeros((H, W), bool)
    pred[:10, :10] = True
    inter = int((pred & target & ~ignore).sum())
    union = int(((pred | target) & ~ignore).sum())
    return inter, union, int(target.sum())


def test_spec_checks_benchmark_split_and_subset():
    assert BenchmarkSpec("RefCOCO", "testa", "x").split == "testA"
    with pytest.raises(InputError, match="no split 'test'"):
        BenchmarkSpec("refcoco", "test", "x")
    with pytest.raises(InputError, match="Unknown benchmark"):
        BenchmarkSpec("coco", "val", "x")
    with pytest.raises(InputError, match="ReasonSeg only"):
        BenchmarkSpec("refcocog", "val", "x", subset="long")
    assert BenchmarkSpec("reasonseg", "test", "x", subset="long").name == "reasonseg-test-long"


def test_formats_are_told_apart(tmp_path):
    make_reasonseg(tmp_path / "rs", n=1)
    assert detect_format(tmp_path / "rs", "reasonseg") == "reasonseg"
    (tmp_path / "refer" / "refcoco").mkdir(parents=True)
    (tmp_path / "refer" / "refcoco" / "refs(unc).p").write_bytes(b"")
    assert detect_format(tmp_path / "refer", "refcoco") == "refer"
    kinds = {"prep": ["id", "image", "reasoner_boxes"], "ref": ["problem", "solution", "image"]}
    for name, columns in kinds.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text("{}")
        (tmp_path / name / "dataset_info.json").write_text(json.dumps({"features": dict.fromkeys(columns)}))
    assert detect_format(tmp_path / "prep", "reasonseg") == "prepared"
    assert detect_format(tmp_path / "ref", "reasonseg") == "reference-hf"
    with pytest.raises(DatasetError, match="does not exist"):
        detect_format(tmp_path / "nope", "reasonseg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset segzero can read"):
        detect_format(tmp_path / "empty", "reasonseg")
    with pytest.raises(InputError, match="not refcoco"):
        make_config(BenchmarkSpec("refcoco", "val", tmp_path / "rs"))


def test_launcher_environment_gives_the_shard_and_the_local_gpu():
    assert launched_shard({}) is None
    assert launched_shard({"WORLD_SIZE": "1", "RANK": "0"}) is None
    launch = launched_shard({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (launch.index, launch.count, launch.local_rank) == (3, 4, 1)
    with pytest.raises(InputError, match="RANK=4"):
        launched_shard({"WORLD_SIZE": "4", "RANK": "4"})
    assert launch_device("cpu", launch) == "cpu"
    assert launch_device(None, None) is None


def test_batches_keep_fixed_positions_when_resuming():
    samples = [SimpleNamespace(id=f"s{i}") for i in range(7)]
    position = {s.id: i for i, s in enumerate(samples)}
    full = [[s.id for s in b] for b in _aligned_batches(samples, position, set(), 3)]
    assert full == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]
    resumed = [[s.id for s in b] for b in _aligned_batches(samples, position, {"s0", "s1", "s3"}, 3)]
    assert resumed == [["s2"], ["s4", "s5"], ["s6"]]  # later batches are the same as before


def test_bad_image_is_isolated_and_recorded(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 3, truncated={1}))
    samples = list(iter_benchmark(spec))
    pipe = FakePipe()
    scored = run_batch(pipe, samples, "reasonseg")
    assert [r.id for r, _ in scored] == ["img0", "img1", "img2"]
    bad, systemic = scored[1]
    assert bad.parse_status == "error" and "truncated" in bad.error and not systemic
    inter, union, area = _expected_terms()
    assert (bad.intersection, bad.union) == (0, area)
    assert (scored[0][0].intersection, scored[0][0].union) == (inter, union)
    assert scored[0][0].extra == {"subset": "long"} and scored[1][0].extra == {"subset": "short"}
    assert pipe.calls[0] == ["thing 0", "thing 1", "thing 2"] and len(pipe.calls) == 4  # batch, then singly


def test_evaluate_counts_every_sample_resumes_and_shards(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 5, truncated={3}))
    config = make_config(spec, PipelineConfig(reasoner="fake", segmenter="fake"))
    pipe = FakePipe()
    outcome = evaluate(spec, tmp_path / "run", config, lambda: pipe)
    records = load_results(tmp_path / "run")
    assert list(records) == ["img0", "img1", "img2", "img3", "img4"] and outcome.errors == 1
    inter, union, area = _expected_terms()
    overall = outcome.summary["overall"]
    assert overall["n"] == 5 and overall["errors"] == 1 and outcome.summary["complete"]
    assert overall["intersection"] == 4 * inter and overall["union"] == 4 * union + area
    assert overall["giou"] == pytest.approx(4 * inter / union / 5)
    assert read_config(tmp_path / "run").pipeline["frame"] == 840  # no segzero.json: the default
    assert outcome.summary["paper"][0]["method"] == "LISA-7B-LLaVA1.5"

    def no_model():
        raise AssertionError("a finished run must not load models")

    again = evaluate(spec, tmp_path / "run", config, no_model)
    assert again.evaluated == 0 and again.summary["overall"] == overall
    retried = evaluate(spec, tmp_path / "run", config, lambda: pipe, retry_errors=True)
    assert retried.evaluated == 1 and retried.summary["overall"] == overall

    first = evaluate(spec, tmp_path / "sharded", config, lambda: FakePipe(), shard=(0, 2))
    assert first.merged is None and first.expected == 3
    second = evaluate(spec, tmp_path / "sharded", config, lambda: FakePipe(), shard=(1, 2))
    assert second.merged is not None and second.merged["overall"] == overall
    assert list(load_results(tmp_path / "sharded")) == list(records)
    with pytest.raises(InputError, match="merged sharded run"):
        evaluate(spec, tmp_path / "sharded", config, lambda: FakePipe())

    # What `segzero visualize` needs: the run's samples back from the dataset, by id.
    again = samples_for(read_config(tmp_path / "run"), ["img4", "img0"])
    assert sorted(again) == ["img0", "img4"] and again["img4"].mask.max() == 255


def test_resume_refuses_other_settings_before_loading(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 2))
    evaluate(spec, tmp_path / "run", make_config(spec, PipelineConfig(reasoner="fake")), lambda: FakePipe())
    with pytest.raises(InputError, match="segmenter_mode"):
        evaluate(spec, tmp_path / "run", make_config(spec, PipelineConfig(reasoner="fake", segmenter_mode="box")), None)
    with pytest.raises(InputError, match="frame"):
        evaluate(spec, tmp_path / "run", make_config(spec, PipelineConfig(reasoner="fake", frame=112)), None)


def test_a_broken_pipeline_stops_the_run(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 5))
    config = make_config(spec, PipelineConfig(reasoner="fake"))
    with pytest.raises(EvaluationAborted, match="4 samples in a row.*--retry-errors"):
        evaluate(spec, tmp_path / "run", config, lambda: FakePipe(RuntimeError("CUDA error")),
                 max_failures_in_row=4)  # fmt: skip
    assert len(load_results(tmp_path / "run")) == 4  # recorded, to be redone with --retry-errors


def test_merge_refuses_missing_and_overlapping_shards(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 4))
    config = make_config(spec, PipelineConfig(reasoner="fake"))
    run = tmp_path / "run"
    evaluate(spec, run, config, lambda: FakePipe(), shard=(0, 2))
    with pytest.raises(InputError, match="Shard 1/2 is missing"):
        merge_run(tmp_path / "merged", [shard_dir(run, 0, 2)])
    evaluate(spec, run, config, lambda: FakePipe(), shard=(1, 2))
    one = shard_dir(run, 1, 2)
    with pytest.raises(InputError, match="both shard 1/2"):
        merge_run(tmp_path / "merged", [shard_dir(run, 0, 2), one, one])
    line = (shard_dir(run, 0, 2) / RESULTS_FILE).read_text().splitlines()[0]
    with open(one / RESULTS_FILE, "a") as f:
        f.write(line + "\n")
    with pytest.raises(InputError, match="more than one shard"):
        merge_run(tmp_path / "merged", [shard_dir(run, 0, 2), one])
    shutil.rmtree(one)
    assert not (tmp_path / "merged" / SUMMARY_FILE).exists()


def test_empty_benchmark_and_unreadable_records_are_reported(tmp_path):
    root = make_reasonseg(tmp_path / "rs", 2)
    (root / "val" / "img1.jpg").write_bytes(b"not an image")  # the reader skips it, with why
    index = index_benchmark(BenchmarkSpec("reasonseg", "val", root))
    assert index.ids == ["img0"] and index.skipped.n_skipped == 1
    (root / "test").mkdir()
    (root / "test" / "x.json").write_text(json.dumps({"text": [], "shapes": []}))
    with pytest.raises(DatasetError, match="no reasonseg-test sample to evaluate .1 records skipped: 1 no"):
        index_benchmark(BenchmarkSpec("reasonseg", "test", root))


def test_progress_knows_the_total_before_the_first_batch(tmp_path):
    spec = BenchmarkSpec("reasonseg", "val", make_reasonseg(tmp_path / "rs", 5))
    config = make_config(spec, PipelineConfig(reasoner="fake", segmenter="fake"))
    calls = []
    evaluate(spec, tmp_path / "run", config, lambda: FakePipe(), progress=lambda d, t, r: calls.append((d, t, len(r))))
    assert calls == [(0, 5, 0), (2, 5, 2), (4, 5, 2), (5, 5, 1)]  # batches of FakePipe.batch_size 2
    # The command's bar shows that total from its first update, as "0/5", never "0/?".
    from rich.console import Console

    from segzero.cli.eval import _ProgressBar

    with _ProgressBar(Console(quiet=True), "reasonseg-val", None) as bar:
        bar.update(0, 5, [])
        task = bar.bar.tasks[0]
        assert (task.completed, task.total) == (0, 5)
