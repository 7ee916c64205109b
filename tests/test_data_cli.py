"""`segzero prepare` through typer's CliRunner: writes a dataset that loads back, lists skipped ids."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from segzero.cli import app
from segzero.data import load_prepared, read_prepared
from tests.test_data_fixtures import make_reasonseg, make_refer, make_reference_hf, reasonseg_expected_a

runner = CliRunner()


def test_prepare_refcocog(tmp_path):
    root = make_refer(tmp_path / "src")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["prepare", "refcocog", "--root", str(root), "--split", "val", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "kept 5" in result.output and "skipped 2" in result.output
    assert "6_16" in result.output and "4_14" in result.output
    lines = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {r["id"] for r in lines if not r.get("warning")} == {"4_14", "6_16"}
    data = load_prepared(out)
    assert data.num_rows == 5 and data["id"][0] == "1_10"
    # --limit, and refusing to overwrite.
    again = runner.invoke(
        app, ["prepare", "refcocog", "--root", str(root), "--out", str(out), "--limit", "2"]
    )
    assert again.exit_code != 0 and "--overwrite" in str(again.exception or again.output)
    limited = runner.invoke(
        app,
        [
            "prepare",
            "refcocog",
            "--root",
            str(root),
            "--out",
            str(out),
            "--limit",
            "2",
            "--overwrite",
            "--second-point",
            "reference",
        ],
    )
    assert limited.exit_code == 0, limited.output
    assert load_prepared(out).num_rows == 2


def test_prepare_reasonseg_and_reference(tmp_path):
    out = tmp_path / "rs"
    result = runner.invoke(
        app, ["prepare", "reasonseg", "--root", str(make_reasonseg(tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    samples = list(read_prepared(out))
    assert [s.id for s in samples] == ["a", "b"]
    assert np.array_equal(samples[0].mask, reasonseg_expected_a())

    single, multi, _ = make_reference_hf(tmp_path)
    out2 = tmp_path / "ref"
    result = runner.invoke(app, ["prepare", "reference-hf", "--path", str(multi), "--out", str(out2)])
    assert result.exit_code == 0, result.output
    data = load_prepared(out2)
    assert data.num_rows == 2 and data[0]["reasoner_boxes"] == [[84, 84, 244, 235], [420, 420, 840, 840]]

    bad = runner.invoke(
        app, ["prepare", "reasonseg", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code != 0
