"""Dynamic micro-batching: requests arriving within a short delay run as one batch.

Like Triton's dynamic batcher: the first queued request opens a batch, which closes when it
holds ``max_batch_size`` windows or ``max_queue_delay_us`` has passed. The queue is bounded
(``Overloaded`` when full) and each request waits at most ``timeout_s``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .metrics import ServerMetrics


class Overloaded(Exception):
    """The queue is full; the client should retry later (HTTP 503)."""


class TimedOut(Exception):
    """The request waited longer than its timeout (HTTP 503)."""


@dataclass
class _Job:
    windows: np.ndarray  # (batch, context, channels)
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    abandoned: bool = False


class MicroBatcher:
    """One worker thread that gathers queued windows into batches for the engine."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        metrics: ServerMetrics,
        *,
        max_batch_size: int = 8,
        max_queue_delay_us: int = 500,
        max_queue_size: int = 256,
    ) -> None:
        self.predict = predict  # looked up per batch, so a hot swap takes effect at once
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_us / 1e6
        self._queue: queue.Queue[_Job | None] = queue.Queue(max_queue_size)
        self._worker = threading.Thread(target=self._run, name="ovcast-batcher", daemon=True)
        self._worker.start()

    def submit(self, windows: np.ndarray, timeout_s: float) -> np.ndarray:
        job = _Job(windows)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"queue full ({self._queue.maxsize} requests); retry later") from None
        if not job.done.wait(timeout_s):
            job.abandoned = True
            raise TimedOut(f"no result within {timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        """Finish queued jobs, then stop the worker."""
        self._queue.put(None)
        self._worker.join()

    def _run(self) -> None:
        pending: _Job | None = None
        while True:
            first = pending or self._queue.get()
            pending = None
            if first is None:
                return
            batch = [first]
            rows = len(first.windows)
            deadline = first.enqueued + self.max_queue_delay_s
            while rows < self.max_batch_size:
                left = deadline - time.perf_counter()
                try:
                    job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                if rows + len(job.windows) > self.max_batch_size:
                    pending = job  # opens the next batch
                    break
                batch.append(job)
                rows += len(job.windows)
            self._execute([j for j in batch if not j.abandoned])

    def _execute(self, batch: list[_Job]) -> None:
        if not batch:
            return
        now = time.perf_counter()
        for job in batch:
            self.metrics.observe(self.metrics.queue_s, now - job.enqueued)
        try:
            windows = (
                batch[0].windows if len(batch) == 1 else np.concatenate([j.windows for j in batch])
            )
            start = time.perf_counter()
            out = self.predict(windows)
            self.metrics.observe(self.metrics.inference_s, time.perf_counter() - start)
            self.metrics.observe(self.metrics.batch_size, len(windows))
            offset = 0
            for job in batch:
                job.result = out[offset : offset + len(job.windows)]
                offset += len(job.windows)
        except BaseException as exc:  # delivered to every waiting request
            for job in batch:
                job.error = exc
        for job in batch:
            job.done.set()
