"""Report against the paper's numbers, contact sheet, and the ``report`` / ``visualize`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from segzero.data.records import Sample
from segzero.defaults import DEFAULT_REASONER
from segzero.errors import InputError
from segzero.evaluation import contact_sheet
from segzero.drawing import IGNORE_COLOUR, draw_mask
from segzero.evaluation.contact_sheet import (
    render_contact_sheet,
    sample_loader,
    select_worst_best,
)
from segzero.evaluation.report import (
    PAPER_RESULTS,
    load_run_summary,
    render_report,
    report_rows,
    rows_to_markdown,
)
from segzero.evaluation.results import ResultsWriter, RunConfig, summarize_run


def _run(path, benchmark="ReasonSeg", split="test", reasoner=DEFAULT_REASONER, records=None, subset=None,
         protocol="reference", origin=None):  # fmt: skip
    extra = {"subset": subset} if subset else {}
    extra.update({"origin": origin} if origin else {})
    pipeline = {"reasoner": reasoner, "protocol": protocol}
    config = RunConfig(benchmark=benchmark, split=split, pipeline=pipeline, dataset="/data/rs", extra=extra)
    records = records or [
        {"id": "a", "request": "r", "intersection": 1, "union": 2, "iou": 0.5, "parse_status": "ok",
         "box_hit": True, "extra": {"subset": "short"}},
        {"id": "b", "request": "r", "intersection": 3, "union": 3, "iou": 1.0, "parse_status": "ok",
         "box_hit": False, "extra": {"subset": "long"}},
    ]  # fmt: skip
    with ResultsWriter(path, config) as writer:
        for r in records:
            writer.write(r)
    return path


def test_paper_numbers_are_all_there_without_runs():
    rows = report_rows([])
    found = {(r.name, r.benchmark, r.split): (r.giou, r.ciou) for r in rows}
    assert found[("Seg-Zero-7B", "reasonseg", "test")] == (57.5, 52.0)
    assert found[("Seg-Zero-3B", "reasonseg", "val")] == (62.6, 58.5)
    assert found[("LISA-7B-LLaVA1.5", "reasonseg", "val")] == (53.6, 52.3)
    assert found[("Qwen2.5-VL-3B + SAM2 (no RL)", "reasonseg", "test")] == (47.6, 37.4)
    assert found[("Seg-Zero-7B", "refcoco", "testA")] == (None, 80.3)
    assert found[("Seg-Zero-3B", "refcoco+", "testA")] == (None, 73.7)
    assert found[("Seg-Zero-7B", "refcocog", "test")] == (None, 72.6)
    assert found[("VisionReasoner-7B", "reasonseg", "val")] == (66.3, None)
    assert len(rows) == len(PAPER_RESULTS)
    assert all(r.source == "paper" for r in rows)


def test_runs_line_up_with_the_paper_by_benchmark_split_and_subset(tmp_path):
    run = load_run_summary(_run(tmp_path / "7b"))
    assert (run.benchmark, run.split) == ("reasonseg", "test")
    rows = report_rows([run])
    assert {(r.benchmark, r.split) for r in rows} == {("reasonseg", "test")}
    assert [r.subset for r in rows if r.source == "run"] == ["all", "short", "long"]
    ours = next(r for r in rows if r.source == "run" and r.subset == "all")
    assert ours.giou == pytest.approx(75.0) and ours.ciou == pytest.approx(80.0)
    assert ours.n == 2 and ours.box_accuracy == pytest.approx(50.0) and ours.parse_failure_rate == 0.0
    assert ours.vs == "Seg-Zero-7B"
    assert ours.delta_giou == pytest.approx(75.0 - 57.5) and ours.delta_ciou == pytest.approx(80.0 - 52.0)
    # paper rows come first in their group
    group = [r for r in rows if r.subset == "all"]
    assert group[-1].source == "run" and "Seg-Zero-7B" in [r.name for r in group if r.source == "paper"]


def test_a_subset_run_is_reported_as_that_subset_only(tmp_path):
    """A `--subset long` run measured the long queries alone: its figures are never the whole split's."""
    long_only = [
        {"id": "a", "request": "r", "intersection": 1, "union": 4, "iou": 0.25, "parse_status": "ok",
         "box_hit": True, "extra": {"subset": "long"}},
        {"id": "b", "request": "r", "intersection": 3, "union": 4, "iou": 0.75, "parse_status": "ok",
         "box_hit": False, "extra": {"subset": "long"}},
    ]  # fmt: skip
    path = _run(tmp_path / "long", records=long_only, subset="long")
    run = load_run_summary(path)
    assert list(run.metrics) == ["long"]
    assert run.metrics["long"]["giou"] == pytest.approx(0.5) and run.metrics["long"]["n"] == 2
    rows = report_rows([run])
    ours = [r for r in rows if r.source == "run"]
    assert [r.subset for r in ours] == ["long"]
    # No published long-query number: nothing to compare with (not the whole split's 57.5).
    assert ours[0].vs is None and ours[0].delta_giou is None
    assert not [r for r in rows if r.source == "paper"]
    summarize_run(path)
    assert load_run_summary(path / "summary.json").metrics == run.metrics
    # A run of the whole split keeps "all" and each subset.
    assert list(load_run_summary(_run(tmp_path / "all", subset="all")).metrics) == ["all", "long", "short"]


