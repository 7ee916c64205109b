"""Can a fresh mini Qwen2.5-VL reasoner learn *where* a ShapeWorld shape is? Supervised probes, on a CPU.

Builds a fresh reasoner of the shipped size with the given rotary settings, trains it with the warm-up
loop (:func:`segzero.shapeworld.training.sft.sft_loop`, the ``seg_zero`` prompt) on one of four tasks,
and evaluates greedy answers on held-out validation scenes every ``--eval-every`` steps:

* ``quadrant``: one shape, the request "the shape", the answer ``<answer>top left</answer>``: only
  *where* the shape is, in one word per axis (accuracy; chance 0.25);
* ``box``: one shape, the same request, the answer ``<answer>{"bbox": ..., "points_1": ..., ...}</answer>``
  (box IoU with the target);
* ``referring``: referring requests whose thinking is the generator's one-line explanation, on
  ``--n-shapes`` scenes (box IoU; held-out scenes always have 2-4 shapes);
* ``scene``: the warm-up's kind of task: referring requests whose thinking lists every shape with its
  box before naming the target (:func:`segzero.shapeworld.training.examples.scene_thinking`; box IoU).

It also reports how much the answer depends on the image (total variation between two images' next-token
distributions; :func:`shapeworld_probes.answer_image_dependence`). docs/shapeworld-log.md records what
it gave:

    python benchmarks/shapeworld_localisation.py --task quadrant --rope-theta 1e6 --mrope 4,6,6   # released
    python benchmarks/shapeworld_localisation.py --task quadrant                                   # shipped
    python benchmarks/shapeworld_localisation.py --task referring --n-shapes 1,4 --steps 3000
    python benchmarks/shapeworld_localisation.py --task scene --n-shapes 1,4 --steps 3000 --eval-every 750
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from shapeworld_probes import answer_image_dependence, evaluate_reasoner

from segzero.shapeworld.training.examples import ReasonerExample, ShapeWorldExamples, reasoner_examples
from segzero.shapeworld.training.reasoner import build_shapeworld_reasoner
from segzero.shapeworld.training.run import ShapeWorldTrainConfig
from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

#: The request of the one-shape tasks.
THE_SHAPE = "the shape"


def one_shape_examples(split: str, n: int, task: str, frame: int) -> list:
    """``n`` one-shape scenes of a split (disjoint scene seeds), asked :data:`THE_SHAPE`."""
    from PIL import Image

    from segzero.data.prepared import build_solution
    from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame
    from segzero.geometry import mask_prompts
    from segzero.shapeworld.generator import SCENES_PER_SEED, SPLIT_SEEDS, generate_scene

    out = []
    for i in range(n):
        scene = generate_scene((SPLIT_SEEDS[split].start + i) * SCENES_PER_SEED + 7, n_shapes=(1, 1))
        shape = scene.shapes[0]
        image = Image.fromarray(scene.image)
        if task == "quadrant":
            x, y = shape.centre
            half = scene.size / 2
            word = ("top" if y < half else "bottom") + " " + ("left" if x < half else "right")
            out.append(ReasonerExample(image, THE_SHAPE, f"<answer>{word}</answer>", [], []))
            continue
        box, points = mask_prompts(shape.mask)
        image_frame = Frame.image((scene.size, scene.size))
        mapped = to_reasoner_frame(ObjectPrompt.from_lists(box, points, image_frame), frame)
        boxes, points = [list(mapped.box)], [[list(p) for p in mapped.points]]
        answer = f"<answer>{build_solution(boxes, points, 'single')}</answer>"
        out.append(ReasonerExample(image, THE_SHAPE, answer, boxes, points))
    return out


def quadrant_accuracy(reasoner, examples) -> dict[str, float]:
    answers = reasoner.generate([ex.image for ex in examples], [THE_SHAPE] * len(examples), max_new_tokens=10)
    words = [ex.completion.removeprefix("<answer>").removesuffix("</answer>") for ex in examples]
    return {
        "accuracy": sum(a.strip().removeprefix("<answer>").startswith(w) for a, w in zip(answers, words))
        / len(examples),
        "row_accuracy": sum(a.strip().removeprefix("<answer>")[:3] == w[:3] for a, w in zip(answers, words))
        / len(examples),
    }


def main() -> None:
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=("quadrant", "box", "referring", "scene"), default="quadrant")
    parser.add_argument("--out", type=Path, default=Path("runs/shapeworld_localisation"))
    parser.add_argument("--samples", type=int, default=8000, help="training samples")
    parser.add_argument(
        "--n-shapes",
        default="2,4",
        help="least,most shapes of the referring and scene tasks' training scenes",
    )
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--frame", type=int, default=112, help="reasoner frame: 112 gives 4x4 image tokens, 224 8x8"
    )
    parser.add_argument("--rope-theta", type=float, default=None, help="default: the shipped reasoner's")
    parser.add_argument(
        "--mrope", default="", help="time,rows,columns frequency counts (default: the shipped)"
    )
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--n-eval", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--vision-lr-scale", type=float, default=1.0,
        help="the vision tower's learning rate as a share of --lr; 0 keeps it at its random initial weights",
    )  # fmt: skip
    args = parser.parse_args()

    build = dataclasses.replace(ShapeWorldTrainConfig().reasoner, frame=args.frame)
    if args.rope_theta is not None:
        build = dataclasses.replace(build, rope_theta=args.rope_theta)
    if args.mrope:
        build = dataclasses.replace(build, mrope_section=tuple(int(v) for v in args.mrope.split(",")))
    start = build_shapeworld_reasoner(args.out / "init", build)
    n_shapes = tuple(int(v) for v in args.n_shapes.split(","))
    if args.task in ("referring", "scene"):
        thinking = "explanation" if args.task == "referring" else "scene"
        train = ShapeWorldExamples(
            "train", args.samples, "referring", args.frame, thinking=thinking, n_shapes=n_shapes
        )
        held_out = reasoner_examples(
            list(make_split("val", args.n_eval, "referring")), args.frame, thinking=thinking
        )
    else:
        train = one_shape_examples("train", args.samples, args.task, args.frame)
        held_out = one_shape_examples("val", args.n_eval, args.task, args.frame)

    def evaluate(reasoner, examples) -> dict[str, float]:
        if args.task == "quadrant":
            return quadrant_accuracy(reasoner, examples)
        metrics = evaluate_reasoner(reasoner, examples)
        return {k: metrics[k] for k in ("box_iou", "accuracy", "parsed")}

    config = SFTLoopConfig(
        steps=args.steps, lr=args.lr, threads=args.threads, eval_every=args.eval_every, eval_samples=held_out,
        evaluate=evaluate, vision_lr_scale=args.vision_lr_scale,
    )  # fmt: skip
    result = sft_loop(start, train, args.out / "final", config)
    reasoner = Reasoner.from_pretrained(
        str(args.out / "final"), device="cpu", dtype="float32", frame=args.frame
    )
    dependence = answer_image_dependence(
        reasoner,
        [ex.image for ex in held_out[:8]],
        [held_out[0].request, held_out[1].request],
        prefix="<answer>",
    )
    report = {
        "task": args.task,
        "frame": args.frame,
        "rope_theta": build.rope_theta,
        "mrope_section": build.mrope_section,
        "samples": args.samples,
        "vision_lr_scale": args.vision_lr_scale,
        "n_shapes": args.n_shapes if args.task in ("referring", "scene") else "1,1",
        "steps": result["steps"],
        "seconds": round(result["seconds"], 1),
        "final_loss": result["final_loss"],
        "image_dependence": dependence["image"],
        "evals": [{"step": step, **metrics} for step, metrics in result["evals"]],
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"task {args.task}, rope_theta {build.rope_theta}, mrope_section {build.mrope_section}: "
        f"final loss {result['final_loss']:.4f}, image dependence {dependence['image']:.3f}"
    )
    for row in report["evals"]:
        print(f"  step {row['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "step"))


if __name__ == "__main__":
    main()
