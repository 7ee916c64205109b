"""The same requests through each reasoner engine available, side by side in one run.

Each engine runs the whole pipeline (``segment_batch``: all requests at once; transformers cuts them into
``--batch-size`` generate calls) and gets a row: requests/s end to end, completion tokens/s, and the
stages per request (``reason``: the reasoner's share of the wall time; ``segment``: the segmenter's). The
segmenter is also timed on its own, on answer-shaped prompts (one box and two points per request), so one
can see it keeps up with the fastest engine.

On a CPU (the default, ``--config tiny``): the taught tiny reasoner (it answers a fixed, parseable 55-token
completion, so the segmenter runs on every request) through transformers and through the openai engine
over ``transformers serve``, which the benchmark starts on loopback::

    python benchmarks/engines.py

On a GPU, ``--config 7b``: a reasoner of Qwen2.5-VL-7B's shapes at the 840 frame (random weights; vLLM loads
it with ``load_format="dummy"``, transformers initialises it on the GPU) and SAM2-large's shapes at 1024 px.
Random reasoners write no parseable answer, so every request is made to generate exactly
``--max-new-tokens`` tokens (the same work for every engine) and the end-to-end figure adds the segmenter's
own time on answer-shaped prompts, as if it ran after the reasoner (it overlaps with it in the pipeline)::

    python benchmarks/engines.py --config 7b --engines transformers,vllm --device cuda \\
        --requests 256 --images 64 --max-new-tokens 256 --batch-size 32

``--reasoner-url URL`` adds the openai engine against a server you run (e.g. ``vllm serve DIR
--load-format dummy``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segzero.config import PipelineConfig
from segzero.frames import Frame, ObjectPrompt
from segzero.pipeline import ReasoningSegmenter
from segzero.tiny import SAM2_LARGE, TAUGHT_FRAME, build_reasoner, build_segmenter, make_tiny, teach

#: Qwen2.5-VL-7B's language model and vision tower (with the tiny tokenizer's small vocabulary).
QWEN25_VL_7B = dict(
    hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
    vision_depth=32, vision_hidden=1280, vision_heads=16, tie_word_embeddings=False,
)  # fmt: skip


def prepare_models(args) -> tuple[Path, Path, int]:
    """Reasoner folder, segmenter folder and frame of ``--config``, built into ``--models`` once and reused."""
    root = Path(args.models)
    reasoner, segmenter = root / "reasoner", root / "segmenter"
    if args.config == "tiny":
        if not (root / "taught").is_file():
            make_tiny(root, seed=1, frame=TAUGHT_FRAME)
            teach(reasoner)
            (root / "taught").write_text("")
        return reasoner, segmenter, TAUGHT_FRAME
    if not (reasoner / "config.json").is_file():
        build_reasoner(reasoner, frame=840, weights=False, **QWEN25_VL_7B)
    if not (segmenter / "config.json").is_file():
        build_segmenter(segmenter, **SAM2_LARGE)
    return reasoner, segmenter, 840


#: What the requests ask for: short phrases, as the taught tiny reasoner was taught on.
OBJECTS = ("cup", "dog", "knife", "bread", "plate", "chair", "lamp", "book")


def workload(n: int, distinct: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    """``n`` requests on ``distinct`` photo-sized noise images (640 wide, about 480 high), spread evenly."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray((rng.random((480 - 8 * i, 640, 3)) * 255).astype(np.uint8)) for i in range(distinct)]
    images = [photos[i % distinct] for i in range(n)]
    requests = [f"the {OBJECTS[(i // distinct) % len(OBJECTS)]}" for i in range(n)]
    return images, requests


class TransformersServe:
    """``transformers serve REASONER`` on a free loopback port, stopped on exit."""

    def __init__(self, reasoner: Path, device: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
        command = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                   str(reasoner), "--host", "127.0.0.1", "--port", str(self.port), "--device", device]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> TransformersServe:
        import httpx

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            time.sleep(1)
        self.__exit__()
        raise RuntimeError(f"transformers serve did not start; see {self.log.name}")

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


def build_pipeline(engine: str, reasoner: Path, segmenter: Path, frame: int, args, url: str | None):
    """The pipeline of one engine; the 7b config's transformers reasoner is initialised on the device."""
    settings = dict(device=args.device, dtype=args.dtype, frame=frame, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens)  # fmt: skip
    if engine == "openai":
        settings.update(engine="openai", reasoner_url=url, max_in_flight=args.max_in_flight)
    elif engine == "vllm":
        vllm_args = {"load_format": "dummy"} if args.config == "7b" else {}
        settings.update(engine="vllm", vllm_args=json.dumps(vllm_args))
    elif args.config == "7b":
        return random_transformers_pipeline(reasoner, segmenter, frame, settings)
    return ReasoningSegmenter.from_pretrained(str(reasoner), str(segmenter), **settings)


