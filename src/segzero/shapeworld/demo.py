"""``segzero demo``: the whole Seg-Zero loop on a ShapeWorld scene with the shipped mini models, offline.

One scene and a reasoning request go through :class:`segzero.pipeline.ReasoningSegmenter` (the one
way through: reasoner -> answer -> frame mapping -> SAM2); the reasoning, the answer and the mask are
shown and drawn. Then held-out scenes of both request families are evaluated through the evaluation
runner's batch scorer (:func:`segzero.evaluation.runner.run_batch`) and summarised as gIoU / cIoU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero.errors import InputError
from segzero.shapeworld.generator import FAMILIES, SPLIT_SEEDS, make_sample, make_split
from segzero.shapeworld.shipped import MAX_COMPLETION_TOKENS, SHIPPED_MODELS

#: Seeds of the demo's own scene and of its evaluation sets: the start of the ``test`` split.
DEMO_SEED = 7

Log = Callable[[str], None]


@dataclass
class DemoReport:
    """What ``segzero demo`` showed.

    Attributes:
        request / thinking / completion: the demo request, the model's reasoning and raw answer.
        iou: mask IoU of the demo answer against the scene's ground truth.
        overlay: path of the overlay PNG, if one was written.
        metrics: family -> the evaluation summary (``giou``, ``ciou``, ``n``, ``parse_failures``, ...).
        seconds: wall time per stage (``load``, ``demo``, ``eval``).
    """

    request: str
    thinking: str | None
    completion: str
    iou: float
    overlay: Path | None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def shipped_models() -> tuple[Path, Path]:
    """Folders of the shipped reasoner and segmenter.

    Raises:
        InputError: the package was installed without its model files.
    """
    reasoner, segmenter = SHIPPED_MODELS / "reasoner", SHIPPED_MODELS / "segmenter"
    for path in (reasoner, segmenter):
        if not (path / "config.json").is_file():
            raise InputError(
                f"The ShapeWorld model folder {path} is missing; reinstall segzero, or train the models with "
                "`segzero shapeworld train-models --out DIR` and pass --models DIR."
            )
    return reasoner, segmenter


def is_shipped_reasoner(reasoner: str | Path) -> bool:
    """Whether ``reasoner`` (a hub id or folder) is one of the ShapeWorld reasoners shipped in the package."""
    path = Path(reasoner).expanduser()
    return path.is_dir() and path.resolve().parent == SHIPPED_MODELS.resolve()


def load_pipeline(
    models: str | Path | None = None, *, batch_size: int = 16, max_new_tokens: int = MAX_COMPLETION_TOKENS
) -> Any:
    """The ShapeWorld :class:`~segzero.pipeline.ReasoningSegmenter` on the CPU in float32.

    Args:
        models: a folder with ``reasoner/`` and ``segmenter/`` (default: the shipped models).
    """
    from segzero.pipeline import ReasoningSegmenter

    if models is None:
        reasoner, segmenter = shipped_models()
    else:
        reasoner, segmenter = Path(models) / "reasoner", Path(models) / "segmenter"
        if not (reasoner / "config.json").is_file() or not (segmenter / "config.json").is_file():
            raise InputError(
                f"{models} must hold reasoner/ and segmenter/ model folders "
                "(as `segzero shapeworld train-models --out` writes them)."
            )
    return ReasoningSegmenter.from_pretrained(
        str(reasoner),
        str(segmenter),
        device="cpu",
        dtype="float32",
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )


def score_samples(pipe: Any, samples: Sequence[Any]) -> list[Any]:
    """Evaluation records of the pipeline on samples, one per sample, in order.

    Every sample is scored by the evaluation runner's :func:`~segzero.evaluation.runner.run_batch`
    (an unparseable answer counts with intersection 0; nothing is dropped), ``batch_size`` at a time.
    """
    from segzero.evaluation.runner import run_batch

    records = []
    size = int(getattr(pipe, "batch_size", 8))
    for start in range(0, len(samples), size):
        records += [
            rec for rec, _ in run_batch(pipe, samples[start : start + size], "shapeworld", keep_masks=False)
        ]
    return records


def evaluate_family(pipe: Any, family: str, n: int, split: str = "test") -> dict[str, Any]:
    """gIoU / cIoU (and the rest of :func:`segzero.evaluation.results.summarize`) of the pipeline on
    ``n`` held-out samples of one request family."""
    from segzero.evaluation.results import summarize

    return summarize(score_samples(pipe, list(make_split(split, n, family))))["overall"]


#: Header of the per-family evaluation table that :func:`eval_row` fills.
EVAL_HEADER = f"{'family':<10} {'gIoU':>6} {'cIoU':>6} {'IoU>=0.5':>9} {'unparsed':>9}"


def eval_row(family: str, m: dict[str, Any]) -> str:
    """One row of the evaluation table: gIoU, cIoU, share of masks with IoU >= 0.5, unparsed answers."""
    unparsed = f"{m['parse_failures']:>5d}/{m['n']}"
    return f"{family:<10} {m['giou']:>6.3f} {m['ciou']:>6.3f} {m['hit_rate']:>9.0%} {unparsed}"


def run_demo(
    out_dir: str | Path | None = "demo-output",
    *,
    models: str | Path | None = None,
    seed: int = DEMO_SEED,
    family: str = "reasoning",
    n_eval: int = 16,
    families: Sequence[str] = FAMILIES,
    log: Log = print,
) -> DemoReport:
    """Run the demo: one scene end to end, then a held-out evaluation of each family.

    Args:
        out_dir: where ``demo.png`` goes (None: write nothing).
        models: folder with ``reasoner/`` and ``segmenter/`` (default: the shipped ones).
        seed: the demo scene is test-split sample ``seed`` of ``family``.
        n_eval: held-out samples per family (0: skip the evaluation).
    """
    import time

    from segzero.geometry import mask_iou

    t0 = time.perf_counter()
    pipe = load_pipeline(models)
    t1 = time.perf_counter()
    sample = make_sample(SPLIT_SEEDS["test"].start + seed, family)
    result = pipe.segment(sample.image, sample.request)
    iou = mask_iou(result.mask, sample.mask == 1)
    log(f"Scene: {sample.width}x{sample.height} px, test seed {seed}; request ({family}): {sample.request!r}")
    log(f"Reasoning: {result.thinking}")
    answer = result.completion.split("<answer>")[-1].split("</answer>")[0]
    log(f"Answer (reasoner frame {pipe.frame}): {answer}")
    if result.objects:
        prompts = "; ".join(f"box {o.box}, points {list(o.points)}" for o in result.objects)
        log(f"Prompts for SAM2 (image frame): {prompts}")
    else:
        log(f"No usable answer ({result.reason}).")
    log(f"Mask: {int(result.mask.sum())} px, IoU with the ground truth {iou:.3f}")
    overlay = None
    if out_dir is not None:
        overlay = Path(out_dir) / "demo.png"
        overlay.parent.mkdir(parents=True, exist_ok=True)
        result.overlay().save(overlay)  # the 112 px scene enlarged beside its mask, box and points
        log(f"Overlay written to {overlay}")
    t2 = time.perf_counter()
    metrics = {}
    if n_eval > 0:
        log(f"Held-out evaluation, {n_eval} test scenes per family:")
        log("  " + EVAL_HEADER)
        for fam in families:
            metrics[fam] = evaluate_family(pipe, fam, n_eval)
            log("  " + eval_row(fam, metrics[fam]))
    t3 = time.perf_counter()
    seconds = {"load": t1 - t0, "demo": t2 - t1, "eval": t3 - t2}
    log("Time: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    return DemoReport(sample.request, result.thinking, result.completion, iou, overlay, metrics, seconds)
