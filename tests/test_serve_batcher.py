"""The request batcher on its own, with a plain function in place of the pipeline (no model, fast)."""

from __future__ import annotations

import asyncio
import concurrent.futures
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


class Streaming:
    """A streaming pipeline's ``submit``: each request's future is answered (upper-cased) when the test
    releases it; "boom" fails. Records the order of hand-overs and the most requests held at once."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[concurrent.futures.Future, threading.Event]] = {}
        self.order: list[str] = []
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, image, request):
        future, release = concurrent.futures.Future(), threading.Event()
        with self.lock:
            self.order.append(request)
            self.held[request] = (future, release)
            self.most = max(self.most, sum(not f.done() for f, _ in self.held.values()))

        def answer():
            release.wait(10)
            if request == "boom":
                future.set_exception(RuntimeError("boom"))
            else:
                future.set_result(request.upper())

        threading.Thread(target=answer, daemon=True).start()
        return future

    def release(self, request: str) -> None:
        self.held[request][1].set()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_a_streaming_pipeline_answers_each_request_as_soon_as_it_is_done():
    async def main():
        submit = Streaming()
        batcher = Batcher(Recorder(), max_batch_size=2, max_wait_s=1.0, queue_size=8, submit=submit)
        await batcher.start()
        slow = asyncio.create_task(batcher.submit(None, "slow", 5))
        fast = [asyncio.create_task(batcher.submit(None, f"fast{i}", 5)) for i in range(3)]
        await _until(lambda: len(submit.order) == 2)  # no waiting for company: at once, two in flight
        assert submit.order == ["slow", "fast0"] and batcher.running == 2
        for i in range(3):  # the fast ones pass the slow one, one slot after another
            await _until(lambda: f"fast{i}" in submit.order)
            submit.release(f"fast{i}")
            assert (await fast[i]).result == f"FAST{i}"
        assert not slow.done()
        submit.release("slow")
        outcome = await slow
        await batcher.stop()
        return submit, batcher, outcome

    submit, batcher, outcome = run(main())
    assert outcome.result == "SLOW" and outcome.batch_size == 1
    assert submit.most == 2  # never more than max_batch_size in the pipeline
    stats = batcher.stats.to_json()
    assert stats["requests"] == 4 and stats["batches"] == 4 and batcher.running == 0


def test_a_failed_streamed_request_fails_alone_and_stop_answers_the_held_ones():
    async def main():
        submit = Streaming()
        batcher = Batcher(Recorder(), max_batch_size=4, max_wait_s=0, queue_size=8, submit=submit)
        await batcher.start()
        boom = asyncio.create_task(batcher.submit(None, "boom", 5))
        fine = asyncio.create_task(batcher.submit(None, "fine", 5))
        held = asyncio.create_task(batcher.submit(None, "held", 5))
        await _until(lambda: len(submit.order) == 3)
        submit.release("boom")
        submit.release("fine")
        with pytest.raises(BatchFailedError, match="boom"):
            await boom
        assert (await fine).result == "FINE"
        await batcher.stop()
        with pytest.raises(BatcherStoppedError):
            await held
        submit.release("held")
        return batcher

    batcher = run(main())
    assert batcher.stats.failed_requests == 1 and batcher.stats.requests == 1
