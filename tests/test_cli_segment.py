"""``segzero segment`` and ``segzero batch`` as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli.app import app
from segzero.drawing import display_size
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
    shown = display_size((160, 120))  # enlarged for display, beside its drawn twin, text under both
    assert overlay.width > 2 * shown[0] and overlay.height > shown[1]
    data = json.loads((out / "kitchen.json").read_text())
    assert np.array_equal(decode_rle(data["mask_rle"]), mask)
    assert data["status"] == "ok" and data["image"] == str(photo)
    assert data["files"] == {k: str(out / f"kitchen.{k}") for k in ("mask.png", "overlay.png", "json")}


def test_segment_shows_the_text_as_it_is_written_on_stderr(taught_models, tmp_path, monkeypatch):
    import segzero.cli.segment as command

    pieces = []
    shown = command._LiveText.__call__
    monkeypatch.setattr(
        command._LiveText, "__call__", lambda self, i, text: (pieces.append(text), shown(self, i, text))
    )
    photo = _photo(tmp_path / "kitchen.jpg")
    args = ["segment", str(photo), "the cup", "--out", str(tmp_path / "out"), *_models(taught_models)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    completion = json.loads((tmp_path / "out" / "kitchen.json").read_text())["completion"]
    assert len(pieces) > 5 and "".join(pieces) == completion  # piece by piece, as generated
    assert "Reasoner:" in res.stderr and "it is on the left" in res.stderr and "Reasoner:" not in res.stdout
    assert "Thinking: it is on the left" in res.stdout  # stdout, not a terminal here, keeps the whole result


def test_batch_writes_results_jsonl_and_skipped_jsonl(taught_models, tmp_path):
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "b.png", 80, 60, seed=1)
    (tmp_path / "truncated.png").write_bytes(_photo(tmp_path / "c.png").read_bytes()[:200])
    lines = [
        {"image": "a.png", "request": "the cup", "id": "first"},
        {"image": "b.png", "request": "the dog"},
        {"image": "missing.png", "request": "x"},
        {"image": "a.png", "request": "  "},
        {"image": "truncated.png", "request": "the cat"},
        {"image": "b.png", "request": "the dog again"},
    ]
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["batch", str(jsonl), "--out", str(out), "--batch-size", "2", *_models(taught_models)])
    assert res.exit_code == 1, res.output  # some lines were skipped, the rest ran: exit code 1
    assert "3 segmented" in res.output and "4 skipped" in res.output
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["id"], r["line"]) for r in results] == [("first", 1), (None, 2), (None, 6)]
    assert results[1]["image"] == str(tmp_path / "b.png") and results[1]["image_size"] == [80, 60]
    for r in results:
        mask = np.asarray(Image.open(r["files"]["mask.png"])) > 0
        assert np.array_equal(decode_rle(r["mask_rle"]), mask) and r["status"] == "ok"
        assert Path(r["files"]["overlay.png"]).is_file()
    assert results[0]["files"]["mask.png"] == str(out / "first.mask.png")
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [s["line"] for s in skipped] == [3, 4, 5, 7]
    assert "Image not found" in skipped[0]["reason"] and "empty" in skipped[1]["reason"].lower()
    assert "could not be decoded" in skipped[2]["reason"] and skipped[3]["reason"] == "not valid JSON"


def test_batch_over_a_folder_with_one_request(taught_models, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "b.jpg")
    _photo(photos / "a.png", 80, 60)
    _photo(photos / "a.jpg", 40, 30)  # same name, other ending: its files must not collide
    (photos / "notes.txt").write_text("not an image, and not taken for one")
    out = tmp_path / "out"
    args = ["batch", "--images", str(photos), "--request", "the cup", "--out", str(out), *_models(taught_models)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output  # every request ran
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["a.jpg", "a.png", "b.jpg"]
    assert {r["request"] for r in results} == {"the cup"} and {r["line"] for r in results} == {None}
    assert len({r["files"]["mask.png"] for r in results}) == 3
    assert (out / "skipped.jsonl").read_text() == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "photos"], "--images DIR --request"),
        (["--request", "the cup"], "--images DIR --request"),
        (["requests.jsonl", "--images", "photos", "--request", "x"], "not both"),
        (["--images", "nowhere", "--request", "x"], "Image folder not found"),
        (["--images", "empty", "--request", "x"], "holds no image file"),
    ],
)
def test_batch_input_mistakes_are_one_sentence(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "photos").mkdir()
    res = runner.invoke(app, ["batch", *args])
    assert res.exit_code != 0 and message in str(res.exception)


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
