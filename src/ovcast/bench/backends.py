"""The forecasters a benchmark compares, each loaded from one model package.

- openvino:    ``Engine`` (latency mode, f32: the precision the other two compute in), the
               thing ovcast ships;
- openvino-bf16: the same Engine computing in bf16 (where the CPU has bf16 units, it is what
               the Engine uses when ``ovcast tune`` measured bf16 within tolerance);
- torch:       the HuggingFace model in PyTorch eager, ``torch.set_num_threads(usable cores)``;
- onnxruntime: an ONNX export of the same model with the same patchify fix, ORT CPU with
               intra-op threads = usable cores and all graph optimizations.
torch and onnxruntime run the package's export signature (``convert/signature.py``): the
same inputs and outputs as the IR, TTM's included.
torch and onnxruntime need ``ovcast[convert,bench]``; only openvino is torch-free.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, require
from ..package import ModelPackage
from ..runtime.cpu import usable_cores

BACKENDS = ("openvino", "openvino-bf16", "torch", "onnxruntime")


@dataclass
class Backend:
    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    load_s: float


def load(name: str, package: ModelPackage, *, cache_dir: str | None = None) -> Backend:
    """One backend, ready to forecast windows. A package with more inputs than the window
    (TTM's frequency token, future exogenous values) gets the same seeded values for them in
    every backend (``Engine.example_inputs``), so all run the same computation."""
    start = time.perf_counter()
    predict: Callable[[np.ndarray], np.ndarray]
    if name in ("openvino", "openvino-bf16"):
        from ..runtime.engine import Engine

        hint = "bf16" if name == "openvino-bf16" else "f32"
        engine = Engine(package, precision_hint=hint, cache_dir=cache_dir, warmup=False)
        names = [spec.name for spec in package.manifest.extra_inputs]
        predict = engine.predict
        if names:
            predict = _with_other_inputs(
                package, lambda x, *rest: engine.predict(x, **dict(zip(names, rest, strict=True)))
            )
    elif name == "torch":
        predict = _torch_predict(package)
    elif name == "onnxruntime":
        predict = _onnxruntime_predict(package)
    else:
        raise ConfigError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    return Backend(name, predict, time.perf_counter() - start)


def _with_other_inputs(
    package: ModelPackage, run: Callable[..., np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """Windows -> ``run(windows, *other inputs)``, the other inputs seeded by batch size."""
    from ..runtime.inputs import example_inputs

    m = package.manifest
    vocab = int((m.frequency or {}).get("vocab_size", 1))
    cache: dict[int, list[np.ndarray]] = {}

    def predict(windows: np.ndarray) -> np.ndarray:
        batch = len(windows)
        if batch not in cache:
            values = example_inputs(m.extra_inputs, batch, vocab_size=vocab)
            cache[batch] = [values[spec.name] for spec in m.extra_inputs]
        return run(windows, *cache[batch])

    return predict


def _torch_predict(package: ModelPackage) -> Callable[[np.ndarray], np.ndarray]:
    torch = require("torch", extra="convert", purpose="The PyTorch benchmark backend")
    from ..convert.signature import package_signature

    torch.set_num_threads(usable_cores())
    module = package_signature(package).module

    def run(*inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in inputs)).numpy()

    return _with_other_inputs(package, run)


def export_onnx(package: ModelPackage, path: Path) -> Path:
    """ONNX export of the package's signature with the same patchify fix and the speed
    rewrites the package was exported with (the graph the IR runs), dynamic batch."""
    torch = require("torch", extra="convert", purpose="ONNX export")
    import warnings

    from ..convert.export_fixes import exportable_patchify
    from ..convert.rewrites import speed_rewrites
    from ..convert.signature import package_signature
    from ..parity import parity_windows
    from ..runtime.inputs import example_inputs

    signature = package_signature(package)
    m = package.manifest
    others = example_inputs(
        m.extra_inputs, 2, vocab_size=int((m.frequency or {}).get("vocab_size", 1))
    )
    example = (
        torch.from_numpy(parity_windows(m.context_length, m.num_input_channels, 2)),
        *(torch.from_numpy(others[spec.name]) for spec in m.extra_inputs),
    )
    names = [spec.name for spec in m.inputs]
    output = m.outputs[0].name
    rewrites = bool(m.parity.get("export_rewrites"))
    with (
        exportable_patchify(signature.module),
        speed_rewrites(signature.module, rewrites),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            signature.module,
            example,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=[output],
            dynamic_axes={**{n: {0: "batch"} for n in names}, output: {0: "batch"}},
        )
    return path


def _onnxruntime_predict(package: ModelPackage) -> Callable[[np.ndarray], np.ndarray]:
    ort = require("onnxruntime", extra="bench", purpose="The ONNX Runtime benchmark backend")
    path = export_onnx(package, Path(tempfile.mkdtemp(prefix="ovcast-onnx-")) / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cores()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [spec.name for spec in package.manifest.inputs]

    def run(*inputs: np.ndarray) -> np.ndarray:
        return session.run(None, dict(zip(names, inputs, strict=True)))[0]

    return _with_other_inputs(package, run)
