"""What an exported graph takes and gives: its inputs in order, each named and described.

PatchTST and PatchTSMixer take one window and forecast every channel (``forecast_only``);
TinyTimeMixer may take more (``ttm.ttm_signature``). Conversion, parity and the ONNX
benchmark backend all export through a ``Signature``, so they see the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelPackageError
from ..package import OBSERVED_MASK, PAST_VALUES, ModelPackage, TensorSpec
from .export_fixes import ForecastOnly

OUTPUT_NAME = "prediction_outputs"
OV_TYPES = {"FP32": "f32", "INT64": "i64"}  # KServe datatype -> openvino.Type attribute


@dataclass
class Signature:
    """A module whose forward takes ``inputs`` positionally and returns the forecasts."""

    module: torch.nn.Module
    inputs: list[TensorSpec]
    output: TensorSpec
    output_channels: list[int] | None = None  # forecast channels, if not all of them
    exogenous_channels: list[int] | None = None  # whose future values are an input
    frequency: dict[str, Any] | None = None  # the manifest's "frequency" entry

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def extra_inputs(self) -> list[TensorSpec]:
        return self.inputs[1:]


def past_values_spec(context: int, channels: int) -> TensorSpec:
    return TensorSpec(
        PAST_VALUES,
        [-1, context, channels],
        "FP32",
        "the window: the latest context_length rows of every channel, in model space "
        "(scaled as in training; Engine.forecast scales raw values with the package's scaler)",
    )


def output_spec(horizon: int, channels: int) -> TensorSpec:
    return TensorSpec(
        OUTPUT_NAME,
        [-1, horizon, channels],
        "FP32",
        "the forecast: prediction_length rows of each forecast channel, in model space",
    )


def forecast_only(model: Any) -> Signature:
    """PatchTST / PatchTSMixer: the window in, every channel's forecast out."""
    c = model.config
    return Signature(
        ForecastOnly(model).eval(),
        [past_values_spec(c.context_length, c.num_input_channels)],
        output_spec(c.prediction_length, c.num_input_channels),
    )


def source_name(package: ModelPackage) -> str:
    """What a package was converted from: a hub id, a checkpoint folder or 'default'."""
    source = package.manifest.source
    name = source.get("hub_id") or source.get("path") or source.get("name")
    if not name:
        raise ModelPackageError(
            f"{package.path}'s manifest does not say what it was converted from"
        )
    return str(name)


def package_signature(package: ModelPackage) -> Signature:
    """The signature a package was exported with, rebuilt from its source checkpoint (the
    benchmark's PyTorch and ONNX Runtime backends run exactly what the IR runs)."""
    from ..hf.loading import load_model, resolve_source

    m = package.manifest
    resolved = resolve_source(source_name(package), revision=m.source.get("revision"))
    if m.family != "ttm":
        return forecast_only(load_model(resolved))
    from .ttm import ttm_signature

    changes: dict[str, Any] = {"num_input_channels": m.num_input_channels}
    model = load_model(resolved, **changes)
    if m.prediction_length != model.config.prediction_length:
        model = load_model(resolved, **changes, prediction_filter_length=m.prediction_length)
    frequency = m.frequency or {}
    return ttm_signature(
        model,
        observed_mask=OBSERVED_MASK in [spec.name for spec in m.inputs],
        fixed_freq_token=frequency.get("fixed"),
        default_freq_token=frequency.get("default"),
        frequency_mapping=frequency.get("mapping"),
    )
