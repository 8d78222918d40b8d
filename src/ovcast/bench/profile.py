"""Where the time goes inside OpenVINO: per-layer performance counters, summed by op type.

Used by ``ovcast bench`` to explain a gap to the GEMM limit (softmax, transposes, norms and
reorders cost time but do no matrix arithmetic).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import openvino as ov

from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.cpu import cpu_config
from ..runtime.inputs import example_inputs


def op_profile(package: ModelPackage, iterations: int = 50) -> list[dict[str, Any]]:
    """Share of real time per (op type, kernel), batch 1, latency config, f32."""
    m = package.manifest
    config = {**cpu_config("latency"), "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    compiled = ov.Core().compile_model(str(package.xml_path), "CPU", config)
    request = compiled.create_infer_request()
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    vocab = int((m.frequency or {}).get("vocab_size", 1))
    others = example_inputs(m.extra_inputs, 1, vocab_size=vocab)  # TTM's other inputs
    feeds = [window, *(others[spec.name] for spec in m.extra_inputs)]
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for _ in range(5):
        request.infer(feeds)
    for _ in range(iterations):
        request.infer(feeds)
        for info in request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                totals[(info.node_type, info.exec_type)] += info.real_time.total_seconds()
    whole = sum(totals.values()) or 1.0
    rows = [
        {"op": op, "kernel": kernel, "ms_per_forecast": 1e3 * t / iterations, "share": t / whole}
        for (op, kernel), t in totals.items()
    ]
    return sorted(rows, key=lambda r: -r["ms_per_forecast"])
