"""Where the time goes inside OpenVINO: per-layer performance counters, summed by op type.

Used by ``ovcast bench`` to explain a gap to the GEMM limit (softmax, transposes, norms and
reorders cost time but do no matrix arithmetic).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import openvino as ov

from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.compiled import batch1_model
from ..runtime.cpu import cpu_config
from ..runtime.inputs import example_inputs


def op_profile(
    package: ModelPackage, iterations: int = 50, precision: str = "f32"
) -> list[dict[str, Any]]:
    """Share of real time per (op type, kernel), batch 1 (the static model the Engine uses
    for single windows), latency config, in ``precision``."""
    m = package.manifest
    config = {**cpu_config("latency"), "INFERENCE_PRECISION_HINT": precision, "PERF_COUNT": True}
    core = ov.Core()
    model = core.read_model(package.xml_path)
    compiled = core.compile_model(batch1_model(model) or model, "CPU", config)
    request = compiled.create_infer_request()
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    vocab = int((m.frequency or {}).get("vocab_size", 1))
    others = example_inputs(m.extra_inputs, 1, vocab_size=vocab)  # TTM's other inputs
    feeds = [window, *(others[spec.name] for spec in m.extra_inputs)]
    for _ in range(5):
        request.infer(feeds)
    samples: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, tuple[str, str]] = {}
    for _ in range(iterations):
        request.infer(feeds)
        for info in request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                samples[info.node_name].append(info.real_time.total_seconds())
                kinds[info.node_name] = (info.node_type, info.exec_type)
    # each node's median over the iterations: a preempted iteration does not skew the shares
    totals: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for name, times in samples.items():
        totals[kinds[name]] += float(np.median(times))
        counts[kinds[name]] += 1
    whole = sum(totals.values()) or 1.0
    rows = [
        {
            "op": op,
            "kernel": kernel,
            "nodes": counts[(op, kernel)],
            "ms_per_forecast": 1e3 * t,
            "share": t / whole,
        }
        for (op, kernel), t in totals.items()
    ]
    return sorted(rows, key=lambda r: -r["ms_per_forecast"])
