"""``segzero segment``, ``segzero batch`` and ``segzero make-tiny``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segzero.cli.app import app
from segzero.cli.options import load_pipeline, model_options
from segzero.config import PipelineConfig
from segzero.errors import InputError, ReasonerRequestError, SegZeroError

console = Console(stderr=True)

#: What the commands say when the model answers that nothing in the image matches (status ``no_target``).
NOTHING_MATCHES = "Nothing matches: nothing in the image matches the request, so the mask is empty."

Out = Annotated[Path, typer.Option("--out", "-o", help="Folder for the mask PNG, overlay PNG and JSON result.")]


def write_result(result, image, out_dir: Path, stem: str, extra: dict[str, Any]) -> dict[str, str]:
    """Write ``STEM.mask.png``, ``STEM.overlay.png`` and ``STEM.json`` (mask as COCO RLE); return the paths."""
    from segzero.masks import draw_overlay, save_mask_png

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {k: str(out_dir / f"{stem}.{k}") for k in ("mask.png", "overlay.png", "json")}
    save_mask_png(result.mask, files["mask.png"])
    caption = f"Request: {result.request}\n" + (f"Thinking: {result.thinking}" if result.thinking else "")
    if result.no_target:
        caption += f"\n{NOTHING_MATCHES}"
    elif not result.status.usable:
        caption += f"\nNo usable answer: {result.reason}"
    draw_overlay(image, result.mask, result.objects, caption).save(files["overlay.png"])
    record = {**extra, **result.to_json(), "files": files}
    Path(files["json"]).write_text(json.dumps(record, indent=2))
    return files


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "result"


@app.command()
@model_options(without=("batch_size",))
def segment(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, WebP, ...).")],
    request: Annotated[str, typer.Argument(help="What to segment, e.g. 'what can I use to cut the bread?'.")],
    out: Out = Path("segzero-out"),
    *,
    model: PipelineConfig,
) -> None:
    """Segment what REQUEST means in IMAGE; print the reasoning and write mask, overlay and JSON."""
    from segzero.images import load_image
    from segzero.prompts import normalize_request

    loaded = load_image(image, model.max_pixels)  # bad input fails before minutes of model loading
    normalize_request(request)
    pipe = load_pipeline(model)
    result = pipe.segment(loaded, request)
    if result.error:
        raise ReasonerRequestError(f"The reasoner gave no answer: {result.error}.")
    files = write_result(result, loaded, out, _stem(image.stem), {"image": str(image)})
    _print_result(result, files)


def _print_result(result, files: dict[str, str]) -> None:
    out = Console()
    out.print(f"[bold]Request:[/] {result.request}", highlight=False)
    out.print(f"[bold]Thinking:[/] {result.thinking or '(none)'}", highlight=False)
    if result.no_target:
        out.print(f"[bold]{NOTHING_MATCHES}[/]", highlight=False)
    elif result.status.usable:
        for obj in result.objects:
            out.print(f"[bold]Object:[/] box {obj.box}, points {list(obj.points)}", highlight=False)
        out.print(f"[bold]Mask:[/] {int(result.mask.sum())} pixels, SAM2 score {result.score or 0:.3f}")
    else:
        out.print(f"[bold yellow]No usable answer[/] ({result.status.value}): {result.reason}", highlight=False)
    out.print(f"Wrote {files['mask.png']}, {files['overlay.png']}, {files['json']}", highlight=False)


def read_requests(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Read a JSONL of ``{"image": PATH, "request": TEXT[, "id": NAME]}``; image paths relative to the file.

    Returns the good records (with ``line`` and resolved ``image``) and ``(line, reason)`` for bad ones.
    """
    if not path.is_file():
        raise InputError(f"Request file not found: {path}.")
    good, bad = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append((n, "not valid JSON"))
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) or not isinstance(rec.get("request"), str):
            bad.append((n, 'needs "image" and "request" strings'))
            continue
        image = Path(rec["image"]).expanduser()
        rec["image"] = str(image if image.is_absolute() else path.parent / image)
        rec["line"] = n
        good.append(rec)
    return good, bad


@app.command()
@model_options()
def batch(
    requests_file: Annotated[Path, typer.Argument(help='JSONL, one {"image": ..., "request": ...} per line.')],
    out: Out = Path("segzero-out"),
    *,
    model: PipelineConfig,
) -> None:
    """Segment every request of a JSONL file in batches; bad lines are reported and skipped, the rest go on."""
    from segzero.images import load_image
    from segzero.prompts import normalize_request

    records, bad = read_requests(requests_file)
    ready = []
    images: dict[str, Any] = {}
    for rec in records:
        try:
            normalize_request(rec["request"])
            if rec["image"] not in images:
                images[rec["image"]] = load_image(rec["image"], model.max_pixels)
            ready.append(rec)
        except SegZeroError as exc:
            bad.append((rec["line"], str(exc)))
    for line, reason in sorted(bad):
        console.print(f"[yellow]skipped line {line}:[/] {reason}", highlight=False)
    if not ready:
        raise InputError(f"No usable request in {requests_file} ({len(bad)} skipped).")
    pipe = load_pipeline(model)
    chunks = [ready[start : start + model.batch_size] for start in range(0, len(ready), model.batch_size)]
    failed = lost = nothing = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("Segmenting", total=len(ready))
        # A streaming engine (vllm, openai) is handed the next chunks while this one is written.
        answered = pipe.segment_chunks(([images[r["image"]] for r in c], [r["request"] for r in c]) for c in chunks)
        for chunk, results in zip(chunks, answered):
            if isinstance(results, Exception):
                raise results
            for rec, result in zip(chunk, results):
                stem = _stem(str(rec.get("id") or f"{rec['line']:05d}-{Path(rec['image']).stem}"))
                extra = {"id": rec.get("id"), "line": rec["line"], "image": rec["image"]}
                write_result(result, images[rec["image"]], out, stem, extra)
                failed += not result.status.usable
                nothing += result.no_target
                if result.error:
                    lost += 1
                    console.print(f"[yellow]line {rec['line']} failed:[/] {result.error}", highlight=False)
            progress.advance(task, len(chunk))
    console.print(
        f"{len(ready)} segmented ("
        + (f"{nothing} where nothing matches, " if nothing else "")
        + f"{failed} without a usable answer"
        + (f", {lost} of them failed in the reasoner" if lost else "")
        + f"), {len(bad)} skipped; results in {out}",
        highlight=False,
    )
    if bad or lost:
        raise typer.Exit(1)


@app.command("make-tiny")
def make_tiny_command(
    out: Annotated[Path, typer.Argument(help="Folder to write reasoner/ and segmenter/ into.")],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    frame: Annotated[
        int, typer.Option(help="Reasoner frame side (a multiple of 28 for Qwen2.5-VL, of 32 for Qwen3-VL).")
    ] = 224,
    reasoner_arch: Annotated[str, typer.Option(help="Reasoner architecture: qwen2_5_vl or qwen3_vl.")] = "qwen2_5_vl",
    segmenter_arch: Annotated[str, typer.Option(help="Segmenter architecture: sam2 or sam3.")] = "sam2",
) -> None:
    """Build a tiny random reasoner (Qwen2.5-VL or Qwen3-VL) and segmenter (SAM 2 or SAM 3) offline, for tests
    and for trying every command without the hub."""
    from segzero.tiny import make_tiny

    models = make_tiny(out, seed=seed, frame=frame, reasoner_arch=reasoner_arch, segmenter_arch=segmenter_arch)
    Console().print(f"reasoner: {models.reasoner}\nsegmenter: {models.segmenter}", highlight=False)
