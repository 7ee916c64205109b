"""Zero, one or many on ShapeWorld: does a short GRPO run with the generalized recipe teach a reasoner to
answer "nothing matches" when nothing does, without losing the requests that do match?

One reasoner folder (default: the shipped warm-up) is measured before and after a short GRPO run from it,
side by side in one run, each through the whole pipeline (with the same SAM2, asked with the same prompt
variant) on held-out test scenes of both request families:

* **N-acc**: of the requests that match no shape (``no_target_share=1``), the share answered with an
  empty list (``<answer>[]</answer>``); ``empty mask`` is the share whose mask came out empty;
* **T-acc**: of the requests that match one shape (the default samples), the share answered with a
  non-empty mask, and their mean mask IoU;
* **gIoU** over both sets, gRefCOCO's way: an empty mask on a request that matches nothing scores 1.

The GRPO data are ShapeWorld training requests of ``--family`` with ``--no-target-share`` of them target-free
(``--multi-target-share`` matching several shapes), their solutions in the ``generalized`` answer form;
the recipe is ``--recipe`` with ``--set`` overrides (default: the ``generalized`` prompt and rewards; any
``--set`` replaces these, so repeat them beside it).

The shipped warm-up was never taught the list form or ``[]``, so GRPO from it samples no empty answer to
reward. ``--sft-steps N`` first runs the supervised loop of the warm-up stages
(:func:`~segzero.shapeworld.training.sft.sft_loop`) for ``N`` steps on requests of ``--family`` in the
generalized form, ``--sft-no-target-share`` of them target-free, asked with the ``generalized`` prompt:
that reasoner is then the one measured "before GRPO" and trained from, and the warm-up is measured too.

    python benchmarks/shapeworld_no_target.py --out runs/sw_no_target --sft-steps 400 --sft-no-target-share 0.25 \
        --no-target-share 0.5 --steps 30 --n-eval 64   # README's "Answering []" (there: --set learning_rate=5e-5)
    python benchmarks/shapeworld_no_target.py --out runs/sw_quick --steps 1 --n-eval 4   # a smoke run

It needs the ``generalized`` answer form, prompt and rewards (``segzero.data.prepared.ANSWER_FORMS``).
``--grpo DIR`` measures a reasoner already trained instead of training one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"
#: The answer form, and the prompt variant, of the generalized recipe.
GENERALIZED = "generalized"

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answers_nothing(completion: str) -> bool:
    """Whether a completion's (last) answer is exactly an empty JSON list."""
    found = _ANSWER.findall(completion or "")
    if not found:
        return False
    try:
        return json.loads(found[-1]) == []
    except ValueError:
        return False


def eval_sets(n: int) -> dict[str, dict[str, list]]:
    """Held-out test samples per family: ``n`` requests that match one shape (the first ``n`` test seeds,
    as ``segzero shapeworld eval`` reads them) and ``n`` that match nothing (the next ``n``)."""
    from segzero.shapeworld.generator import FAMILIES, make_split

    return {
        family: {
            "no target": list(make_split("test", n, family, seed_offset=n, no_target_share=1.0)),
            "target": list(make_split("test", n, family)),
        }
        for family in FAMILIES
    }


def evaluate(reasoner: Path, segmenter: Path, sets: dict[str, dict[str, list]], prompt: str) -> dict:
    """Per family: N-acc, the share of empty masks on no-target requests, T-acc, the mean IoU on target
    requests and gIoU over both, of the pipeline asked with ``prompt``."""
    from segzero.geometry import mask_iou
    from segzero.pipeline import ReasoningSegmenter
    from segzero.shapeworld.shipped import MAX_COMPLETION_TOKENS

    pipe = ReasoningSegmenter.from_pretrained(
        str(reasoner),
        str(segmenter),
        device="cpu",
        dtype="float32",
        batch_size=16,
        max_new_tokens=MAX_COMPLETION_TOKENS,
        prompt=prompt,
    )

    def run(samples: list) -> list:
        results = []
        for start in range(0, len(samples), pipe.batch_size):
            batch = samples[start : start + pipe.batch_size]
            results += pipe.segment_batch([s.image for s in batch], [s.request for s in batch])
        return results

    out = {}
    for family, parts in sets.items():
        empty, target = run(parts["no target"]), run(parts["target"])
        ious = [mask_iou(r.mask, s.mask == 1) for r, s in zip(target, parts["target"])]
        empty_masks = [not r.mask.any() for r in empty]
        out[family] = {
            "n_acc": sum(answers_nothing(r.completion) for r in empty) / max(1, len(empty)),
            "empty_mask": sum(empty_masks) / max(1, len(empty)),
            "t_acc": sum(bool(r.mask.any()) for r in target) / max(1, len(target)),
            "target_iou": sum(ious) / max(1, len(ious)),
            "giou": (sum(empty_masks) + sum(ious)) / max(1, len(empty) + len(ious)),
        }
    return out


