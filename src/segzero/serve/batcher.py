"""Gather concurrent requests into batches; run each batch with ONE blocking pipeline call in a worker thread.

The event loop only queues and waits; the model runs on a single dedicated thread
(the pipeline is blocking torch code and not meant to run twice at once). A batch
starts when ``max_batch_size`` requests are waiting or when the first waiting
request has waited ``max_wait_s``, whichever comes first.

With a streaming engine (vllm, openai: the batcher is given ``submit``) there are no batches to wait
for: each request is handed to the pipeline as soon as it arrives and fewer than ``max_batch_size``
are in it, and is answered as soon as it is done, whatever the others; the engine schedules the
requests it holds by itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("segzero.serve")

#: ``run_batch(images, requests) -> results``, one result per request, in order.
RunBatch = Callable[[Sequence[Any], Sequence[str]], Sequence[Any]]

#: ``submit(image, request) -> future`` of its result: hands one request to a streaming pipeline and returns
#: at once (:meth:`segzero.pipeline.ReasoningSegmenter.submit`).
Submit = Callable[[Any, str], "concurrent.futures.Future[Any]"]


class QueueFullError(Exception):
    """The waiting queue is full; the caller should retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class BatchFailedError(Exception):
    """The pipeline raised on the batch this request was part of; ``__cause__`` is what it raised."""


class BatcherStoppedError(Exception):
    """The batcher was stopped (server shutting down) before this request ran."""


@dataclass
class BatchOutcome:
    """One request's result and how it was served.

    Attributes:
        result: what ``run_batch`` returned for this request.
        batch_size: number of requests in the batch it ran in (streaming: in the pipeline with it, itself
            included, when it was handed over).
        queue_s: seconds between enqueueing and the start of its batch.
        run_s: seconds the whole batch took in the pipeline (streaming: this request alone).
    """

    result: Any
    batch_size: int
    queue_s: float
    run_s: float


