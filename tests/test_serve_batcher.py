"""The request batcher on its own, with a plain function in place of the pipeline (no model, fast)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from segzero.serve.batcher import Batcher, BatcherStoppedError, BatchFailedError, QueueFullError


class Recorder:
    """``run_batch`` that upper-cases requests, records each batch and can hold or fail it."""

    def __init__(self, hold: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.hold = hold
        self.release = threading.Event()
        self.release.set()
        self.threads: set[str] = set()

    def __call__(self, images, requests):
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(requests))
        self.release.wait(10)
        time.sleep(self.hold)
        if any(r == "boom" for r in requests):
            raise RuntimeError("boom")
        return [r.upper() for r in requests]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_gathers_up_to_max_batch_size():
    async def main():
        fn = Recorder()
        batcher = Batcher(fn, max_batch_size=3, max_wait_s=0.2, queue_size=10)
        await batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(None, f"r{i}", 5) for i in range(7)))
        await batcher.stop()
        return fn, batcher, outcomes

    fn, batcher, outcomes = run(main())
    assert [o.result for o in outcomes] == [f"R{i}" for i in range(7)]
    assert [len(b) for b in fn.batches] == [3, 3, 1]
    assert [o.batch_size for o in outcomes] == [3, 3, 3, 3, 3, 3, 1]
    assert dict(batcher.stats.batch_sizes) == {3: 2, 1: 1}
    assert fn.threads and not any(name == "MainThread" for name in fn.threads)


def test_lone_request_waits_at_most_max_wait():
    async def main():
        batcher = Batcher(Recorder(), max_batch_size=8, max_wait_s=0.05, queue_size=10)
        await batcher.start()
        start = time.perf_counter()
        outcome = await batcher.submit(None, "alone", 5)
        took = time.perf_counter() - start
        await batcher.stop()
        return outcome, took

    outcome, took = run(main())
    assert outcome.result == "ALONE" and outcome.batch_size == 1
    assert 0.04 <= took < 2.0


async def hold_first(request: str, queue_size: int) -> tuple[Recorder, Batcher, asyncio.Task]:
    """A started batcher of batches of one whose model holds the first batch, ``request``, until
    ``fn.release`` is set; returns the recorder, the batcher and the first request's task."""
    fn = Recorder()
    fn.release.clear()
    batcher = Batcher(fn, max_batch_size=1, max_wait_s=0.0, queue_size=queue_size)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(None, request, 5))
    while not fn.batches:
        await asyncio.sleep(0.005)
    return fn, batcher, first


def test_queue_full_timeout_and_failure_are_per_request():
    async def main():
        fn, batcher, first = await hold_first("boom", queue_size=2)
        expired = asyncio.create_task(batcher.submit(None, "expires", 0.05))
        kept = asyncio.create_task(batcher.submit(None, "kept", 5))
        await asyncio.sleep(0.01)
        assert batcher.queue_depth == 2
        with pytest.raises(QueueFullError) as full:
            await batcher.submit(None, "refused", 5)
        assert full.value.retry_after_s >= 1
        with pytest.raises(TimeoutError):
            await expired
        assert batcher.queue_depth == 1  # the expired request gave its place back
        fn.release.set()
        with pytest.raises(BatchFailedError, match="boom"):
            await first
        assert (await kept).result == "KEPT"
        await batcher.stop()
        return fn, batcher

    fn, batcher = run(main())
    assert fn.batches == [["boom"], ["kept"]]  # the expired request never reached the model
    stats = batcher.stats.to_json()
    assert stats["failed_batches"] == 1 and stats["batches"] == 1
    assert stats["rejected_queue_full"] == 1 and stats["timed_out"] == 1


def test_stop_fails_waiting_requests():
    async def main():
        fn, batcher, running = await hold_first("running", queue_size=4)
        waiting = asyncio.create_task(batcher.submit(None, "waiting", 5))
        await asyncio.sleep(0.01)
        await batcher.stop()
        with pytest.raises(BatcherStoppedError):
            await waiting
        running.cancel()
        fn.release.set()

    run(main())


def test_submit_before_start_is_a_clear_error():
    async def main():
        with pytest.raises(RuntimeError, match="start"):
            await Batcher(Recorder(), max_batch_size=1, max_wait_s=0, queue_size=1).submit(None, "x", 1)

    run(main())


def test_run_alone_uses_the_model_thread_and_no_counters():
    async def main():
        fn = Recorder()
        batcher = Batcher(fn, max_batch_size=2, max_wait_s=0.01, queue_size=4)
        with pytest.raises(RuntimeError, match="start"):
            await batcher.run_alone([None], ["early"])
        await batcher.start()
        alone = await batcher.run_alone([None], ["warm"])
        queued = await batcher.submit(None, "real", 5)
        await batcher.stop()
        return fn, batcher, alone, queued

    fn, batcher, alone, queued = run(main())
    assert alone == ["WARM"] and queued.result == "REAL"
    assert len(fn.threads) == 1 and not fn.threads & {"MainThread"}  # the same model thread for both
    assert batcher.stats.batches == 1 and batcher.stats.requests == 1  # the lone call is not counted
