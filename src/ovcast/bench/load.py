"""Forecasts per second under load: concurrent callers of ``Engine.predict``, and
``predict_many`` with the throughput configuration.

    concurrent_clients(package, 4.0)    1, 2, 4 and 8 threads calling predict, per mode
    throughput(package, 4.0, flops, gemms)  predict_many over 64 windows, one stream per core,
                                          beside the GEMM limit

Clients are threads in this process (``predict`` releases the GIL while OpenVINO runs), each
sending one window and waiting for its forecast, as a server's callers do. Each (mode,
clients) pair runs in two slices in alternation, so drift hits all alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.engine import Engine

CLIENTS = (1, 2, 4, 8)
ROUNDS = 2


def concurrent_clients(
    package: ModelPackage,
    duration_s: float,
    *,
    clients: Sequence[int] = CLIENTS,
    modes: Sequence[str] = ("latency", "throughput"),
    precision: str = "f32",
) -> dict[str, dict[str, dict[str, float]]]:
    """forecasts/s and latency percentiles per mode and number of concurrent clients."""
    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    engines = {mode: Engine(package, mode=mode, precision_hint=precision) for mode in modes}
    others = {name: v[0] for name, v in engines[modes[0]].example_inputs(1).items()}  # TTM
    slice_s = duration_s / (len(engines) * len(clients) * ROUNDS)
    samples: dict[tuple[str, int], list[float]] = {(mo, n): [] for mo in engines for n in clients}
    elapsed: dict[tuple[str, int], float] = dict.fromkeys(samples, 0.0)
    for _ in range(ROUNDS):
        for mode, engine in engines.items():
            for n in clients:
                call = partial(engine.predict, window, **others)
                took = _run_clients(call, n, slice_s, samples[(mode, n)])
                elapsed[(mode, n)] += took
    return {
        mode: {
            str(n): {
                "clients": n,
                "forecasts_per_s": len(samples[(mode, n)]) / elapsed[(mode, n)],
                "p50_ms": float(np.percentile(samples[(mode, n)], 50)),
                "p99_ms": float(np.percentile(samples[(mode, n)], 99)),
                "streams": engines[mode].config["NUM_STREAMS"],
            }
            for n in clients
        }
        for mode in engines
    }


def _run_clients(
    call: Callable[[], object], clients: int, seconds: float, out: list[float]
) -> float:
    """``clients`` threads making ``call`` until the deadline; their latencies go to ``out``."""
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        mine = []
        while time.perf_counter() < stop:
            start = time.perf_counter()
            call()
            mine.append((time.perf_counter() - start) * 1e3)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def throughput(
    package: ModelPackage,
    duration_s: float,
    flops: float,
    gemms: dict[str, tuple[Callable[[], object], float]],
) -> dict[str, Any]:
    """predict_many (batch_size 1: the static batch-1 model) in throughput mode, for each
    precision of ``gemms`` (precision -> a GEMM runner on all cores and its FLOPs), against
    that precision's limit. Each round times one predict_many over 64 windows, then a few
    GEMM calls: the limit is measured beside the throughput, under the same conditions."""
    m = package.manifest
    windows = parity_windows(m.context_length, m.num_input_channels, 64)
    results: dict[str, Any] = {}
    for precision, (gemm, gemm_flops) in gemms.items():
        engine = Engine(package, mode="throughput", precision_hint=precision)
        others: dict[str, Any] = engine.example_inputs(len(windows))  # TTM, if any
        engine.predict_many(windows, **others)  # warm every stream
        rates: list[float] = []
        limits: list[float] = []
        deadline = time.perf_counter() + duration_s / len(gemms)
        while time.perf_counter() < deadline or len(rates) < 3:
            start = time.perf_counter()
            engine.predict_many(windows, **others)
            rates.append(len(windows) / (time.perf_counter() - start))
            gemm()  # untimed: the engine's threads may still be winding down
            start = time.perf_counter()
            for _ in range(3):
                gemm()
            limits.append(3 * gemm_flops / (time.perf_counter() - start) / 1e9)
        rate, limit = float(np.median(rates)), float(np.median(limits))
        results[precision] = {
            "forecasts_per_s": rate,
            "streams": engine.config["NUM_STREAMS"],
            "threads": engine.config["INFERENCE_NUM_THREADS"],
            "gflops": rate * flops / 1e9,
            "gemm_gflops_beside": limit,
            "percent_of_gemm_limit": 100 * rate * flops / 1e9 / limit,
        }
    return results
