"""Scaling out, measured: batch forecasting and serving on 1 and 2 Ray nodes of this machine.

    python -m ovcast.bench.scaling MODEL_DIR [--series 20 --windows 500] [--seconds 20]

On one cluster of two Ray nodes (1 CPU each), every configuration in alternation, ``--rounds``
times, medians (the box is shared: its load drifts). Batch: the same windows forecast by
``Engine.predict_many`` in one process (throughput mode), by ``forecast-batch`` in one
process, and by ``forecast-batch --ray`` with 1 worker (one node's CPU) and 2 (both).
Serving: 8 concurrent KServe binary clients against Ray Serve with 1 replica and 2 (one per
node), with and without ovcast's micro-batching; and ovcast's against Ray Serve's
``@serve.batch`` in the replica (``ray_batch.py``).

The nodes are Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``: a raylet
per node, one machine), so "one more node" here is one more core of the same box: what it
shows is Ray's overhead and how forecasting work spreads, not a network.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .machine import describe
from .serving import binary_infer_request

CLIENTS = 8


@contextmanager
def ray_nodes(count: int):
    """A Ray cluster of ``count`` nodes of 1 CPU each on this machine (Ray's test cluster)."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(count - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield cluster
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 - Serve may not have started
            pass
        ray.shutdown()
        cluster.shutdown()


# -- batch --------------------------------------------------------------------------------


def batch(
    model: str, series: int, windows: int, folder: Path, address: str, rounds: int
) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..batch.forecast import BatchSpec, detect_columns, forecast_local
    from ..batch.ray_data import forecast_on_ray
    from ..runtime.engine import Engine

    engine = Engine(model)
    rows = windows + engine.context_length - 1
    rng = np.random.default_rng(0)
    values = (np.cumsum(rng.standard_normal((series, rows, engine.num_channels)), 1) / 20).astype(
        np.float32
    )
    names = engine.channel_names
    table = pa.table(
        {
            "series_id": np.repeat([f"s{k}" for k in range(series)], rows),
            "date": np.tile(np.datetime64("2024-01-01T00:00:00") + np.arange(rows) * np.timedelta64(1, "h"), series),
            **{n: values[..., c].reshape(-1) for c, n in enumerate(names)},
        }
    )  # fmt: skip
    source = folder / "in.parquet"
    pq.write_table(table, source)
    spec = BatchSpec(model, detect_columns(table.column_names, "series_id", "date", names))
    total = series * windows
    throughput = Engine(model, mode="throughput")
    all_windows = np.lib.stride_tricks.sliding_window_view(values, engine.context_length, axis=1)
    all_windows = np.ascontiguousarray(all_windows.transpose(0, 1, 3, 2)).reshape(
        -1, engine.context_length, engine.num_channels
    )

    def ray_path(workers: int):
        return lambda: forecast_on_ray(
            source, folder / "ray.parquet", spec, address=address, workers=workers
        )

    paths = {
        "Engine.predict_many, one process (throughput mode)": lambda: throughput.predict_many(
            all_windows, batch_size=8
        ),
        "forecast-batch, one process": lambda: forecast_local(
            source, folder / "local.parquet", spec, engine=engine
        ),
        "forecast-batch --ray, 1 worker (one node's CPU)": ray_path(1),
        "forecast-batch --ray, 2 workers (both nodes)": ray_path(2),
    }
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):  # in alternation: the box's load drifts alike for every path
        for name, run in paths.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return [
        {
            "path": name,
            "forecasts_per_s": round(total / float(np.median(times)), 1),
            "range": f"{total / max(times):.0f}-{total / min(times):.0f}",
        }
        for name, times in seconds.items()
    ]


# -- serving ------------------------------------------------------------------------------


