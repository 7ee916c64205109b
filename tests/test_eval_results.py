"""Per-sample results on disk: resume after a kill, duplicates, configuration checks, shards, summaries."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from segzero.answer import ParseStatus
from segzero.config import PipelineConfig
from segzero.frames import Frame, ObjectPrompt
from segzero.errors import DatasetError, InputError
from segzero.evaluation import results as R


def _rec(sample_id: str, inter: int = 1, union: int = 2, status: str = "ok", **extra) -> dict:
    return {
        "id": sample_id,
        "request": f"request {sample_id}",
        "intersection": inter,
        "union": union,
        "iou": inter / union if union else 1.0,
        "parse_status": status,
        "box_hit": None,
        "extra": extra,
    }


PIPELINE_KEYS = set(PipelineConfig().run_settings())


def _config(**kw) -> R.RunConfig:
    pipeline = {**PipelineConfig().resolved().run_settings(), **{k: kw.pop(k) for k in PIPELINE_KEYS & kw.keys()}}
    return R.RunConfig(**{"benchmark": "reasonseg", "split": "val", "dataset": "/data/reasonseg", **kw}, pipeline=pipeline)


def _write(run, records, config=None) -> None:
    with R.ResultsWriter(run, config) as writer:
        for r in records:
            writer.write(r)
        writer.flush_batch()


def test_records_round_trip_with_numpy_values(tmp_path):
    rec = R.SampleRecord(
        id="s1", request="the cat", intersection=np.int64(3), union=np.int64(4), iou=np.float32(0.75),
        parse_status=ParseStatus.OK, timings={"reason": np.float64(1.5)}, extra={"subset": "long"},
    )  # fmt: skip
    _write(tmp_path, [rec])
    loaded = R.load_results(tmp_path)
    assert loaded["s1"]["intersection"] == 3 and loaded["s1"]["parse_status"] == "ok"
    assert loaded["s1"]["timings"] == {"reason": 1.5}
    assert (tmp_path / R.RESULTS_FILE).read_bytes().endswith(b"\n")


def test_resume_after_kill_truncates_the_torn_line_and_keeps_finished_samples(tmp_path):
    _write(tmp_path, [_rec("a"), _rec("b"), _rec("c")])
    file = tmp_path / R.RESULTS_FILE
    intact = file.read_bytes()
    with open(file, "ab") as f:  # the process died in the middle of a line
        f.write(b'{"id": "d", "request": "half of a rec')
    # Reading tolerates the torn line and does not modify the file.
    assert R.finished_ids(tmp_path) == {"a", "b", "c"}
    assert file.read_bytes() != intact
    with R.ResultsWriter(tmp_path) as writer:
        assert writer.dropped_bytes == len(b'{"id": "d", "request": "half of a rec')
        assert file.read_bytes() == intact
        writer.write(_rec("d"))
    assert list(R.load_results(tmp_path)) == ["a", "b", "c", "d"]
    for line in file.read_text().splitlines():
        json.loads(line)


def test_a_torn_line_that_ends_in_a_newline_is_dropped_too(tmp_path):
    _write(tmp_path, [_rec("a")])
    with open(tmp_path / R.RESULTS_FILE, "ab") as f:
        f.write(b"\x00\x00\x00\n")  # garbage a crash can leave behind
    assert R.finished_ids(tmp_path) == {"a"}
    R.ResultsWriter(tmp_path).close()
    assert (tmp_path / R.RESULTS_FILE).read_bytes().count(b"\n") == 1


def test_damage_before_the_last_line_is_an_error_not_a_skip(tmp_path):
    file = tmp_path / R.RESULTS_FILE
    file.write_text(json.dumps(_rec("a")) + "\nnot json\n" + json.dumps(_rec("b")) + "\n")
    with pytest.raises(DatasetError, match="line 2"):
        R.load_results(tmp_path)
    with pytest.raises(DatasetError, match="line 2"):
        R.ResultsWriter(tmp_path)


def test_missing_results_are_refused_but_a_new_run_has_nothing_finished(tmp_path):
    with pytest.raises(InputError, match="No results"):
        R.load_results(tmp_path / "nowhere")
    assert R.finished_ids(tmp_path / "nowhere") == set()


def test_duplicate_ids_last_record_wins_and_counts_once(tmp_path):
    _write(tmp_path, [_rec("a", 0, 4, status="no_answer"), _rec("b", 1, 1)])
    _write(tmp_path, [_rec("a", 2, 4)])  # "a" re-run
    records = R.load_results(tmp_path)
    assert len(records) == 2 and records["a"]["intersection"] == 2
    s = R.summarize(records)["overall"]
    assert s["n"] == 2 and s["intersection"] == 3 and s["union"] == 5 and s["parse_failures"] == 0


def test_retry_errors_leaves_failed_samples_to_run_again(tmp_path):
    gt = np.zeros((2, 2), np.uint8)
    _write(tmp_path, [_rec("a"), R.error_record("b", "req", gt, RuntimeError("CUDA out of memory"))])
    assert R.finished_ids(tmp_path) == {"a", "b"}
    assert R.finished_ids(tmp_path, retry_errors=True) == {"a"}


def test_config_is_recorded_and_a_different_one_refused(tmp_path):
    _write(tmp_path, [_rec("a")], _config())
    assert R.read_config(tmp_path) == _config()
    assert json.loads((tmp_path / R.RUN_FILE).read_text())["config"]["benchmark"] == "reasonseg"
    _write(tmp_path, [_rec("b")], _config(dataset="/elsewhere/reasonseg"))  # moved data: same run
    refused = r"reasoner='Ricky06662/Seg-Zero-7B' but this run asks for reasoner='x'"
    with pytest.raises(InputError, match=refused):
        R.ResultsWriter(tmp_path, _config(reasoner="x"))
    with pytest.raises(InputError, match="shard"):
        R.ResultsWriter(tmp_path, _config(shard="1/4"))
    assert set(R.load_results(tmp_path)) == {"a", "b"}


def test_second_writer_on_the_same_file_is_refused(tmp_path):
    pytest.importorskip("fcntl")
    with R.ResultsWriter(tmp_path):
        with pytest.raises(InputError, match="Another process"):
            R.ResultsWriter(tmp_path)
    R.ResultsWriter(tmp_path).close()


def test_parse_shard():
    assert R.parse_shard("2/8") == (2, 8)
    assert R.parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("8/8", "1/0", "-1/4", "a/b", "3", ""):
        with pytest.raises(InputError, match="I/N"):
            R.parse_shard(bad)


def test_shard_ids_cover_every_id_once_whatever_the_order():
    ids = [f"img{i:03d}" for i in range(23)]
    shards = [R.shard_ids(ids, i, 4) for i in range(4)]
    assert sorted(x for s in shards for x in s) == sorted(ids)
    assert {len(s) for s in shards} <= {5, 6}
    assert R.shard_ids(ids[::-1], 1, 4) == shards[1][::-1]
    with pytest.raises(DatasetError, match="more than once"):
        R.shard_ids(["a", "b", "a"], 0, 2)
    with pytest.raises(InputError):
        R.shard_ids(ids, 4, 4)


def _shards(tmp_path, ids, n=2):
    paths = []
    for i in range(n):
        run = tmp_path / f"shard{i}"
        _write(run, [_rec(x) for x in R.shard_ids(ids, i, n)], _config(shard=f"{i}/{n}"))
        paths.append(run)
    return paths


def test_merge_shards(tmp_path):
    ids = ["a", "b", "c", "d", "e"]
    merged = R.merge_shards(_shards(tmp_path, ids), ids)
    assert list(merged) == ids


def test_merge_refuses_overlapping_shards(tmp_path):
    ids = ["a", "b", "c", "d"]
    paths = _shards(tmp_path, ids)
    _write(paths[1], [_rec("a")])
    overlap = r"1 samples appear in more than one shard \('a' in .*shard0 and .*shard1\)"
    with pytest.raises(InputError, match=overlap):
        R.merge_shards(paths, ids)
    with pytest.raises(InputError, match="2 samples appear in more than one shard"):
        R.merge_shards([paths[0], paths[0]], ids)


def test_merge_refuses_missing_and_foreign_samples(tmp_path):
    ids = ["a", "b", "c", "d"]
    paths = _shards(tmp_path, ids)
    with pytest.raises(InputError, match=r"2 of 4 samples are in no shard, e.g. 'b', 'd'"):
        R.merge_shards(paths[:1], ids)
    with pytest.raises(InputError, match=r"1 samples in the shards are not in the benchmark, e.g. 'd'"):
        R.merge_shards(paths, ids[:3])


def test_merge_refuses_shards_of_different_runs(tmp_path):
    ids = ["a", "b"]
    paths = _shards(tmp_path, ids)
    other = tmp_path / "other"
    _write(other, [_rec("b")], _config(prompt="no_think", shard="1/2"))
    with pytest.raises(InputError, match="only shards of the same run"):
        R.merge_shards([paths[0], other], ids)


def test_summarize_overall_and_subsets(tmp_path):
    records = [
        _rec("a", 1, 2, subset="short"),
        _rec("b", 0, 3, status="invalid_json", subset="long"),
        _rec("c", 3, 3, subset="long"),
        _rec("d", 0, 0),
    ]
    s = R.summarize(records)
    assert s["overall"]["n"] == 4 and s["overall"]["ciou"] == 4 / 8
    assert s["overall"]["giou"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert s["overall"]["parse_failure_rate"] == 0.25
    assert list(s["subsets"]) == ["long", "short"]
    assert s["subsets"]["long"]["n"] == 2 and s["subsets"]["long"]["ciou"] == 0.5
    with pytest.raises(DatasetError, match="lacks the field 'union'"):
        R.summarize([{"id": "x", "intersection": 0, "parse_status": "ok"}])


def test_summarize_run_writes_summary_with_config(tmp_path):
    _write(tmp_path, [_rec("a"), _rec("b", 2, 2)], _config())
    summary = R.summarize_run(tmp_path, expected_ids=["a", "b", "c"])
    saved = json.loads((tmp_path / R.SUMMARY_FILE).read_text())
    assert saved == summary
    assert saved["config"]["split"] == "val" and saved["overall"]["n"] == 2
    assert saved["n_expected"] == 3 and saved["complete"] is False


def _result(mask, status=ParseStatus.OK, objects=()):
    return SimpleNamespace(
        request="the cat", thinking="it is furry", completion="<think>it is furry</think><answer>{}</answer>",
        mask=mask, objects=list(objects), status=status, timings={"total": 0.5},
    )  # fmt: skip


def test_record_from_result_scores_and_keeps_the_mask():
    pytest.importorskip("pycocotools")
    from segzero.masks import decode_rle

    gt = np.zeros((4, 5), np.uint8)
    gt[1:3, 1:4] = 1  # 6 target pixels, box (1, 1, 3, 2)
    gt[0, 0] = 255
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:3] = True
    mask[0, 0] = True  # on ignore
    result = _result(mask, objects=[ObjectPrompt(box=(1, 1, 2, 2), points=((1, 1),), frame=Frame.image((5, 4)))])
    rec = R.record_from_result("s", result, gt, [(1, 1, 3, 2)])
    assert (rec.intersection, rec.union, rec.iou) == (4, 6, 4 / 6)
    assert rec.box_iou == pytest.approx(4 / 6) and rec.box_hit is True
    assert rec.objects == [{"box": [1, 1, 2, 2], "points": [[1, 1]]}]
    assert rec.answer.startswith("<think>") and rec.parse_status == "ok"
    assert np.array_equal(decode_rle(rec.pred_rle), mask)


def test_unparsed_result_scores_as_no_prediction():
    gt = np.zeros((4, 5), np.uint8)
    gt[1:3, 1:4] = 1
    rec = R.record_from_result("s", _result(np.ones((4, 5), bool), ParseStatus.NO_ANSWER), gt, [(1, 1, 3, 2)],
                             keep_mask=False)  # fmt: skip
    assert (rec.intersection, rec.union, rec.iou, rec.box_hit) == (0, 6, 0.0, False)
    assert rec.pred_rle is None
    err = R.error_record("s", "the cat", gt, ValueError("boom"), [(1, 1, 3, 2)])
    assert (err.intersection, err.union, err.parse_status, err.error) == (0, 6, "error", "ValueError: boom")


def test_a_real_kill_leaves_a_readable_file_that_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    child = (
        "import sys\n"
        "from segzero.evaluation.results import ResultsWriter\n"
        "w = ResultsWriter(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    for _ in range(4):\n"
        "        w.write({'id': f's{i}', 'intersection': 1, 'union': 2, 'iou': 0.5, 'parse_status': 'ok',"
        " 'request': 'x' * 5000})\n"
        "        i += 1\n"
        "    w.flush_batch()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)])
    file = tmp_path / R.RESULTS_FILE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not file.exists() or file.stat().st_size < 200_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = R.finished_ids(tmp_path)
    assert len(done) >= 8
    with R.ResultsWriter(tmp_path) as writer:
        writer.write(_rec("after"))
    records = R.load_results(tmp_path)
    assert set(records) == done | {"after"}
    assert file.read_bytes().endswith(b"\n")


def test_where_the_data_and_images_are_does_not_change_the_run(tmp_path):
    R.ResultsWriter(tmp_path, _config()).close()
    # Moved data, or refer images given with --images: the same run, resumable.
    R.ResultsWriter(tmp_path, _config(dataset="/moved/reasonseg", images="/coco/train2014")).close()
    # A run.json from before `images` was recorded reads with no images folder.
    saved = json.loads((tmp_path / R.RUN_FILE).read_text())["config"]
    del saved["images"]
    assert R.RunConfig.from_json(saved).images == ""
