"""Load test of ``segzero serve``: the same burst of requests with batching on and off, in one run.

The server runs in a thread of this process on 127.0.0.1 (a free port), once with
``max_batch_size=--batch-size`` and once with ``max_batch_size=1``, over ONE loaded
pipeline; a client in a child process (so it does not compete for this process's
interpreter lock) sends ``--requests`` multipart requests, ``--concurrency`` at a
time, each with its own random image. Prints requests/second and latency
percentiles for both and their ratio. Bounded: a fixed number of requests and a
wall-clock limit (``--max-seconds``) after which unfinished requests count as failed.

Without ``--reasoner``/``--segmenter`` it builds the tiny random models (no network);
their answers are garbage, but every request goes through generate and SAM2 all the same.

    python benchmarks/serve_load.py                      # tiny models, 32 requests, concurrency 8
    python benchmarks/serve_load.py --reasoner Ricky06662/Seg-Zero-7B \\
        --segmenter facebook/sam2.1-hiera-large --max-new-tokens 256 --max-seconds 900
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Phase:
    """What one server configuration did with the burst."""

    name: str
    max_batch_size: int
    latencies_s: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def random_png(seed: int, width: int, height: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def app_metrics(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/metrics").json()


def client_process(
    url: str, seeds: list[int], size: tuple[int, int], concurrency: int, seconds: float
) -> Phase:
    """Run one burst in this (child) process, so the client does not share the server's interpreter lock."""
    images = [random_png(seed, *size) for seed in seeds]
    phase = Phase("client", 0)
    asyncio.run(burst(url, images, concurrency, time.monotonic() + seconds, phase))
    return phase


async def burst(url: str, images: list[bytes], concurrency: int, deadline: float, phase: Phase) -> None:
    """Send every image once, ``concurrency`` at a time, until all are answered or ``deadline`` passes."""
    import httpx

    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int, data: bytes) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.post(
                    f"{url}/v1/segment",
                    files={"image": (f"{i}.png", data, "image/png")},
                    data={"request": f"the object number {i}"},
                )
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            else:
                if response.status_code == 200:
                    phase.latencies_s.append(time.perf_counter() - started)
                    return
                key = f"HTTP {response.status_code}"
            phase.failures[key] = phase.failures.get(key, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, i, data)) for i, data in enumerate(images)]
        start = time.perf_counter()
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        phase.wall_s = time.perf_counter() - start
        for task in pending:
            task.cancel()
        if pending:
            phase.failures["unfinished at --max-seconds"] = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)


def run_phase(pipeline, name: str, max_batch_size: int, args: argparse.Namespace, deadline: float) -> Phase:
    """Serve with ``max_batch_size``, warm up, then measure one burst sent from a child process."""
    from segzero.serve import ServeSettings, create_app
    from segzero.serve.server import LoopbackServer

    settings = ServeSettings(
        max_batch_size=max_batch_size,
        max_wait_ms=args.max_wait_ms,
        queue_size=max(args.requests, 1),
        request_timeout_s=max(1.0, deadline - time.monotonic()),
    )
    with LoopbackServer(create_app(pipeline, settings)) as server:
        # Warm-up outside the measurement: first calls pay for lazy initialisation.
        warmup = [random_png(10_000 + i, *args.size) for i in range(max_batch_size)]
        asyncio.run(burst(server.url, warmup, max_batch_size, deadline, Phase("warmup", max_batch_size)))
        before = app_metrics(server.url)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds = max(0.0, deadline - time.monotonic())
            phase = pool.apply(
                client_process, (server.url, list(range(args.requests)), args.size, args.concurrency, seconds)
            )
        phase.name, phase.max_batch_size = name, max_batch_size
        phase.metrics = _difference(app_metrics(server.url), before)
    return phase


def _difference(after: dict, before: dict) -> dict:
    """Batcher counters of the measured burst alone (the warm-up subtracted)."""
    hist = {k: v - before["batch_size_histogram"].get(k, 0) for k, v in after["batch_size_histogram"].items()}
    hist = {k: v for k, v in hist.items() if v}
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    busy = after["busy_s"] - before["busy_s"]
    return {
        "batches": batches,
        "requests": requests,
        "busy_s": busy,
        "batch_size_histogram": hist,
        "mean_batch_size": requests / batches if batches else None,
        "mean_batch_s": busy / batches if batches else None,
    }


