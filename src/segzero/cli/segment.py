"""``segzero segment``, ``segzero batch`` and ``segzero make-tiny``."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from segzero.answer import NOTHING_MATCHES
from segzero.cli.app import app
from segzero.cli.options import load_pipeline, model_options
from segzero.config import PipelineConfig
from segzero.errors import InputError, ReasonerRequestError, SegZeroError

console = Console(stderr=True)

Out = Annotated[Path, typer.Option("--out", "-o", help="Folder for the mask PNG, overlay PNG and JSON result.")]


#: What ``segzero batch`` writes into its output folder besides the PNGs.
RESULTS_FILE = "results.jsonl"
SKIPPED_FILE = "skipped.jsonl"


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
    live = _LiveText(console)
    try:
        result = pipe.segment(loaded, request, on_text=live)
    finally:
        live.end()
    if result.error:
        raise ReasonerRequestError(f"The reasoner gave no answer: {result.error}.")
    files = result.save(out, _stem(image.stem), extra={"image": str(image)})
    out_console = Console()
    # On one screen the thinking was just shown as it was written; a redirected stdout still gets it.
    on_one_screen = live.shown and console.is_terminal and out_console.is_terminal
    _print_result(result, files, out_console, thinking=not on_one_screen)


class _LiveText:
    """An ``on_text`` (:data:`segzero.reasoner.OnText`) that prints the reasoner's text to ``console`` as
    it is written, so a long generation is never a silent wait; stdout keeps only the result."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.shown = False

    def __call__(self, index: int, text: str) -> None:
        if not self.shown:
            self.console.print("[bold]Reasoner:[/] ", end="")
            self.shown = True
        self.console.out(text, end="", highlight=False)

    def end(self) -> None:
        if self.shown:
            self.console.out("")


def _print_result(result, files: dict[str, str], out: Console, *, thinking: bool = True) -> None:
    out.print(f"[bold]Request:[/] {result.request}", highlight=False)
    if thinking:
        out.print(f"[bold]Thinking:[/] {result.thinking or '(none)'}", highlight=False)
    if result.no_target:
        out.print(f"[bold]{NOTHING_MATCHES}[/]", highlight=False)
    elif result.usable:
        for obj in result.objects:
            out.print(f"[bold]Object:[/] box {obj.box}, points {list(obj.points)}", highlight=False)
        out.print(f"[bold]Mask:[/] {int(result.mask.sum())} pixels, segmenter score {result.score or 0:.3f}")
    else:
        out.print(f"[bold yellow]No usable answer[/] ({result.status.value}): {result.reason}", highlight=False)
    out.print(f"Wrote {', '.join(files.values())}", highlight=False)


def read_requests(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read a JSONL of ``{"image": PATH, "request": TEXT[, "id": NAME]}``; image paths relative to the file.

    Returns:
        The usable records (with ``line`` and the resolved ``image``) and, for each line that is not,
        ``{"line": n, "image": PATH or None, "reason": ...}``.
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
            bad.append({"line": n, "image": None, "reason": "not valid JSON"})
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) or not isinstance(rec.get("request"), str):
            bad.append({"line": n, "image": None, "reason": 'needs "image" and "request" strings'})
            continue
        image = Path(rec["image"]).expanduser()
        rec["image"] = str(image if image.is_absolute() else path.parent / image)
        rec["line"] = n
        rec["id"] = None if rec.get("id") is None else str(rec["id"])
        good.append(rec)
    return good, bad


def folder_requests(folder: Path, request: str) -> list[dict[str, Any]]:
    """One record per image file in ``folder`` (:func:`segzero.images.image_files`), each asking ``request``;
    the id is the file's name."""
    from segzero.images import image_files

    return [{"image": str(p), "request": request, "id": p.name, "line": None} for p in image_files(folder)]