@dataclass
class BatchStats:
    """Counters of everything the batcher did, JSON-ready through :meth:`to_json`."""

    batches: int = 0
    requests: int = 0
    failed_batches: int = 0
    failed_requests: int = 0
    rejected_queue_full: int = 0
    timed_out: int = 0
    busy_s: float = 0.0
    batch_sizes: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        done = self.batches + self.failed_batches
        return {
            "batches": self.batches,
            "requests": self.requests,
            "failed_batches": self.failed_batches,
            "failed_requests": self.failed_requests,
            "rejected_queue_full": self.rejected_queue_full,
            "timed_out": self.timed_out,
            "busy_s": round(self.busy_s, 4),
            "mean_batch_size": (self.requests + self.failed_requests) / done if done else None,
            "mean_batch_s": self.busy_s / done if done else None,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


@dataclass(eq=False)  # hashable by identity: a set holds the requests in a streaming pipeline
class _Job:
    image: Any
    request: str
    future: asyncio.Future
    enqueued: float
    on_text: Callable[[str], None] | None = None


class Batcher:
    """Request batching in front of a blocking ``run_batch`` function.

    Use from one event loop: ``await start()``, then ``await submit(...)`` from any number
    of request handlers, then ``await stop()``.

    Args:
        run_batch: blocking function ``(images, requests) -> results`` (e.g. ``pipeline.segment_batch``).
        max_batch_size: most requests per call (streaming: most requests in the pipeline at once).
        max_wait_s: how long the first waiting request waits for company (not used when streaming).
        queue_size: most requests waiting beside the running batch.
        submit: for a streaming pipeline, its ``submit`` (:data:`Submit`): requests are then handed over one
            at a time as they come (see the module docstring); ``run_batch`` still serves :meth:`run_alone`.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        submit: Submit | None = None,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and queue_size must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.submit_one = submit
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.stats = BatchStats()
        self._waiting: deque[_Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running = 0  # requests in the batch now in the pipeline (streaming: all those in it)
        self._slot_freed: asyncio.Event | None = None
        self._streaming: set[_Job] = set()  # requests handed to a streaming pipeline, not yet answered

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._worker is not None:
            return
        self._arrived = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segzero-batch")
        work = self._work() if self.submit_one is None else self._stream()
        self._worker = asyncio.create_task(work, name="segzero-batcher")

    async def stop(self) -> None:
        """Stop taking work; requests still waiting fail with :class:`BatcherStoppedError`."""
        if self._worker is None:
            return
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._worker = None
        while self._waiting or self._streaming:
            job = self._waiting.popleft() if self._waiting else self._streaming.pop()
            if not job.future.done():
                job.future.set_exception(BatcherStoppedError("the server is shutting down"))
        # A batch still inside the model cannot be interrupted; do not wait for it.
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_alone(self, images: Sequence[Any], requests: Sequence[str], **kwargs: Any) -> Sequence[Any]:
        """Run ``run_batch(images, requests, **kwargs)`` on the model thread, outside the queue and the
        counters: for work before the server takes traffic, such as the start-up warm-up (the model
        thread is where lazy initialisation must happen, e.g. per-thread CUDA library handles)."""
        if self._executor is None:
            raise RuntimeError("Batcher.start() was not called")
        call = functools.partial(self.run_batch, images, requests, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- state -----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (not counting the batch now running)."""
        return sum(not job.future.done() for job in self._waiting)

    @property
    def running(self) -> int:
        """Requests now inside the pipeline: the running batch's, or (streaming) all handed over."""
        return self._running

    def is_full(self) -> bool:
        return self.queue_depth >= self.queue_size

    def retry_after_s(self) -> int:
        """A guess at when a queue slot frees up: the batches ahead times the mean batch time."""
        mean = self.stats.to_json()["mean_batch_s"] or 1.0
        ahead = math.ceil(self.queue_depth / self.max_batch_size) + 1
        return max(1, math.ceil(mean * ahead))

    # -- work ------------------------------------------------------------------------------

    async def submit(
        self, image: Any, request: str, timeout_s: float, on_text: Callable[[str], None] | None = None
    ) -> BatchOutcome:
        """Queue one request and wait for its result.

        ``on_text(text)``, when given, gets each new piece of the request's completion as the reasoner writes
        it, on the model's thread (:data:`segzero.reasoner.OnText`); it must be quick and must not raise.

        Raises:
            QueueFullError: the queue is full (answer 503).
            TimeoutError: no result within ``timeout_s`` (answer 504); dropped if its batch has not started.
            BatchFailedError: the pipeline raised on this request's batch (answer 500).
            BatcherStoppedError: the server is shutting down.
        """
        if self._worker is None:
            raise RuntimeError("Batcher.start() was not called (is the app's lifespan running?)")
        # Requests that timed out while waiting leave their slot at once.
        while self._waiting and self._waiting[0].future.done():
            self._waiting.popleft()
        if self.is_full():
            self.stats.rejected_queue_full += 1
            raise QueueFullError(self.retry_after_s())
        job = _Job(image, request, asyncio.get_running_loop().create_future(), time.perf_counter(), on_text)
        self._waiting.append(job)
        self._arrived.set()
        try:
            # wait_for cancels the future on timeout: the worker then skips it or drops its result.
            return await asyncio.wait_for(job.future, timeout_s)
        except TimeoutError:
            self.stats.timed_out += 1
            raise

    async def _next_batch(self) -> list[_Job]:
        """Wait for the first live request, then up to ``max_wait_s`` for more, up to ``max_batch_size``."""
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            while self._waiting and self._waiting[0].future.done():
                self._waiting.popleft()
            live = self.queue_depth
            if live and deadline is None:
                deadline = loop.time() + self.max_wait_s
            if live >= self.max_batch_size or (live and loop.time() >= deadline):
                break
            self._arrived.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                pass
        batch: list[_Job] = []
        while self._waiting and len(batch) < self.max_batch_size:
            job = self._waiting.popleft()
            if not job.future.done():
                batch.append(job)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            self._running = len(batch)
            try:
                call = functools.partial(
                    self.run_batch, [j.image for j in batch], [j.request for j in batch], **_listeners(batch)
                )
                results = await loop.run_in_executor(self._executor, call)
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"the pipeline returned {len(results)} results for {len(batch)} requests"
                    )
            except Exception as exc:
                run_s = time.perf_counter() - started
                self.stats.failed_batches += 1
                self.stats.failed_requests += len(batch)
                self.stats.busy_s += run_s
                logger.exception("batch of %d failed after %.2f s", len(batch), run_s)
                for job in batch:
                    if not job.future.done():
                        error = BatchFailedError(f"{type(exc).__name__}: {exc}")
                        error.__cause__ = exc
                        job.future.set_exception(error)
                continue
            finally:
                self._running = 0
            run_s = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.busy_s += run_s
            self.stats.batch_sizes[len(batch)] += 1
            logger.info(
                "batch of %d in %.2f s (%d waiting, %d batches served)",
                len(batch),
                run_s,
                self.queue_depth,
                self.stats.batches,
            )
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(BatchOutcome(result, len(batch), started - job.enqueued, run_s))

    # -- streaming -------------------------------------------------------------------------

    async def _stream(self) -> None:
        """Hand each waiting request over as soon as fewer than ``max_batch_size`` are in the pipeline."""
        loop = asyncio.get_running_loop()
        while True:
            while self._running >= self.max_batch_size:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            job = await self._next_job()
            self._running += 1
            self._streaming.add(job)
            started, in_flight = time.perf_counter(), self._running
            try:
                call = functools.partial(self.submit_one, job.image, job.request, **_listeners([job]))
                handed = await loop.run_in_executor(self._executor, call)
            except Exception as exc:  # e.g. an image the pipeline refuses: this request fails alone
                self._streamed(job, started, in_flight, None, exc)
                continue
            asyncio.wrap_future(handed).add_done_callback(
                functools.partial(self._streamed, job, started, in_flight)
            )

    async def _next_job(self) -> _Job:
        """The first waiting request still wanted (one whose caller timed out is skipped)."""
        while True:
            while self._waiting:
                job = self._waiting.popleft()
                if not job.future.done():
                    return job
            self._arrived.clear()
            await self._arrived.wait()

    def _streamed(
        self,
        job: _Job,
        started: float,
        in_flight: int,
        done: asyncio.Future | None,
        error: BaseException | None = None,
    ) -> None:
        """One streamed request is done (on the event loop): count it, answer its caller, free its slot."""
        if job not in self._streaming:  # stop() has answered it
            return
        self._streaming.discard(job)
        self._running -= 1
        self._slot_freed.set()
        run_s = time.perf_counter() - started
        self.stats.busy_s += run_s
        if error is None and done is not None:
            error = done.exception() if not done.cancelled() else BatcherStoppedError("the request was cancelled")
        if error is not None:
            self.stats.failed_batches += 1
            self.stats.failed_requests += 1
            logger.error("request failed after %.2f s: %s: %s", run_s, type(error).__name__, error)
            if not job.future.done():
                failure = BatchFailedError(f"{type(error).__name__}: {error}")
                failure.__cause__ = error
                job.future.set_exception(failure)
            return
        self.stats.batches += 1
        self.stats.requests += 1
        self.stats.batch_sizes[in_flight] += 1
        if not job.future.done():
            job.future.set_result(BatchOutcome(done.result(), in_flight, started - job.enqueued, run_s))


def _listeners(jobs: Sequence[_Job]) -> dict[str, Any]:
    """``{"on_text": ...}`` handing each request's pieces to its job's listener, or nothing when no job
    listens (so a pipeline without the seam still serves)."""
    if all(job.on_text is None for job in jobs):
        return {}

    def on_text(index: int, text: str) -> None:
        listener = jobs[index].on_text
        if listener is not None:
            try:
                listener(text)
            except Exception:  # noqa: BLE001 - a listener's failure must not stop the batch's generation
                logger.exception("on_text listener failed")

    return {"on_text": on_text}
