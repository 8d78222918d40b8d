"""The machine's limit: FLOPs per forecast (from the IR) and sustained FP32 GEMM rate.

FLOPs count the matrix products (MatMul, and Convolution if any), 2*M*N*K each, at batch 1:
they are where the arithmetic is. The GEMM rate is measured with OpenVINO itself (a large
MatMul on all usable cores), so it is the ceiling the same kernels can reach here.
"""

from __future__ import annotations

import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ..package import ModelPackage


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


def gemm_gflops(threads: int, *, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained FP32 matrix-multiply rate of OpenVINO on ``threads`` cores, GFLOP/s."""
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
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    x = rng.standard_normal((size, size)).astype(np.float32)
    request.infer({0: x})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        request.infer({0: x})
        runs += 1
    elapsed = time.perf_counter() - start
    return 2.0 * size**3 * runs / elapsed / 1e9
