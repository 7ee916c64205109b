"""Reasoner x segmenter combinations side by side: speed on the tiny models, memory at the released shapes.

Speed: for each combination (Qwen2.5-VL or Qwen3-VL; SAM 2, SAM 3's tracker with box and points, or SAM 3's
text interface in the ``concept`` mode), the tiny random models of :mod:`segzero.tiny` serve the same
requests in one run: the whole pipeline (every request generates exactly ``--max-new-tokens`` tokens, so all
do the same work) and the segmenter stage alone with answer-shaped prompts (random reasoners seldom write a
parseable answer, so the segmenter would seldom run end to end). Each figure is the median over
``--repeats`` rounds, per request, in this process's CPU time and in wall-clock time.

Memory: parameters of each model at the released shapes, counted on PyTorch's meta device (no weights are
allocated), and their bf16 size. The shapes are those of the released ``config.json`` files; the counts
match the published sizes (Qwen3-VL-8B 8.77B, Qwen2.5-VL-7B 8.29B, ...).

    python benchmarks/combinations.py                # tiny models on this machine
    python benchmarks/combinations.py --memory       # parameter counts and bf16 sizes at the released shapes
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segzero.frames import Frame, ObjectPrompt
from segzero.pipeline import ReasoningSegmenter
from segzero.tiny import build_reasoner, build_sam3, build_segmenter

REASONERS = {"Qwen2.5-VL": "qwen2_5_vl", "Qwen3-VL": "qwen3_vl"}
#: name -> (segmenter architecture, segmenter mode)
SEGMENTERS = {
    "SAM 2": ("sam2", "both"),
    "SAM 3 (box + points)": ("sam3", "both"),
    "SAM 3 (concept)": ("sam3", "concept"),
}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((240 + 20 * i, 320, 3)) * 255).astype(np.uint8)) for i in range(n)]


def speed(args) -> list[dict]:
    """Seconds per request of every combination on the tiny models: wall clock and this process's CPU time.

    The combinations take turns within each of ``--repeats`` rounds, so a machine whose load changes
    during the run slows them alike; the CPU time (torch on ``--threads`` threads) is what a request costs
    even when other processes share the cores.
    """
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reasoners = {name: build_reasoner(Path(tmp) / arch, arch=arch, frame=224) for name, arch in REASONERS.items()}
        segmenters = {"sam2": build_segmenter(Path(tmp) / "sam2"), "sam3": build_sam3(Path(tmp) / "sam3")}
        images = _images(args.images)
        pairs = [
            (img, f"the object number {j} in picture {i}") for i, img in enumerate(images) for j in range(args.per_image)
        ]
        prompts = [
            [ObjectPrompt(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.7), points=((w * 0.4, h * 0.4), (w * 0.45, h * 0.5)),
                          frame=Frame.image((w, h)), label="red cup")]
            for (w, h) in (img.size for img, _ in pairs)
        ]  # fmt: skip
        pipes = {
            (r_name, s_name): ReasoningSegmenter.from_pretrained(
                str(reasoner), str(segmenters[arch]), device=args.device, frame=224, segmenter_mode=mode,
                batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            )
            for r_name, reasoner in reasoners.items()
            for s_name, (arch, mode) in SEGMENTERS.items()
        }  # fmt: skip
        runs = {}
        for key, pipe in pipes.items():
            mode = SEGMENTERS[key[1]][1]
            runs[key] = (
                lambda pipe=pipe: pipe.segment_batch(
                    [p[0] for p in pairs], [p[1] for p in pairs], min_new_tokens=args.max_new_tokens
                ),
                lambda pipe=pipe, mode=mode: pipe.segmenter.segment_many([p[0] for p in pairs], prompts, mode),
            )
        times: dict[tuple, list] = {(key, part): [] for key in runs for part in ("pipeline", "segmenter")}
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for key, (whole, stage) in runs.items():
                for part, fn in (("pipeline", whole), ("segmenter", stage)):
                    wall, cpu = _clock()
                    fn()
                    wall2, cpu2 = _clock()
                    if round_:
                        times[(key, part)].append(((wall2 - wall) / len(pairs), (cpu2 - cpu) / len(pairs)))
    rows = []
    for (r_name, s_name) in runs:
        row = {"reasoner": r_name, "segmenter": s_name, "requests": len(pairs), "threads": args.threads,
               "device": args.device, "max_new_tokens": args.max_new_tokens}  # fmt: skip
        for part in ("pipeline", "segmenter"):
            samples = times[((r_name, s_name), part)]
            row[f"{part}_wall_ms"] = 1000 * statistics.median(t[0] for t in samples)
            row[f"{part}_cpu_ms"] = 1000 * statistics.median(t[1] for t in samples)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- memory at the released shapes


def _qwen3_vl(text: dict, vision: dict, tie: bool):
    from transformers import Qwen3VLConfig

    rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    return Qwen3VLConfig(
        text_config={"vocab_size": 151936, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "head_dim": 128, "rope_parameters": rope, **text},
        vision_config=vision, tie_word_embeddings=tie,
    )  # fmt: skip


def _qwen2_5_vl(text: dict, out: int, tie: bool):
    from transformers import Qwen2_5_VLConfig

    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
    vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": out}
    return Qwen2_5_VLConfig(text_config={"rope_parameters": rope, **text}, vision_config=vision, tie_word_embeddings=tie)


def released_models() -> dict[str, tuple]:
    """name -> (model class name, config) at the released shapes."""
    from transformers import Sam2Config, Sam3Config, Sam3TrackerConfig

    sam2_large = Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": 144, "num_attention_heads": 2,
                "blocks_per_stage": [2, 6, 36, 4], "embed_dim_per_stage": [144, 288, 576, 1152],
                "num_attention_heads_per_stage": [2, 4, 8, 16], "global_attention_blocks": [23, 33, 43],
                "window_size_per_stage": [8, 4, 16, 8], "window_positional_embedding_background_size": [7, 7],
            },
            "backbone_channel_list": [1152, 576, 288, 144],
        }
    )  # fmt: skip
    return {
        "Qwen2.5-VL-3B": ("Qwen2_5_VLForConditionalGeneration", _qwen2_5_vl(
            {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936}, 2048, True)),
        "Qwen2.5-VL-7B (Seg-Zero-7B)": ("Qwen2_5_VLForConditionalGeneration", _qwen2_5_vl(
            {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064}, 3584, False)),
        "Qwen3-VL-4B": ("Qwen3VLForConditionalGeneration", _qwen3_vl(
            {"hidden_size": 2560, "intermediate_size": 9728},
            {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2560,
             "deepstack_visual_indexes": [5, 11, 17]}, True)),
        "Qwen3-VL-8B": ("Qwen3VLForConditionalGeneration", _qwen3_vl(
            {"hidden_size": 4096, "intermediate_size": 12288},
            {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16, "out_hidden_size": 4096,
             "deepstack_visual_indexes": [8, 16, 24]}, False)),
        "SAM 2.1 large": ("Sam2Model", sam2_large),
        "SAM 3 tracker (box + points)": ("Sam3TrackerModel", Sam3TrackerConfig()),
        "SAM 3 detector (concept)": ("Sam3Model", Sam3Config()),
    }  # fmt: skip


def memory() -> list[dict]:
    """Parameters and bf16 bytes of each model at its released shape (meta device: nothing allocated)."""
    import torch
    import transformers

    rows = []
    for name, (cls, config) in released_models().items():
        with torch.device("meta"):
            model = getattr(transformers, cls)(config)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"model": name, "parameters": params, "bf16_gib": params * 2 / 2**30})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="parameter counts at the released shapes instead")
    parser.add_argument("--images", type=int, default=2, help="distinct images")
    parser.add_argument("--per-image", type=int, default=4, help="requests per image")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.memory:
        rows = memory()
        for r in rows:
            print(f"{r['model']:<30} {r['parameters'] / 1e9:>7.3f} B params {r['bf16_gib']:>7.2f} GiB bf16")
    else:
        rows = speed(args)
        print(f"{'reasoner':<11} {'segmenter':<22} {'ms/request: pipeline CPU (wall)':>32} {'segmenter CPU (wall)':>22}")
        for r in rows:
            print(
                f"{r['reasoner']:<11} {r['segmenter']:<22} {r['pipeline_cpu_ms']:>23.1f} ({r['pipeline_wall_ms']:6.1f}) "
                f"{r['segmenter_cpu_ms']:>13.1f} ({r['segmenter_wall_ms']:6.1f})"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
