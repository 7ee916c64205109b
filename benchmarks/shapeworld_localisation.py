"""Can the mini Qwen2.5-VL reasoner learn *where* a ShapeWorld shape is? A supervised probe, on a CPU.

Builds a fresh mini reasoner (the shipped size; frame 112 unless ``--frame``) with the given rotary settings, trains it
with the warm-up loop (:func:`segzero.shapeworld.train_models.sft_loop`) on answer-only targets
(``<answer>{box, points}</answer>``, no thinking: the part that needs the image), and evaluates greedy
answers on held-out validation scenes every ``--eval-every`` steps: box IoU with the target, the
Seg-Zero accuracy reward, and the share of answers that parse. docs/shapeworld.md records what it gave:

    python benchmarks/shapeworld_localisation.py --steps 600                                  # released rotary settings
    python benchmarks/shapeworld_localisation.py --steps 1500 --rope-theta 100 --mrope 1,3,12  # fast row/column bands
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def main() -> None:
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.train_models import (
        SFTLoopConfig,
        ShapeWorldTrainConfig,
        build_shapeworld_reasoner,
        reasoner_examples,
        sft_loop,
    )
    from segzero.tiny import QWEN_ROPE_THETA

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/shapeworld_localisation"))
    parser.add_argument("--samples", type=int, default=4000, help="referring training samples")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--frame", type=int, default=112, help="reasoner frame: 112 gives 4x4 image tokens, 224 8x8")
    parser.add_argument("--rope-theta", type=float, default=QWEN_ROPE_THETA)
    parser.add_argument("--mrope", default="", help="time,rows,columns frequency counts, e.g. 1,3,12")
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--n-eval", type=int, default=48)
    args = parser.parse_args()

    frame = args.frame
    build = dataclasses.replace(
        ShapeWorldTrainConfig().reasoner,  # the shipped reasoner's size
        frame=frame,
        rope_theta=args.rope_theta,
        mrope_section=tuple(int(v) for v in args.mrope.split(",")) if args.mrope else None,
    )
    start = build_shapeworld_reasoner(args.out / "init", build)
    train = reasoner_examples(list(make_split("train", args.samples, "referring")), frame, thinking=False)
    held_out = reasoner_examples(list(make_split("val", args.n_eval, "referring")), frame, thinking=False)
    config = SFTLoopConfig(steps=args.steps, lr=args.lr, eval_every=args.eval_every, eval_samples=held_out)
    result = sft_loop(start, train, args.out / "final", config)
    report = {
        "frame": frame,
        "rope_theta": args.rope_theta,
        "mrope_section": build.mrope_section,
        "samples": args.samples,
        "steps": result["steps"],
        "seconds": round(result["seconds"], 1),
        "final_loss": result["final_loss"],
        "evals": [{"step": step, **metrics} for step, metrics in result["evals"]],
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("step | box IoU | accuracy reward | parsed")
    for row in report["evals"]:
        print(f"{row['step']} | {row['box_iou']:.3f} | {row['accuracy']:.3f} | {row['parsed']:.2f}")


if __name__ == "__main__":
    main()
