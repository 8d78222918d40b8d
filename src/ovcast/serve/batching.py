"""Dynamic micro-batching: requests arriving within a short delay run as one batch.

Like Triton's dynamic batcher: the first queued request opens a batch, which closes when it
holds ``max_batch_size`` windows or ``max_queue_delay_us`` has passed. Each job carries the
engine it was accepted with, and a batch only ever holds jobs of one engine, so a hot swap
never mixes models. A job is a ``concurrent.futures.Future``: a caller that gives up
(timeout) cancels it, and a cancelled job is skipped instead of computed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnavailableError
from .metrics import ModelMetrics

Inputs = dict[str, np.ndarray]  # name -> (batch, ...) tensor
Outputs = dict[str, np.ndarray]
RunBatch = Callable[[Any, Inputs], Outputs]  # (engine, inputs) -> outputs


@dataclass
class Job:
    engine: object
    inputs: Inputs
    rows: int
    enqueued: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)  # -> (outputs, engine seconds)


class MicroBatcher:
    """One worker thread that gathers queued jobs into batches for the engine."""

    def __init__(
        self,
        run: RunBatch,
        metrics: ModelMetrics,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        max_queue_size: int,
    ) -> None:
        self.run = run
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_us / 1e6
        self._queue: queue.Queue[Job | None] = queue.Queue(max_queue_size)
        self._closed = False
        self._lock = threading.Lock()  # a job is queued before the stop mark, or refused
        self._worker = threading.Thread(target=self._loop, name="ovcast-batcher", daemon=True)
        self._worker.start()

    def submit(self, engine: object, inputs: Inputs, rows: int) -> Future:
        job = Job(engine, inputs, rows)
        with self._lock:
            if self._closed:  # unloaded or replaced between the model look-up and now
                raise UnavailableError(
                    "this model version was unloaded or replaced as the request arrived; retry"
                )
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise UnavailableError(
                    f"batching queue full ({self._queue.maxsize} requests); retry later",
                    code="overloaded",
                ) from None
        return job.future

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker (once; later calls wait for it)."""
        with self._lock:
            first, self._closed = not self._closed, True
        if first:
            self._queue.put(None)  # blocks while the queue is full: the worker empties it
        self._worker.join()

    def _loop(self) -> None:
        pending: Job | None = None
        while True:
            first = pending or self._queue.get()
            pending = None
            if first is None:
                return
            batch, rows = [first], first.rows
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
                if rows + job.rows > self.max_batch_size or job.engine is not first.engine:
                    pending = job  # opens the next batch
                    break
                batch.append(job)
                rows += job.rows
            self._execute([j for j in batch if j.future.set_running_or_notify_cancel()])

    def _execute(self, batch: list[Job]) -> None:
        if not batch:
            return
        now = time.perf_counter()
        for job in batch:
            self.metrics.queue_s.observe(now - job.enqueued)
        try:
            names = batch[0].inputs
            inputs = (
                batch[0].inputs
                if len(batch) == 1
                else {n: np.concatenate([j.inputs[n] for j in batch]) for n in names}
            )
            start = time.perf_counter()
            outputs = self.run(batch[0].engine, inputs)
            seconds = time.perf_counter() - start
        except BaseException as exc:  # delivered to every job of the batch
            for job in batch:
                job.future.set_exception(exc)
            return
        self.metrics.inference_s.observe(seconds)
        self.metrics.batch_size.observe(sum(j.rows for j in batch))
        offset = 0
        for job in batch:
            part = {n: out[offset : offset + job.rows] for n, out in outputs.items()}
            offset += job.rows
            job.future.set_result((part, seconds))
