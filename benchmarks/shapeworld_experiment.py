"""The paper's Table 1 (SFT vs RL, in-domain vs out-of-domain) at toy scale, on ShapeWorld, on a CPU.

Three reasoners, all starting from the same supervised warm-up checkpoint:

* ``warm-up``: the checkpoint itself;
* ``SFT``: supervised training continued on the GRPO stage's training requests, for the same number
  of optimiser steps and prompts per step as GRPO (the same loop as the warm-up);
* ``GRPO``: ``segzero train grpo --config recipes/shapeworld_grpo.yaml`` from the warm-up.

Each is run through the full pipeline (with the same shipped SAM2) on held-out test scenes of the
``referring`` family (in-domain: the family SFT and GRPO train on here) and the ``reasoning`` family
(out-of-domain for this stage, like ReasonSeg for a RefCOCOg-trained model; the warm-up's knowledge
stage taught nine of its twelve templates, as a pretrained language model brings world knowledge),
plus the ``held-out reasoning`` set: the three templates no stage ever trains on. Reported: gIoU, cIoU,
the mean Seg-Zero accuracy reward (bbox_iou + bbox_l1 + points_l1, in [0, 3]) and the format rewards.

    python benchmarks/shapeworld_experiment.py --out runs/shapeworld_experiment --steps 40 --n-eval 64

``--grpo DIR`` reuses a GRPO reasoner already trained from the same warm-up (e.g. the shipped
``models/reasoner``, trained with the recipe's max_steps) instead of training one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"


def eval_sets(n: int) -> dict[str, list]:
    """The held-out test sets: both families, and the reasoning templates no stage trains on."""
    from segzero.shapeworld.generator import FAMILIES, make_split
    from segzero.shapeworld.training.examples import HELD_OUT_TEMPLATES

    sets = {family: list(make_split("test", n, family)) for family in FAMILIES}
    sets["held-out reasoning"] = list(make_split("test", n, "reasoning", templates=HELD_OUT_TEMPLATES))
    return sets


def evaluate(reasoner_dir: Path, segmenter_dir: Path, sets: dict[str, list]) -> dict[str, dict[str, float]]:
    """Per test set: pipeline gIoU/cIoU plus the mean rewards of the same answers."""
    from shapeworld_probes import score_completions

    from segzero.evaluation.results import summarize
    from segzero.pipeline import ReasoningSegmenter
    from segzero.shapeworld.demo import score_samples
    from segzero.shapeworld.shipped import MAX_COMPLETION_TOKENS
    from segzero.shapeworld.training.examples import reasoner_examples

    pipe = ReasoningSegmenter.from_pretrained(
        str(reasoner_dir),
        str(segmenter_dir),
        device="cpu",
        dtype="float32",
        batch_size=16,
        max_new_tokens=MAX_COMPLETION_TOKENS,
    )
    out = {}
    for name, samples in sets.items():
        records = score_samples(pipe, samples)
        summary = summarize(records)["overall"]
        rewards = score_completions([r.answer for r in records], reasoner_examples(samples, pipe.frame))
        out[name] = {
            "giou": summary["giou"],
            "ciou": summary["ciou"],
            "hit_rate": summary["hit_rate"],
            **rewards,
        }
    return out


def main() -> None:
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.shipped import SHIPPED_MODELS
    from segzero.shapeworld.training.common import GRPO_SEED_OFFSET
    from segzero.shapeworld.training.examples import KNOWLEDGE_THINKING, THINKING, reasoner_examples
    from segzero.shapeworld.training.grpo import prepare_grpo_data, run_grpo
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig
    from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=Path,
        default=SHIPPED_MODELS,
        help="folder with reasoner-warmup/ and segmenter/ (default: the shipped models)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/shapeworld_experiment"))
    parser.add_argument(
        "--steps", type=int, default=40, help="optimiser steps of both SFT and GRPO (the recipe's max_steps)"
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=8, help="prompts per step (GRPO: 64 completions / 8 samples)"
    )
    parser.add_argument(
        "--sft-lr", type=float, default=None, help="SFT learning rate (default: the GRPO recipe's)"
    )
    parser.add_argument(
        "--grpo", type=Path, default=None, help="reuse this GRPO reasoner instead of training"
    )
    parser.add_argument(
        "--sft-thinking",
        choices=THINKING,
        default=ShapeWorldTrainConfig().final_thinking,
        help="the SFT targets' thinking: the form the warm-up was last trained on (default: the shipped "
        f"warm-up's, {KNOWLEDGE_THINKING}, from its knowledge stage; scene-echo for one without it)",
    )
    parser.add_argument("--n-eval", type=int, default=64, help="held-out test scenes per family")
    args = parser.parse_args()

    warm, segmenter = args.models / "reasoner-warmup", args.models / "segmenter"
    if args.sft_lr is None:
        args.sft_lr = float(yaml.safe_load(RECIPE.read_text())["learning_rate"])
    args.out.mkdir(parents=True, exist_ok=True)
    n_prompts = args.steps * args.prompts_per_step
    seconds = {}

    grpo = args.grpo
    if grpo is None:
        t = time.perf_counter()
        data = prepare_grpo_data(args.out / "data", n_prompts, 112)
        grpo = run_grpo(
            RECIPE, warm, data, args.out / "grpo", [f"max_steps={args.steps}", "save_strategy=no"]
        )
        seconds["grpo"] = time.perf_counter() - t

    t = time.perf_counter()
    samples = list(make_split("train", n_prompts, "referring", seed_offset=GRPO_SEED_OFFSET))
    sft_dir = args.out / "sft"
    config = SFTLoopConfig(
        steps=args.steps, batch_size=args.prompts_per_step, lr=args.sft_lr, warmup=1, min_lr_ratio=1.0
    )
    # The targets in the warm-up's own form (the thinking of its last supervised stage), continued on the
    # GRPO stage's requests.
    sft_loop(warm, reasoner_examples(samples, 112, args.sft_thinking), sft_dir, config)
    seconds["sft"] = time.perf_counter() - t

    sets = eval_sets(args.n_eval)
    results = {}
    for name, path in (("warm-up", warm), ("SFT", sft_dir), ("GRPO", grpo)):
        t = time.perf_counter()
        results[name] = evaluate(path, segmenter, sets)
        seconds[f"eval {name}"] = time.perf_counter() - t
        print(name, json.dumps(results[name]), flush=True)

    lines = [
        "| reasoner | " + " | ".join(sets) + " | format |",
        "|---|" + "---|" * (len(sets) + 1),
    ]
    for name, r in results.items():
        cells = [
            f"{m['giou']:.3f} / {m['ciou']:.3f} / {m['accuracy']:.3f} ({m['hit_rate']:.1%})"
            for m in r.values()
        ]
        fmt = min(m["seg_format_strict"] for m in r.values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt:.3f} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "results.json").write_text(
        json.dumps(
            {"results": results, "seconds": seconds, "args": {k: str(v) for k, v in vars(args).items()}},
            indent=2,
        )
    )
    (args.out / "table.md").write_text(table + "\n")
    print("Seconds:", json.dumps({k: round(v) for k, v in seconds.items()}))


if __name__ == "__main__":
    main()