def _load(port: int, name: str, window: np.ndarray, seconds: float) -> dict[str, Any]:
    """``CLIENTS`` threads, each a keep-alive connection sending KServe binary requests."""
    body, headers = binary_infer_request(window, binary_output=False)
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.request("POST", f"/v2/models/{name}/infer", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors[0] += 1
                continue
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1e3
    return {
        "forecasts_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors[0],
    }


def serving(
    model: str, seconds: float, rounds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """HTTP through the real application with 1 and 2 replicas (a node each), and the
    batching comparison; on the two-node cluster the caller is connected to."""
    import socket

    from ray import serve

    from ..runtime.engine import Engine
    from ..serve.config import HttpConfig, ServiceConfig
    from ..serve.ray.config import RayConfig
    from ..serve.ray.deployment import application
    from ..serve.repository import parse_model_option
    from . import ray_batch

    engine = Engine(model, warmup=False)
    window = np.zeros((engine.context_length, engine.num_channels), np.float32)
    window[:] = np.sin(np.arange(engine.context_length) / 12.0)[:, None]
    sources = [parse_model_option(f"m={Path(model).resolve()}")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    http_seen: dict[tuple[int, int], list[dict[str, Any]]] = {}
    batch_seen: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):  # in alternation, as for batch
        for replicas, size in ((1, 1), (2, 1), (1, 8), (2, 8)):
            app = application(
                sources, None, ServiceConfig(max_batch_size=size), HttpConfig(),
                RayConfig(replicas=replicas),
            )  # fmt: skip
            serve.run(app, name="bench", route_prefix="/")
            _load(port, "m", window, 2.0)  # warm up every replica and connection
            http_seen.setdefault((replicas, size), []).append(_load(port, "m", window, seconds))
            serve.delete("bench")
        for row in ray_batch.measure(sources, 2, window, seconds, CLIENTS):
            batch_seen.setdefault(row["batching"], []).append(row)
    http_rows = [
        {"replicas": replicas, "max_batch_size": size, **_median(runs)}
        for (replicas, size), runs in http_seen.items()
    ]
    batch_rows = [{"batching": name, **_median(runs)} for name, runs in batch_seen.items()]
    return http_rows, batch_rows


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("forecasts_per_s", "p50_ms", "p99_ms")
    out: dict[str, Any] = {k: round(float(np.median([r[k] for r in runs])), 1) for k in keys}
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    return out


def markdown(
    machine: dict[str, Any],
    batch_rows: list[dict],
    serve_rows: list[dict],
    batching: list[dict],
    args,
) -> str:
    v = machine["versions"]
    lines = [
        "## Scaling out on Ray (1 and 2 nodes on this machine)",
        "",
        f"Generated by `python -m ovcast.bench.scaling {args.model} --series {args.series} "
        f"--windows {args.windows} --seconds {args.seconds:g} --rounds {args.rounds}`: "
        "a cluster of two Ray nodes of 1 CPU each on this machine, every configuration run in "
        f"alternation {args.rounds} times; medians.",
        "",
        f"- CPU: {machine['cpu']} (family/model {machine['cpu_family_model']}), "
        f"{machine['usable_cores']} usable cores; kernel {machine['kernel']}",
        f"- ovcast {v['ovcast']}, openvino {v['openvino']}, ray {v.get('ray', '?')}, "
        f"numpy {v['numpy']}, python {v['python']}",
        f"- model: {Path(args.model).name}",
        "",
        f"Batch: {args.series} series x {args.windows} windows.",
        "",
        "| path | forecasts/s (median) | range over rounds |",
        "|---|---|---|",
        *[f"| {r['path']} | {r['forecasts_per_s']} | {r['range']} |" for r in batch_rows],
        "",
        f"Serving: {CLIENTS} concurrent clients, one window per request (KServe binary), "
        f"{args.seconds:g} s per row.",
        "",
        "| replicas (one per node) | --max-batch-size | forecasts/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['replicas']} | {r['max_batch_size']} | {r['forecasts_per_s']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
            for r in serve_rows
        ],
        "",
        f"Whose batching (2 replicas, {CLIENTS} concurrent DeploymentHandle callers, "
        "one window per call, the same core in each replica):",
        "",
        "| batching | forecasts/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *[
            f"| {r['batching']} | {r['forecasts_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
            for r in batching
        ],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--windows", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    import ray

    machine = describe()
    machine["versions"]["ray"] = ray.__version__
    with ray_nodes(2) as cluster, tempfile.TemporaryDirectory() as folder:
        batch_rows = batch(
            args.model, args.series, args.windows, Path(folder), cluster.address, args.rounds
        )
        serve_rows, batching = serving(args.model, args.seconds, args.rounds)
    if args.json:
        figures = {
            "machine": machine,
            "batch": batch_rows,
            "serving": serve_rows,
            "batching": batching,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1))
    print(markdown(machine, batch_rows, serve_rows, batching, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