def test_split_spelling_and_benchmark_aliases_are_normalised(tmp_path):
    run = load_run_summary(_run(tmp_path / "r", benchmark="refcoco_unc", split="testa", reasoner="mine"))
    rows = report_rows([run])
    paper = {(r.name, r.ciou) for r in rows if r.source == "paper"}
    assert paper == {("Seg-Zero-7B", 80.3), ("Seg-Zero-3B", 79.3)}
    assert next(r for r in rows if r.source == "run").vs is None


def test_summary_json_and_run_folder_read_alike(tmp_path):
    path = _run(tmp_path / "run")
    live = load_run_summary(path)  # no summary.json yet: summarised on the fly, nothing written
    assert not (path / "summary.json").exists()
    summarize_run(path)
    assert load_run_summary(path / "summary.json").metrics == live.metrics
    with pytest.raises(InputError, match="No summary or results"):
        load_run_summary(tmp_path / "missing")


def test_rendering(tmp_path):
    rows = report_rows([load_run_summary(_run(tmp_path / "run"))])
    console = Console(record=True, width=140)
    console.print(render_report(rows))
    text = console.export_text()
    assert "57.5" in text and "52.0" in text and "+17.5 / +28.0" in text and "reasonseg test (long)" in text
    md = rows_to_markdown(rows)
    assert md.splitlines()[0].startswith("| Benchmark | Split | Subset |")
    assert "+17.5 / +28.0 vs Seg-Zero-7B" in md


# --- contact sheet -----------------------------------------------------------------------------


def _sample(i: int) -> Sample:
    rng = np.random.default_rng(i)
    image = Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8))
    mask = np.zeros((30 + i, 40), np.uint8)
    mask[5:20, 5:25] = 1
    mask[0:4, 30:40] = 255
    return Sample(id=f"s{i}", image=image, request=f"thing {i}", width=40, height=30 + i, mask=mask)


def _sheet_records(n: int) -> list[dict]:
    from segzero.masks import encode_rle

    records = []
    for i in range(n):
        pred = np.zeros((30 + i, 40), bool)
        pred[5 : 5 + 2 * i, 5:25] = True
        records.append({
            "id": f"s{i}", "iou": i / n, "request": f"thing {i}", "thinking": "long reasoning " * 40,
            "parse_status": "ok" if i else "no_answer",
            "objects": [{"box": [5, 5, 24, 5 + 2 * i], "points": [[10, 8], [20, 9]]}] if i else [],
            "pred_rle": encode_rle(pred) if i else None,
        })  # fmt: skip
    return records


SAMPLES = {f"s{i}": _sample(i) for i in range(10)}


def test_select_worst_best_never_shows_a_sample_twice():
    records = [{"id": str(i), "iou": v} for i, v in enumerate([0.9, 0.1, 0.5, 0.7, 0.3])]
    worst, best = select_worst_best(records, 2)
    assert [r["iou"] for r in worst] == [0.1, 0.3] and [r["iou"] for r in best] == [0.9, 0.7]
    worst, best = select_worst_best(records, 4)
    assert len(worst) == 4 and [r["iou"] for r in best] == [0.9]


def test_contact_sheet_from_a_runs_samples(tmp_path):
    pytest.importorskip("pycocotools")
    records = {r["id"]: r for r in _sheet_records(6)}
    load = sample_loader(records, SAMPLES.__getitem__)
    image, gt, pred = load("s2")
    assert image.size == (40, 32) and gt[0, 35] == 255 and gt[6, 6] == 1 and pred.sum() == 4 * 20
    assert load("s0")[2] is None  # unparsed: no mask kept
    out = render_contact_sheet(records, load, tmp_path / "sheet.png", k=2)
    sheet = Image.open(out)
    cell_h = contact_sheet.PANEL + (contact_sheet.CAPTION_LINES + 1) * contact_sheet.LINE_HEIGHT
    assert sheet.width > 2 * 3 * contact_sheet.PANEL and sheet.height > 2 * cell_h
    with pytest.raises(InputError, match="nothing to draw"):
        render_contact_sheet([], load, tmp_path / "empty.png")


