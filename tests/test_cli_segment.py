"""``segzero segment`` and ``segzero batch`` as a user runs them."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli.app import app
from segzero.masks import decode_rle
from tests.conftest import TAUGHT_FRAME

runner = CliRunner()


def _photo(path, w=160, h=120, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _models(m):
    return ["--reasoner", str(m.reasoner), "--segmenter", str(m.segmenter), "--frame", str(TAUGHT_FRAME),
            "--max-new-tokens", "64", "--device", "cpu"]


def test_segment_writes_mask_overlay_and_json(taught_models, tmp_path):
    photo = _photo(tmp_path / "kitchen.jpg")
    res = runner.invoke(app, ["segment", str(photo), "the cup", "--out", str(tmp_path / "out"), *_models(taught_models)])
    assert res.exit_code == 0, res.output
    assert "Thinking: it is on the left" in res.output
    out = tmp_path / "out"
    mask = np.asarray(Image.open(out / "kitchen.mask.png")) > 0
    assert mask.shape == (120, 160)
    overlay = Image.open(out / "kitchen.overlay.png")
    assert overlay.width == 160 and overlay.height > 120  # caption under the image
    data = json.loads((out / "kitchen.json").read_text())
    assert np.array_equal(decode_rle(data["mask_rle"]), mask)
    assert data["status"] == "ok" and data["image"] == str(photo)


def test_batch_reports_bad_lines_and_goes_on(taught_models, tmp_path):
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "b.png", 80, 60, seed=1)
    lines = [
        {"image": "a.png", "request": "the cup", "id": "first"},
        {"image": "b.png", "request": "the dog"},
        {"image": "missing.png", "request": "x"},
        {"image": "a.png", "request": "  "},
    ]
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    res = runner.invoke(app, ["batch", str(jsonl), "--out", str(tmp_path / "out"), *_models(taught_models)])
    assert res.exit_code == 1  # some lines were skipped
    assert "skipped line 3" in res.output and "skipped line 4" in res.output and "skipped line 5" in res.output
    assert "2 segmented" in res.output
    assert (tmp_path / "out" / "first.json").exists()
    assert json.loads((tmp_path / "out" / "00002-b.json").read_text())["image_size"] == [80, 60]


def test_errors_are_one_sentence_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "nope.jpg"), "cup"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "error: Image not found" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_request_file_is_refused(tmp_path):
    (tmp_path / "r.jsonl").write_text("\n")
    res = runner.invoke(app, ["batch", str(tmp_path / "r.jsonl")])
    assert res.exit_code != 0 and "No usable request" in str(res.exception)