def random_transformers_pipeline(reasoner: Path, segmenter: Path, frame: int, settings: dict):
    """The transformers engine on a random reasoner built from ``reasoner``'s config on the device (no weights
    on disk: 7B of them would not fit)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from segzero.hub import pick_device, pick_dtype
    from segzero.reasoner import Reasoner
    from segzero.segmenter import load_segmenter

    device = pick_device(settings["device"])
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            AutoConfig.from_pretrained(reasoner), dtype=pick_dtype(device, settings["dtype"])
        ).eval()
    engine = Reasoner(model, AutoProcessor.from_pretrained(reasoner), frame=frame, name=str(reasoner))
    config = PipelineConfig(reasoner=str(reasoner), segmenter=str(segmenter), **settings)
    return ReasoningSegmenter(engine, load_segmenter(str(segmenter), device=device, dtype=settings["dtype"]), config)


def run_engine(pipe, images, requests, args) -> dict:
    """One timed run of every request through ``pipe`` (after a short warm-up)."""
    gen = {"min_new_tokens": args.max_new_tokens} if args.config == "7b" else {}
    pipe.segment_batch(images[:2], requests[:2], **gen)
    t0 = time.perf_counter()
    results = pipe.segment_batch(images, requests, **gen)
    wall = time.perf_counter() - t0
    tokenizer = _tokenizer(pipe)
    tokens = sum(len(tokenizer(r.completion, add_special_tokens=False)["input_ids"]) for r in results)
    reason = sum(r.timings["reason"] for r in results)
    segment = sum(r.timings["segment"] for r in results)
    return {
        "engine": pipe.reasoner.engine,
        "requests": len(requests),
        "wall_s": wall,
        "requests_per_s": len(requests) / wall,
        "tokens_per_s": tokens / wall,
        "mean_completion_tokens": tokens / len(results),
        # Stage shares of the wall time (the stages overlap on a streaming engine: reason is its latency).
        "reason_s_per_request": reason / len(results),
        "segment_s_per_request": segment / len(results),
        "parsed": sum(r.status.value in ("ok", "partial") for r in results),
        "failed": sum(r.error is not None for r in results),
        "completions": [r.completion for r in results[:3]],
    }


def _tokenizer(pipe):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pipe.config.reasoner)


def segmenter_alone(pipe, images, args) -> float:
    """Requests/s of the segmenter stage alone on answer-shaped prompts (median of ``--repeats``)."""
    def shaped(w: int, h: int) -> list[ObjectPrompt]:
        return [ObjectPrompt(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.7), points=((w * 0.4, h * 0.4), (w * 0.45, h * 0.5)),
                             frame=Frame.image((w, h)))]  # fmt: skip

    prompts = [shaped(*img.size) for img in images]
    pipe.segmenter.segment_many(images[:2], prompts[:2])
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pipe.segmenter.segment_many(images, prompts)
        times.append(time.perf_counter() - t0)
    return len(images) / statistics.median(times)


def _free_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("tiny", "7b"), default="tiny")
    parser.add_argument("--engines", default=None, help="comma-separated (default: transformers,openai)")
    parser.add_argument("--reasoner-url", default=None, help="openai engine: a running server (default: start "
                        "transformers serve on loopback)")  # fmt: skip
    parser.add_argument("--models", default=None, help="folder to build the models into, reused (default: temporary)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--images", type=int, default=8, help="distinct images among the requests")
    parser.add_argument("--batch-size", type=int, default=8, help="transformers: requests per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timings of the segmenter alone")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    engines = (args.engines or "transformers,openai").split(",")
    with contextlib.ExitStack() as stack:
        args.models = args.models or stack.enter_context(tempfile.TemporaryDirectory())
        reasoner, segmenter, frame = prepare_models(args)
        url = args.reasoner_url
        if "openai" in engines and url is None:
            url = stack.enter_context(TransformersServe(reasoner, args.device or "cpu")).url
        images, requests = workload(args.requests, args.images)
        rows, sam_rps = [], None
        for engine in engines:
            pipe = build_pipeline(engine, reasoner, segmenter, frame, args, url)
            rows.append(run_engine(pipe, images, requests, args))
            if sam_rps is None:
                sam_rps = segmenter_alone(pipe, images, args)
            pipe.close()
            del pipe
            gc.collect()
            _free_gpu_cache()  # vLLM sizes its cache by the GPU memory free when it starts
    base = rows[0]["requests_per_s"]
    print(f"{len(requests)} requests on {args.images} images, config {args.config}; segmenter alone {sam_rps:.1f} req/s")
    print(f"{'engine':<13} {'req/s':>7} {'tokens/s':>9} {'vs first':>8} {'reason s/req':>12} {'segment s/req':>13} "
          f"{'e2e+SAM req/s':>13} {'parsed':>6} {'failed':>6}")  # fmt: skip
    for r in rows:
        # As if the segmenter ran on every request after the reasoner: what answers that parse would cost.
        r["end_to_end_with_segmenter_rps"] = r["requests"] / (r["wall_s"] + r["requests"] / sam_rps)
        r["segmenter_alone_rps"] = sam_rps
        print(f"{r['engine']:<13} {r['requests_per_s']:>7.2f} {r['tokens_per_s']:>9.1f} "
              f"{r['requests_per_s'] / base:>7.2f}x {r['reason_s_per_request']:>12.3f} {r['segment_s_per_request']:>13.3f} "
              f"{r['end_to_end_with_segmenter_rps']:>13.2f} {r['parsed']:>6} {r['failed']:>6}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
