"""``ovcast bench``: backends side by side, the fast path step by step, load, serving
overhead, and the machine's limit.

    ovcast bench models/default --duration 10 --json docs/bench-amd-zen-5-2cores.json \
        --plot docs/bench-amd-zen-5-2cores.png --report docs/PERFORMANCE.md

Method: every backend is loaded in this process and called in alternation (blocks of calls,
the first of each block untimed) on the same windows, so drift hits all alike; medians and
ratios are what to quote. Cold start and peak RSS come from a fresh process per backend.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.cpu import usable_cores
from ..runtime.precision import bf16_record, native_bf16, precision_for_process
from . import backends as backend_mod
from .limit import GEMM_SIZE, flops_per_forecast, gemm_runner
from .machine import describe
from .timing import alternate

log = logging.getLogger(__name__)

# Backends alternate in blocks of calls; the first calls after a switch are not timed, so one
# runtime's spinning threads (PyTorch's OpenMP, ONNX Runtime) do not slow the next one down.
BLOCK, SETTLE = 10, 2


def default_backends() -> list[str]:
    """OpenVINO in f32 (and bf16 where the CPU has bf16 units), PyTorch, ONNX Runtime."""
    return ["openvino", *(["openvino-bf16"] if native_bf16() else []), "torch", "onnxruntime"]


def run_benchmark(
    model_dir: str | Path,
    *,
    backends: Sequence[str] | None = None,
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
    from .fastpath import fast_path_steps
    from .load import concurrent_clients, throughput

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
            "export_rewrites": m.parity.get("export_rewrites", []),
            "bf16_check": bf16_record(m),
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": _load_average(),
    }
    loaded = {}
    for name in backends or default_backends():
        log.info("loading backend %s", name)
        try:
            loaded[name] = backend_mod.load(name, package)
        except MissingDependencyError as exc:
            if name in required:
                raise
            log.warning("skipping the %s backend: %s", name, exc)
            results.setdefault("skipped", {})[name] = str(exc)
    cores = usable_cores()
    # the limit is timed in the first alternation, beside the forecasters: same conditions
    gemms = {("f32", cores): gemm_runner(cores), ("f32", 1): gemm_runner(1)}
    if native_bf16():
        gemms[("bf16", cores)] = gemm_runner(cores, precision="bf16")
    results["latency"] = {}
    for batch in batches:
        window = parity_windows(m.context_length, m.num_input_channels, batch)
        runners: dict[str, Callable[[], object]] = {
            name: partial(b.predict, window) for name, b in loaded.items()
        }
        if batch == batches[0]:
            runners.update({f"gemm {p} x{n}": run for (p, n), (run, _) in gemms.items()})
        log.info("batch %d: %d runners alternating for %.0f s", batch, len(runners), duration_s)
        stats = alternate(runners, duration_s=duration_s, batch=batch, block=BLOCK, settle=SETTLE)
        if batch == batches[0]:
            rate = {
                key: flops / stats.pop(f"gemm {key[0]} x{key[1]}").p50 / 1e6
                for key, (_, flops) in gemms.items()
            }
            results["samples_batch1"] = {name: s.samples_ms.tolist() for name, s in stats.items()}
        results["latency"][str(batch)] = {name: s.to_dict() for name, s in stats.items()}

    flops = flops_per_forecast(package)
    limits = {"f32": rate[("f32", cores)]}
    if ("bf16", cores) in rate:
        limits["bf16"] = rate[("bf16", cores)]
    results["limit"] = {
        "flops_per_forecast": flops,
        "gemm_gflops": limits["f32"],
        "bf16_gemm_gflops": limits.get("bf16"),
        "cores": cores,
        "gemm_gflops_per_core": rate[("f32", 1)],
        "gemm_size": GEMM_SIZE,
    }
    for batch, per_backend in results["latency"].items():
        for name, stats in per_backend.items():
            gflops = limits["bf16"] if name.endswith("-bf16") else limits["f32"]
            achieved = flops * int(batch) / (stats["p50_ms"] / 1e3) / 1e9
            stats["gflops_at_p50"] = achieved
            stats["percent_of_gemm_limit"] = 100 * achieved / gflops
    if "openvino" in loaded:
        from .profile import op_profile

        log.info("the fast path step by step, throughput and concurrent clients")
        results["fast_path"] = fast_path_steps(package, duration_s, BLOCK, SETTLE)
        results["throughput_mode"] = throughput(
            package, duration_s, flops, {p: gemms[(p, cores)] for p in limits}
        )
        results["concurrency"] = concurrent_clients(package, duration_s)
        results["op_profile"] = {p: op_profile(package, precision=p)[:10] for p in limits}
    if serving and m.extra_inputs:
        log.warning(
            "serving skipped: its clients send past_values only (this package takes %s)",
            ", ".join(spec.name for spec in m.inputs),
        )
        serving = False
    if serving and "openvino" in loaded:
        with precision_for_process("f32"):  # servers and engines alike, as the f32 rows
            results["serving"] = _serving(package, duration_s)
            results["http_load"] = _http_load(package, duration_s)
    if coldstart:
        results["coldstart"] = {name: _coldstart(name, package) for name in loaded}
        results["coldstart"]["openvino+cache"] = _coldstart("openvino", package, cache=True)
    results["load_average_after"] = _load_average()
    return results


def planned_seconds(
    duration_s: float, *, batches: int, backends: int, serving: bool, coldstart: bool
) -> float:
    """About how long ``run_benchmark`` takes: ``duration_s`` is per timed phase, not in all."""
    # latency per batch size (the first with the GEMM limits), the fast path, throughput, clients
    total = duration_s * (batches + 3)
    if serving:
        total += 2 * duration_s  # the servers side by side, then batching off vs on
    if coldstart:
        total += 3.0 * (backends + 1)  # fresh processes, each a few seconds
    return total


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the machine was (noise)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def _serving(package: ModelPackage, duration_s: float) -> dict[str, Any]:
    from ..runtime.engine import Engine
    from .serving import HttpServerProcess, JsonLinesClient, http_caller

    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    engine = Engine(package)
    jsonl = JsonLinesClient(package.path)
    jsonl_binary = JsonLinesClient(package.path, binary=True)
    server = HttpServerProcess(package.path)
    try:
        runners = {
            "engine.predict": partial(engine.predict, window),
            "jsonl pipe": partial(jsonl, window),
            "jsonl pipe base64": partial(jsonl_binary, window),
            "http binary": partial(http_caller(server, binary=True), window),
            "http json": partial(http_caller(server, binary=False), window),
        }
        log.info("serving: %d paths alternating for %.0f s", len(runners), duration_s)
        stats = alternate(runners, duration_s=duration_s, block=BLOCK, settle=SETTLE)
    finally:
        jsonl.close()
        jsonl_binary.close()
        server.close()
    base = stats["engine.predict"].p50
    return {name: {**s.to_dict(), "p50_ratio_to_engine": s.p50 / base} for name, s in stats.items()}


# HTTP servers under concurrent clients: the engine configurations side by side.
HTTP_SETUPS = {
    "latency": (),
    "throughput": ("--engine-mode", "throughput"),
    "latency, batching (max 8, 500 us)": ("--max-batch-size", "8", "--max-queue-delay-us", "500"),
}


def _http_load(
    package: ModelPackage, duration_s: float, clients: Sequence[int] = (1, 2, 4, 8)
) -> dict[str, Any]:
    """forecasts/s and latency of KServe v2 binary requests from 1, 2, 4, 8 concurrent
    clients (threads of this process, one keep-alive connection each) per server setup,
    in alternating time slices (two rounds)."""
    import threading

    import numpy as np

    from .serving import HttpServerProcess, http_caller

    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    servers = {name: HttpServerProcess(package.path, *extra) for name, extra in HTTP_SETUPS.items()}
    keys = [(name, n) for name in servers for n in clients]
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in keys}
    served: dict[tuple[str, int], float] = dict.fromkeys(keys, 0.0)
    slice_s = duration_s / (2 * len(keys))
    try:
        callers = {
            name: [http_caller(s, binary=True) for _ in clients] for name, s in servers.items()
        }
        for _ in range(2):
            for name, n in keys:
                stop = time.perf_counter() + slice_s
                out = samples[(name, n)]

                def client(call: Any, stop: float = stop, out: list[float] = out) -> None:
                    while time.perf_counter() < stop:
                        start = time.perf_counter()
                        call(window)
                        out.append((time.perf_counter() - start) * 1e3)

                threads = [threading.Thread(target=client, args=(c,)) for c in callers[name][:n]]
                began = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                served[(name, n)] += time.perf_counter() - began
    finally:
        for server in servers.values():
            server.close()
    return {
        name: {
            str(n): {
                "clients": n,
                "requests": len(samples[(name, n)]),
                "forecasts_per_s": len(samples[(name, n)]) / served[(name, n)],
                "p50_ms": float(np.percentile(samples[(name, n)], 50)),
                "p99_ms": float(np.percentile(samples[(name, n)], 99)),
            }
            for n in clients
        }
        for name in servers
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
