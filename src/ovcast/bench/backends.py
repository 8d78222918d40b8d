"""The forecasters a benchmark compares, each loaded from one model package.

- openvino:    ``Engine`` (latency mode, f32: the precision the other two compute in), the
               thing ovcast ships;
- openvino-bf16: the same Engine computing in bf16 (where the CPU has bf16 units, it is what
               the Engine uses when ``ovcast tune`` measured bf16 within tolerance);
- torch:       the HuggingFace model in PyTorch eager, ``torch.set_num_threads(usable cores)``;
- onnxruntime: an ONNX export of the same model with the same patchify fix, ORT CPU with
               intra-op threads = usable cores and all graph optimizations.
torch and onnxruntime need ``ovcast[convert,bench]``; only openvino is torch-free.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelPackageError, require
from ..package import ModelPackage
from ..runtime.cpu import usable_cores

BACKENDS = ("openvino", "openvino-bf16", "torch", "onnxruntime")


@dataclass
class Backend:
    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    load_s: float


def load(name: str, package: ModelPackage, *, cache_dir: str | None = None) -> Backend:
    start = time.perf_counter()
    predict: Callable[[np.ndarray], np.ndarray]
    if name in ("openvino", "openvino-bf16"):
        from ..runtime.engine import Engine

        hint = "bf16" if name == "openvino-bf16" else "f32"
        engine = Engine(package, precision_hint=hint, cache_dir=cache_dir, warmup=False)
        predict = engine.predict
    elif name == "torch":
        predict = _torch_predict(package)
    elif name == "onnxruntime":
        predict = _onnxruntime_predict(package)
    else:
        raise ConfigError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    return Backend(name, predict, time.perf_counter() - start)


def source_name(package: ModelPackage) -> str:
    """What a package was converted from: a hub id, a checkpoint folder or 'default'."""
    source = package.manifest.source
    name = source.get("hub_id") or source.get("path") or source.get("name")
    if not name:
        raise ModelPackageError(
            f"{package.path}'s manifest does not say what it was converted from"
        )
    return str(name)


def source_model(package: ModelPackage) -> Any:
    """The PyTorch model a package was converted from."""
    from ..hf.loading import load_model, resolve_source

    revision = package.manifest.source.get("revision")
    return load_model(resolve_source(source_name(package), revision=revision))


def _torch_predict(package: ModelPackage) -> Callable[[np.ndarray], np.ndarray]:
    from ..hf.loading import predictor

    torch = require("torch", extra="convert", purpose="The PyTorch benchmark backend")
    torch.set_num_threads(usable_cores())
    return predictor(source_model(package))


def export_onnx(package: ModelPackage, path: Path) -> Path:
    """ONNX export of the same graph as the OpenVINO conversion (patchify fix and the speed
    rewrites the package was exported with), dynamic batch."""
    torch = require("torch", extra="convert", purpose="ONNX export")
    import warnings

    from ..convert.export_fixes import ForecastOnly, exportable_patchify
    from ..convert.rewrites import speed_rewrites
    from ..parity import parity_windows

    model = source_model(package)
    m = package.manifest
    example = torch.from_numpy(parity_windows(m.context_length, m.num_input_channels, 2))
    rewrites = bool(package.manifest.parity.get("export_rewrites"))
    with (
        exportable_patchify(model),
        speed_rewrites(model, rewrites),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ForecastOnly(model).eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["past_values"],
            output_names=["prediction_outputs"],
            dynamic_axes={"past_values": {0: "batch"}, "prediction_outputs": {0: "batch"}},
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

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"past_values": x})[0]

    return predict