def test_an_image_the_run_failed_on_is_drawn_grey(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    mask = np.zeros((12, 20), np.uint8)
    sample = Sample(id="x", image=broken, request="r", width=20, height=12, mask=mask)
    failed = {"x": {"id": "x", "iou": 0.0, "error": "image could not be decoded", "pred_rle": None}}
    image, gt, pred = sample_loader(failed, {"x": sample}.__getitem__)("x")
    assert image.size == (20, 12) and gt is mask and pred is None
    assert np.asarray(image)[0, 0].tolist() == list(contact_sheet.UNREADABLE_COLOR)
    # A sample the run read fine but whose image is unreadable now: the user must hear of it.
    fine = {"x": {"id": "x", "iou": 0.5, "error": None, "pred_rle": None}}
    with pytest.raises(InputError):
        sample_loader(fine, {"x": sample}.__getitem__)("x")


def test_ignore_pixels_are_hatched_grey():
    image = Image.new("RGB", (12, 12), (255, 0, 0))
    region = np.zeros((12, 12), bool)
    region[:, 6:] = True
    out = np.asarray(draw_mask(image, np.zeros((12, 12), bool), ignore=region))
    assert (out[:, :6] == (255, 0, 0)).all()
    hatched = out[:, 6:].reshape(-1, 3)
    assert (hatched == IGNORE_COLOUR).all(axis=1).any()
    assert not (hatched == (255, 0, 0)).all(axis=1).any()


# --- commands ----------------------------------------------------------------------------------


def test_report_command_writes_markdown_and_json(tmp_path):
    from segzero.cli import app

    run = _run(tmp_path / "run")
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "table.md")])
    assert result.exit_code == 0, result.output
    assert "57.5" in result.output and "Seg-Zero-7B" in (tmp_path / "table.md").read_text()
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "rows.json")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert any(r["source"] == "run" and r["subset"] == "long" for r in rows)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert isinstance(result.exception, InputError)


def test_visualize_command(tmp_path, monkeypatch):
    pytest.importorskip("pycocotools")
    from segzero.cli import app

    from segzero.evaluation import benchmarks

    run = _run(tmp_path / "run", records=_sheet_records(4))
    asked = []

    def samples_for(config, ids):
        assert config.dataset == "/data/rs"
        asked.append(sorted(ids))
        return {i: SAMPLES[i] for i in ids}

    monkeypatch.setattr(benchmarks, "samples_for", samples_for)
    result = CliRunner().invoke(app, ["visualize", str(run), "-k", "1"])
    assert result.exit_code == 0, result.output
    assert Image.open(run / "contact_sheet.png").width > 0
    assert asked == [["s0", "s3"]]  # only the worst and the best sample are read again


def test_samples_for_needs_to_know_where_the_dataset_is():
    from segzero.evaluation.benchmarks import samples_for

    with pytest.raises(InputError, match="does not record where its dataset is"):
        samples_for(RunConfig(benchmark="reasonseg", split="val"), ["a"])


# --- protocols ---------------------------------------------------------------------------------


def test_a_run_is_compared_only_with_the_same_checkpoint_under_the_same_protocol(tmp_path):
    # A local copy of the released checkpoint compares as the checkpoint.
    local = load_run_summary(_run(tmp_path / "local", reasoner="/models/Seg-Zero-7B-Best-on-ReasonSegTest"))
    row = next(r for r in report_rows([local]) if r.source == "run" and r.subset == "all")
    assert row.vs == "Seg-Zero-7B" and row.delta_giou == pytest.approx(75.0 - 57.5) and row.protocol == "reference"
    # The same checkpoint under segzero's protocol: the paper's figures are shown, never subtracted.
    ours = load_run_summary(_run(tmp_path / "segzero", protocol="segzero"))
    rows = report_rows([ours])
    row = next(r for r in rows if r.source == "run" and r.subset == "all")
    assert row.vs is None and row.delta_giou is None and "evaluate with --protocol reference" in row.note
    assert {r.protocol for r in rows if r.source == "paper"} == {"reference", "LISA", "own paper"}


def test_a_shapeworld_export_is_shown_apart_without_the_papers_figures(tmp_path):
    toy = load_run_summary(_run(tmp_path / "sw", origin="shapeworld"))
    rows = report_rows([toy])
    assert rows and not [r for r in rows if r.source == "paper"]
    assert {r.data for r in rows} == {"ShapeWorld export"} and all(r.vs is None for r in rows)
    console = Console(record=True, width=200)
    console.print(render_report(rows))
    assert "ShapeWorld export, not the paper's data" in console.export_text()


def test_the_report_names_reproducing_md_only_where_it_is_on_disk(tmp_path, monkeypatch):
    from segzero.cli import app
    from segzero.evaluation import report

    doc = report.reproducing_doc()
    assert doc is not None and doc.is_file() and doc.name == "reproducing.md"  # this source checkout has it
    run = _run(tmp_path / "run")
    shown = CliRunner().invoke(app, ["report", str(run)], env={"COLUMNS": "300"})
    assert str(doc) in shown.output
    monkeypatch.setattr(report, "reproducing_doc", lambda: None)  # installed without the docs
    hidden = CliRunner().invoke(app, ["report", str(run)], env={"COLUMNS": "300"})
    assert hidden.exit_code == 0 and "reproducing" not in hidden.output