def supervised_start(args: argparse.Namespace, out: Path) -> Path:
    """The reasoner GRPO starts from: ``args.reasoner`` trained ``args.sft_steps`` supervised steps on
    generalized-form targets (in the thinking of its last supervised stage) of ``args.family`` training
    requests, ``args.sft_no_target_share`` of them target-free, each read once; saved to ``out``."""
    from segzero.hub import read_model_meta
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.common import GENERALIZED_SFT_SEED_OFFSET
    from segzero.shapeworld.training.examples import reasoner_examples
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig
    from segzero.shapeworld.training.sft import SFTLoopConfig, sft_loop

    config = SFTLoopConfig(
        steps=args.sft_steps, batch_size=args.sft_batch, lr=args.sft_lr, warmup=max(1, args.sft_steps // 10),
        prompt=GENERALIZED,
    )
    samples = make_split(
        "train", args.sft_steps * args.sft_batch, args.family, seed_offset=GENERALIZED_SFT_SEED_OFFSET,
        no_target_share=args.sft_no_target_share,
    )
    frame = int(read_model_meta(args.reasoner)["reasoner_frame"])
    thinking = ShapeWorldTrainConfig().final_thinking
    sft_loop(args.reasoner, reasoner_examples(list(samples), frame, thinking, GENERALIZED), out, config)
    return out


def main() -> None:
    from shapeworld_probes import save_run

    from segzero.data.prepared import ANSWER_FORMS
    from segzero.hub import read_model_meta
    from segzero.rewards import GENERALIZED_REWARDS
    from segzero.shapeworld.generator import FAMILIES, RequestMix
    from segzero.shapeworld.shipped import SHIPPED_MODELS
    from segzero.shapeworld.training.grpo import grpo_requests_read, prepare_grpo_data, run_grpo
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig
    from segzero.shapeworld.training.sft import SFTLoopConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reasoner", type=Path, default=SHIPPED_MODELS / "reasoner-warmup",
        help="the reasoner measured before GRPO and trained from (default: the shipped warm-up)",
    )
    parser.add_argument(
        "--sft-steps", type=int, default=0,
        help="supervised steps on the generalized form before GRPO (0: GRPO from --reasoner itself)",
    )
    parser.add_argument(
        "--sft-batch", type=int, default=SFTLoopConfig().batch_size, help="examples per supervised step"
    )
    parser.add_argument(
        "--sft-lr", type=float, default=ShapeWorldTrainConfig().knowledge.lr,
        help="supervised learning rate (default: the knowledge stage's)",
    )
    parser.add_argument(
        "--sft-no-target-share", type=float, default=0.15, help="of the supervised examples",
    )
    parser.add_argument("--segmenter", type=Path, default=SHIPPED_MODELS / "segmenter")
    parser.add_argument("--out", type=Path, default=Path("runs/shapeworld_no_target"))
    parser.add_argument("--steps", type=int, default=20, help="GRPO optimiser steps (the recipe's max_steps)")
    parser.add_argument("--n-eval", type=int, default=64, help="held-out scenes per family and per set")
    parser.add_argument("--family", choices=FAMILIES, default="referring", help="the GRPO data's family")
    parser.add_argument("--no-target-share", type=float, default=0.3, help="of the GRPO data")
    parser.add_argument("--multi-target-share", type=float, default=0.0, help="of the GRPO data")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument(
        "--set", dest="sets", action="append", default=None, metavar="KEY=VALUE",
        help=f"a recipe override, repeatable (default: prompt={GENERALIZED} and its reward_funcs)",
    )
    parser.add_argument("--prompt", default=GENERALIZED, help="the prompt variant both reasoners are asked")
    parser.add_argument("--grpo", type=Path, default=None, help="measure this GRPO reasoner, not train one")
    args = parser.parse_args()
    if GENERALIZED not in ANSWER_FORMS:
        sys.exit(f"This benchmark needs the {GENERALIZED!r} answer form (answer forms here: "
                 f"{', '.join(ANSWER_FORMS)}); run it on a segzero that has it.")
    generalized = [
        f"prompt={GENERALIZED}",
        f"reward_funcs=[{','.join(GENERALIZED_REWARDS)}]",
        f"reward_weights=[{','.join('1.0' for _ in GENERALIZED_REWARDS)}]",
    ]
    sets_ = args.sets if args.sets is not None else generalized
    overrides = [*sets_, f"max_steps={args.steps}", "save_strategy=no"]
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = {}

    start = args.reasoner
    measured = []
    if args.sft_steps > 0:
        t = time.perf_counter()
        start = supervised_start(args, args.out / "sft")
        seconds["sft"] = time.perf_counter() - t
        measured.append(("warm-up", args.reasoner))

    grpo = args.grpo
    if grpo is None:
        t = time.perf_counter()
        frame = int(read_model_meta(start)["reasoner_frame"])
        mix = RequestMix(args.no_target_share, args.multi_target_share)
        n_prompts = grpo_requests_read(args.recipe, overrides)
        data = prepare_grpo_data(
            args.out / "data", n_prompts, frame, args.family, requests=mix, answer_form=GENERALIZED
        )
        grpo = run_grpo(args.recipe, start, data, args.out / "grpo", overrides)
        seconds["grpo"] = time.perf_counter() - t

    sets = eval_sets(args.n_eval)
    results = {}
    for name, path in (*measured, ("before GRPO", start), ("after GRPO", grpo)):
        t = time.perf_counter()
        results[name] = evaluate(path, args.segmenter, sets, args.prompt)
        seconds[f"eval {name}"] = time.perf_counter() - t
        print(name, json.dumps(results[name]), flush=True)

    columns = " | ".join(f"{family}: N-acc / empty mask / T-acc / target IoU / gIoU" for family in sets)
    lines = [f"| reasoner | {columns} |", "|---|" + "---|" * len(sets)]
    for name, r in results.items():
        cells = [
            f"{m['n_acc']:.1%} / {m['empty_mask']:.1%} / {m['t_acc']:.1%} / {m['target_iou']:.3f} / "
            f"{m['giou']:.3f}"
            for m in r.values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    save_run(args.out, "\n".join(lines), results, seconds, args)


if __name__ == "__main__":
    main()
