"""Whose micro-batching in a Ray Serve replica: ovcast's core or Ray Serve's ``@serve.batch``?

Three deployments with the same serving core and engine, called through a DeploymentHandle
by concurrent callers, one window per call; only the batching differs:

    none     core, max_batch_size 1
    ovcast   core, max_batch_size 8 (its MicroBatcher, as ``ovcast serve --max-batch-size 8``)
    ray      core, max_batch_size 1, behind ``@serve.batch(max_batch_size=8)``

Used by ``bench/scaling.py``; the answer is in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from ray import serve

from ..serve.config import ServiceConfig
from ..serve.core import ForecastService, InferRequest
from ..serve.repository import ModelSource, Repository

MAX_BATCH = 8
WAIT_S = 0.0005  # as the core's default max_queue_delay_us


class _Core:
    def __init__(self, models: list[ModelSource], max_batch_size: int, threads: int) -> None:
        config = ServiceConfig(max_batch_size=max_batch_size, threads=threads)
        self.service = ForecastService(
            Repository(models), config, engine_options={"pinning": False}
        )
        self.service.start()

    def infer(self, windows: np.ndarray) -> np.ndarray:
        return self.service.infer(InferRequest({"past_values": windows})).outputs[
            "prediction_outputs"
        ]


@serve.deployment(max_ongoing_requests=2 * MAX_BATCH)
class CoreBatching(_Core):
    async def __call__(self, window: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(self.infer, window)


@serve.deployment(max_ongoing_requests=2 * MAX_BATCH)
class RayBatching(_Core):
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def __call__(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        out = await asyncio.to_thread(self.infer, np.stack(windows))
        return list(out)


def measure(
    models: list[ModelSource], replicas: int, window: np.ndarray, seconds: float, clients: int
) -> list[dict[str, Any]]:
    """Forecasts/s and latency of each batching, ``clients`` concurrent callers."""
    rows = []
    for batching in ("none", "ovcast", "ray"):
        if batching == "ray":
            deployment: Any = RayBatching  # a Deployment (the decorator's result)
            app = deployment.options(num_replicas=replicas).bind(models, 1, 1)
        else:
            size = MAX_BATCH if batching == "ovcast" else 1
            deployment = CoreBatching
            app = deployment.options(num_replicas=replicas).bind(models, size, 1)
        handle = serve.run(app, name="batching", route_prefix=None)
        asyncio.run(_drive(handle, window, 3.0, clients))  # warm-up
        latencies, elapsed = asyncio.run(_drive(handle, window, seconds, clients))
        serve.delete("batching")
        ms = np.array(latencies) * 1e3
        rows.append(
            {
                "batching": batching,
                "forecasts_per_s": round(len(ms) / elapsed, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
            }
        )
    return rows


async def _drive(handle: Any, window: np.ndarray, seconds: float, clients: int):
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await handle.remote(window)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    return latencies, time.perf_counter() - started