def report(phases: list[Phase], args: argparse.Namespace) -> dict:
    header = (
        f"{'mode':<10} {'max batch':>9} {'ok':>6} {'req/s':>8} {'p50 s':>8} {'p90 s':>8} {'p99 s':>8} "
        f"{'mean batch':>10}  batch sizes"
    )
    print(header)
    print("-" * len(header))
    for p in phases:
        hist = p.metrics.get("batch_size_histogram", {})
        mean = p.metrics.get("mean_batch_size") or float("nan")
        print(
            f"{p.name:<10} {p.max_batch_size:>9} {p.ok:>3}/{args.requests:<2} {p.rps:>8.2f} "
            f"{p.percentile(50):>8.2f} {p.percentile(90):>8.2f} {p.percentile(99):>8.2f} "
            f"{mean:>10.2f}  {hist}"
        )
        if p.failures:
            print(f"{'':<10} failures: {p.failures}")
    on, off = phases
    speedup = on.rps / off.rps if off.rps else float("nan")
    p50 = on.percentile(50) / off.percentile(50) if off.latencies_s else float("nan")
    print(f"\nbatching on / off: throughput x{speedup:.2f}, p50 latency x{p50:.2f}")
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "throughput_ratio": speedup,
        "p50_latency_ratio": p50,
        "phases": [
            {
                "name": p.name,
                "max_batch_size": p.max_batch_size,
                "ok": p.ok,
                "failures": p.failures,
                "wall_s": p.wall_s,
                "requests_per_s": p.rps,
                "p50_s": p.percentile(50),
                "p90_s": p.percentile(90),
                "p99_s": p.percentile(99),
                "metrics": p.metrics,
            }
            for p in phases
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reasoner", help="Reasoner hub id or folder (default: build tiny random models).")
    parser.add_argument("--segmenter", help="Segmenter hub id or folder (with --reasoner).")
    parser.add_argument("--frame", type=int, help="Reasoner frame side (default: the model's).")
    parser.add_argument("--device", help="cuda, cpu, ... (default: automatic).")
    parser.add_argument("--requests", type=int, default=32, help="Requests per phase.")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
    parser.add_argument("--batch-size", type=int, default=8, help="max_batch_size of the batched phase.")
    parser.add_argument("--max-wait-ms", type=float, default=20.0, help="max_wait_ms of both phases.")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="Generation budget per request.")
    parser.add_argument("--image-size", default="320x240", help="WIDTHxHEIGHT of the random images.")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="Wall-clock limit of the whole run.")
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads for the model (default: torch's "
        "choice); 1 is steadier on a small machine shared with other work.",
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="Skip running every batch size once before measuring (then cold shapes are measured).",
    )
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    if bool(args.reasoner) != bool(args.segmenter):
        parser.error("give both --reasoner and --segmenter, or neither (tiny models)")
    if min(args.requests, args.concurrency, args.batch_size) < 1:
        parser.error("--requests, --concurrency and --batch-size must be at least 1")
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    deadline = time.monotonic() + args.max_seconds

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    from segzero.pipeline import ReasoningSegmenter

    with tempfile.TemporaryDirectory(prefix="segzero-bench-") as tmp:
        reasoner, segmenter, frame = args.reasoner, args.segmenter, args.frame
        if reasoner is None:
            from segzero.tiny import make_tiny

            tiny = make_tiny(tmp)
            reasoner, segmenter, frame = str(tiny.reasoner), str(tiny.segmenter), frame or tiny.frame
        t0 = time.perf_counter()
        pipeline = ReasoningSegmenter.from_pretrained(
            reasoner,
            segmenter,
            frame=frame,
            device=args.device,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        print(
            f"loaded {reasoner} + {segmenter} in {time.perf_counter() - t0:.1f} s; "
            f"{args.requests} requests, concurrency {args.concurrency}, {width}x{height} images, "
            f"max_new_tokens {args.max_new_tokens}\n"
        )
        args.size = (width, height)
        if args.warmup:
            # Each new batch size runs slowly once (kernel choice, allocator growth): pay it before measuring.
            warm = [
                Image.open(io.BytesIO(random_png(20_000 + i, width, height))) for i in range(args.batch_size)
            ]
            for n in range(1, args.batch_size + 1):
                pipeline.segment_batch(warm[:n], [f"warm-up {i}" for i in range(n)])
        phases = [
            run_phase(pipeline, "batched", args.batch_size, args, deadline),
            run_phase(pipeline, "unbatched", 1, args, deadline),
        ]
    figures = report(phases, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
