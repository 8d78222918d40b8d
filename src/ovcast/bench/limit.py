"""The machine's limit: FLOPs per forecast (from the IR) and the sustained GEMM rate.

FLOPs count the matrix products (MatMul, and Convolution if any), 2*M*N*K each, at batch 1:
they are where the arithmetic is. The GEMM rate is measured with OpenVINO itself (a 1024^3
MatMul on all usable cores), so it is the ceiling the same kernels can reach here; in f32,
and in bf16 where the CPU has bf16 units (bf16 forecasts are judged against that limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ..package import ModelPackage

# 1024^3: large enough for the GEMM kernels' full rate, short enough (a few ms) to alternate
# with forecasts.
GEMM_SIZE = 1024


def flops_per_forecast(package: ModelPackage) -> float:
    m = package.manifest
    model = ov.Core().read_model(package.xml_path)
    model.reshape(  # batch 1, every input (TTM packages may take more than the window)
        {i: ov.PartialShape([1 if d == -1 else d for d in t.shape]) for i, t in enumerate(m.inputs)}
    )
    total = 0.0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "MatMul":
            a = list(op.input(0).get_shape())
            b = list(op.input(1).get_shape())
            ta = op.get_attributes().get("transpose_a", False)
            tb = op.get_attributes().get("transpose_b", False)
            if ta:
                a[-2], a[-1] = a[-1], a[-2]
            if tb:
                b[-2], b[-1] = b[-1], b[-2]
            out = list(op.output(0).get_shape())
            k = a[-1]
            total += 2.0 * float(np.prod(out)) * k
        elif kind == "Convolution":
            out = list(op.output(0).get_shape())
            w = list(op.input(1).get_shape())
            total += 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
    return total


def gemm_runner(
    threads: int, *, precision: str = "f32", size: int = GEMM_SIZE
) -> tuple[Callable[[], object], float]:
    """A callable that runs one ``size``^3 MatMul with OpenVINO on ``threads`` cores,
    computing in ``precision``, and the FLOPs of one call. Timed in the same alternation as
    the forecasters, its rate is the limit under the same conditions (a busy machine slows
    both alike)."""
    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], np.float32)
    b = ops.constant(rng.standard_normal((size, size)).astype(np.float32))
    model = ov.Model([ops.matmul(a, b, False, False)], [a])
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
        },
    )
    request = compiled.create_infer_request()
    x = rng.standard_normal((size, size)).astype(np.float32)
    request.infer({0: x})
    return (lambda: request.infer({0: x})), 2.0 * size**3


def gemm_gflops(
    threads: int, *, seconds: float = 2.0, precision: str = "f32", size: int = GEMM_SIZE
) -> float:
    """Sustained matrix-multiply rate of OpenVINO on ``threads`` cores, GFLOP/s, computing in
    ``precision`` (f32, or bf16 where the CPU has bf16 units: its own, higher limit)."""
    run, flops = gemm_runner(threads, precision=precision, size=size)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        runs += 1
    return flops * runs / (time.perf_counter() - start) / 1e9