def _batch_inputs(
    requests_file: Path | None, images: Path | None, request: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requests to run and those refused, from a JSONL file or from a folder and one request."""
    if requests_file is not None and (images is not None or request is not None):
        raise InputError("Give either a JSONL request file or --images DIR --request TEXT, not both.")
    if requests_file is not None:
        return read_requests(requests_file)
    if images is None or request is None:
        raise InputError(
            'Give a JSONL request file, or a folder of images and one request: --images DIR --request "...".'
        )
    return folder_requests(images, request), []


class _Skips:
    """The requests ``segzero batch`` could not run: printed as they are found, written to skipped.jsonl."""

    def __init__(self, path: Path, console: Console) -> None:
        self.path, self.console, self.entries = path, console, []

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        where = f"line {entry['line']}" if entry.get("line") is not None else entry.get("image")
        self.console.print(f"[yellow]skipped {where}:[/] {entry['reason']}", highlight=False)
        self.write()

    def write(self) -> None:
        rows = sorted(self.entries, key=lambda e: (e.get("line") or 0, e.get("image") or ""))
        self.path.write_text("".join(json.dumps(e) + "\n" for e in rows), encoding="utf-8")


@app.command()
@model_options()
def batch(
    requests_file: Annotated[
        Path | None,
        typer.Argument(help='JSONL, one {"image": ..., "request": ..., "id": optional} per line.', show_default=False),
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="A folder of images to ask --request about (instead of a JSONL).")
    ] = None,
    request: Annotated[str | None, typer.Option("--request", help="The request asked of every --images file.")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.jsonl, skipped.jsonl and each mask and overlay PNG.")
    ] = Path("segzero-out"),
    *,
    model: PipelineConfig,
) -> None:
    """Segment many requests in batches: a JSONL file, or every image of a folder with one request.

    Writes OUT/results.jsonl (one result a line, in input order), OUT/skipped.jsonl (each request that could
    not run: its line and why) and OUT/NAME.mask.png and OUT/NAME.overlay.png per result. Exit code 0 when
    every request ran, 1 when some were skipped or failed in the reasoner (the rest ran), 2 when none could
    run.
    """
    from segzero.images import load_image
    from segzero.prompts import normalize_request

    records, refused = _batch_inputs(requests_file, images, request)
    source = requests_file if requests_file is not None else images
    out.mkdir(parents=True, exist_ok=True)
    skips = _Skips(out / SKIPPED_FILE, console)
    for entry in refused:
        skips.add(entry)
    ready = []
    for rec in records:  # cheap checks first, so bad input fails before minutes of model loading
        try:
            normalize_request(rec["request"])
            path = Path(rec["image"])
            if not path.is_file():
                raise InputError(f"Image not found: {path}; check the path.")
            ready.append(rec)
        except SegZeroError as exc:
            skips.add({"line": rec["line"], "image": rec["image"], "reason": str(exc)})
    skips.write()
    if not ready:
        raise InputError(f"No usable request in {source} ({len(skips.entries)} skipped; see {skips.path}).")
    pipe = load_pipeline(model)
    names: set[str] = set()
    handed: deque[list[dict[str, Any]]] = deque()  # the records of each chunk given to the pipeline, in order
    unusable = segmented = lost = nothing = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())  # fmt: skip
    results_path = out / RESULTS_FILE
    with results_path.open("w", encoding="utf-8") as results_file, Progress(*columns, console=console) as bar:
        task = bar.add_task("Segmenting", total=len(ready))

        def chunks() -> Iterator[tuple[list[Any], list[str]]]:
            """Each chunk's images, loaded as the pipeline asks for it; an unreadable one is skipped."""
            for start in range(0, len(ready), model.batch_size):
                chunk, loaded = [], {}
                for rec in ready[start : start + model.batch_size]:
                    try:
                        if rec["image"] not in loaded:
                            loaded[rec["image"]] = load_image(rec["image"], model.max_pixels)
                        chunk.append(rec)
                    except SegZeroError as exc:
                        skips.add({"line": rec["line"], "image": rec["image"], "reason": str(exc)})
                        bar.advance(task)
                handed.append(chunk)
                yield [loaded[r["image"]] for r in chunk], [r["request"] for r in chunk]

        # A streaming engine (vllm, openai) is handed the next chunks while this one is written.
        for answered in pipe.segment_chunks(chunks()):
            chunk = handed.popleft()
            if isinstance(answered, Exception):
                raise answered
            for rec, result in zip(chunk, answered):
                name = _unique(_result_name(rec), names)
                files = result.save(out, name, write_json=False)
                line = {"id": rec["id"], "line": rec["line"], "image": rec["image"], **result.to_json(),
                        "files": files}  # fmt: skip
                results_file.write(json.dumps(line) + "\n")
                unusable += not result.usable
                nothing += result.no_target
                segmented += 1
                if result.error:
                    lost += 1
                    where = f"line {rec['line']}" if rec["line"] is not None else rec["image"]
                    console.print(f"[yellow]{where} failed in the reasoner:[/] {result.error}",
                                  highlight=False)  # fmt: skip
            results_file.flush()
            bar.advance(task, len(chunk))
    console.print(
        f"{segmented} segmented ("
        + (f"{nothing} where nothing matches, " if nothing else "")
        + f"{unusable} without a usable answer"
        + (f", {lost} of them failed in the reasoner" if lost else "")
        + f"), {len(skips.entries)} skipped; results in {results_path}"
        + (f", skipped requests in {skips.path}" if skips.entries else ""),
        highlight=False,
    )
    if skips.entries or lost:
        raise typer.Exit(1)


def _result_name(rec: dict[str, Any]) -> str:
    """The file name stem of a batch result: its id (a folder's file name without the ending), else its
    line number and image name."""
    if rec["line"] is None:
        return _stem(Path(rec["id"]).stem)
    return _stem(rec["id"] or f"{rec['line']:05d}-{Path(rec['image']).stem}")


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when it is taken; records it as taken."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


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
