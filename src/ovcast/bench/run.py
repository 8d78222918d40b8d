"""``ovcast bench``: backends side by side, serving overhead, and the machine's limit.

    ovcast bench models/default --backends openvino,torch,onnxruntime --batch 1,8,32 \
        --duration 10 --serving --json bench.json --plot bench.png --report docs/PERFORMANCE.md

Method: every backend is loaded in this process and called in alternation (one call each,
round after round) on the same windows, so drift hits all alike; medians and ratios are
what to quote. Cold start and peak RSS come from a fresh process per backend.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.cpu import usable_cores
from . import backends as backend_mod
from .limit import flops_per_forecast, gemm_gflops
from .machine import describe
from .timing import alternate

log = logging.getLogger(__name__)

# Backends alternate in blocks of calls; the first calls after a switch are not timed, so one
# runtime's spinning threads (PyTorch's OpenMP, ONNX Runtime) do not slow the next one down.
BLOCK, SETTLE = 10, 2


def run_benchmark(
    model_dir: str | Path,
    *,
    backends: Sequence[str] = ("openvino", "torch", "onnxruntime"),
    batches: Sequence[int] = (1, 8, 32),
    duration_s: float = 10.0,
    serving: bool = True,
    coldstart: bool = True,
    required: Sequence[str] = ("openvino",),
) -> dict[str, Any]:
    """Every figure of the benchmark, as a JSON-ready dict (see ``planned_seconds``).

    A backend whose optional dependency is missing (torch, onnxruntime in a runtime-only
    install) is skipped with a warning and listed under ``skipped``, unless it is in
    ``required``.
    """
    package = ModelPackage.load(model_dir)
    m = package.manifest
    results: dict[str, Any] = {
        "machine": describe(),
        "model": {
            "path": str(package.path),
            "name": m.name,
            "architecture": m.architecture,
            "context_length": m.context_length,
            "prediction_length": m.prediction_length,
            "num_input_channels": m.num_input_channels,
            "precision": m.precision,
        },
    }
    loaded = {}
    for name in backends:
        log.info("loading backend %s", name)
        try:
            loaded[name] = backend_mod.load(name, package)
        except MissingDependencyError as exc:
            if name in required:
                raise
            log.warning("skipping the %s backend: %s", name, exc)
            results.setdefault("skipped", {})[name] = str(exc)
    results["latency"] = {}
    for batch in batches:
        window = parity_windows(m.context_length, m.num_input_channels, batch)
        runners = {name: partial(b.predict, window) for name, b in loaded.items()}
        log.info("batch %d: %d backends alternating for %.0f s", batch, len(runners), duration_s)
        stats = alternate(runners, duration_s=duration_s, batch=batch, block=BLOCK, settle=SETTLE)
        results["latency"][str(batch)] = {name: s.to_dict() for name, s in stats.items()}
        results.setdefault("samples_batch1", {})
        if batch == batches[0]:
            results["samples_batch1"] = {name: s.samples_ms.tolist() for name, s in stats.items()}

    flops = flops_per_forecast(package)
    cores = usable_cores()
    gflops = gemm_gflops(cores)
    results["limit"] = {
        "flops_per_forecast": flops,
        "gemm_gflops": gflops,
        "cores": cores,
        "gemm_gflops_per_core": gemm_gflops(1),
    }
    for batch, per_backend in results["latency"].items():
        for stats in per_backend.values():
            achieved = flops * int(batch) / (stats["p50_ms"] / 1e3) / 1e9
            stats["gflops_at_p50"] = achieved
            stats["percent_of_gemm_limit"] = 100 * achieved / gflops
    if "openvino" in loaded:
        from .profile import op_profile

        results["throughput_mode"] = _throughput_mode(package, duration_s, flops, gflops)
        results["op_profile"] = op_profile(package)[:10]
    if serving and m.extra_inputs:
        log.warning(
            "serving skipped: its clients send past_values only (this package takes %s)",
            ", ".join(spec.name for spec in m.inputs),
        )
        serving = False
    if serving and "openvino" in loaded:
        results["serving"] = _serving(package, duration_s)
        results["http_batching"] = _batching(package, duration_s)
    if coldstart:
        results["coldstart"] = {name: _coldstart(name, package) for name in loaded}
        results["coldstart"]["openvino+cache"] = _coldstart("openvino", package, cache=True)
    return results


def planned_seconds(
    duration_s: float, *, batches: int, backends: int, serving: bool, coldstart: bool
) -> float:
    """About how long ``run_benchmark`` takes: ``duration_s`` is per timed phase, not in all."""
    total = duration_s * batches + duration_s / 2  # latency per batch size, throughput mode
    if serving:
        total += 2 * duration_s  # the servers side by side, then batching off vs on
    if coldstart:
        total += 3.0 * (backends + 1)  # fresh processes, each a few seconds
    return total


def _throughput_mode(package: ModelPackage, duration_s: float, flops: float, gflops: float) -> dict:
    """Forecasts/s with one single-threaded stream per core, fed by the async queue."""
    from ..runtime.engine import Engine

    m = package.manifest
    engine = Engine(package, mode="throughput")
    windows = parity_windows(m.context_length, m.num_input_channels, 64)
    others: dict[str, Any] = engine.example_inputs(64)  # TTM's other inputs, if any
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s / 2:
        engine.predict_many(windows, **others)
        count += len(windows)
    rate = count / (time.perf_counter() - start)
    return {
        "forecasts_per_s": rate,
        "streams": engine.config["NUM_STREAMS"],
        "gflops": rate * flops / 1e9,
        "percent_of_gemm_limit": 100 * rate * flops / 1e9 / gflops,
    }


def _serving(package: ModelPackage, duration_s: float) -> dict[str, Any]:
    from ..runtime.engine import Engine
    from .serving import HttpServerProcess, JsonLinesClient, http_caller

    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    engine = Engine(package)
    jsonl = JsonLinesClient(package.path)
    server = HttpServerProcess(package.path)
    try:
        runners = {
            "engine.predict": partial(engine.predict, window),
            "jsonl pipe": partial(jsonl, window),
            "http binary": partial(http_caller(server, binary=True), window),
            "http json": partial(http_caller(server, binary=False), window),
        }
        log.info("serving: %d paths alternating for %.0f s", len(runners), duration_s)
        stats = alternate(runners, duration_s=duration_s)
    finally:
        jsonl.close()
        server.close()
    base = stats["engine.predict"].p50
    return {name: {**s.to_dict(), "p50_ratio_to_engine": s.p50 / base} for name, s in stats.items()}


def _batching(package: ModelPackage, duration_s: float, clients: int = 8) -> dict[str, Any]:
    """HTTP under concurrent load, dynamic batching off vs on (alternating time slices)."""
    import threading

    import numpy as np

    from .serving import HttpServerProcess, http_caller

    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    setups = {
        "off": (),
        "on (max 8, 500 us)": ("--max-batch-size", "8", "--max-queue-delay-us", "500"),
    }
    servers = {name: HttpServerProcess(package.path, *extra) for name, extra in setups.items()}
    samples: dict[str, list[float]] = {name: [] for name in setups}
    served: dict[str, float] = {name: 0.0 for name in setups}
    try:
        for _ in range(2):
            for name, server in servers.items():
                stop = time.perf_counter() + duration_s / 4

                def client(server=server, name=name, stop=stop) -> None:
                    call = http_caller(server, binary=True)
                    while time.perf_counter() < stop:
                        start = time.perf_counter()
                        call(window)
                        samples[name].append((time.perf_counter() - start) * 1e3)

                threads = [threading.Thread(target=client) for _ in range(clients)]
                began = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                served[name] += time.perf_counter() - began
    finally:
        for server in servers.values():
            server.close()
    return {
        name: {
            "clients": clients,
            "requests": len(s),
            "forecasts_per_s": len(s) / served[name],
            "p50_ms": float(np.percentile(s, 50)),
            "p99_ms": float(np.percentile(s, 99)),
        }
        for name, s in samples.items()
    }


def _coldstart(backend: str, package: ModelPackage, *, cache: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "ovcast.bench.coldstart", backend, str(package.path)]
    with tempfile.TemporaryDirectory() as tmp:
        if cache:  # warm the cache once, then time a fresh process that finds it
            command += ["--cache-dir", tmp]
            subprocess.run(command, capture_output=True, check=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall_ms = (time.perf_counter() - start) * 1e3
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "process_to_first_forecast_ms": wall_ms,
    }
