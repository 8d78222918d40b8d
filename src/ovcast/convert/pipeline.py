"""HuggingFace checkpoint -> checked OpenVINO model package.

    ovcast convert ibm-granite/granite-timeseries-patchtst models/granite
    ovcast.convert("default", "models/default", precision="fp32")

Steps: resolve and load the checkpoint; trace it with the patchify fix (``export_fixes.py``)
and the speed rewrites (``rewrites.py``) into an IR with a dynamic batch and the fixed context; check parity against PyTorch;
optionally compress (fp16 weights) or quantize (int8, NNCF); write the package and, on
request, an OVMS/KServe model repository.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import parity
from .._telemetry import decline_openvino_telemetry
from .._version import __version__
from ..errors import ConversionError, ModelSourceError, ParityError, require
from ..package import BIN_FILE, PRECISIONS, XML_FILE, Manifest, ModelPackage, TensorSpec

log = logging.getLogger(__name__)

INPUT_NAME = "past_values"
OUTPUT_NAME = "prediction_outputs"
# Parity and the engine compile in f32: on CPUs with bf16 (AVX-512 BF16, AMX) OpenVINO
# otherwise picks bf16 by itself, which moved forecasts by ~5e-4 here.
EXACT_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def convert(
    model: str | Path,
    out_dir: str | Path,
    *,
    precision: str = "fp32",
    calibration_data: np.ndarray | None = None,
    name: str | None = None,
    revision: str | None = None,
    channel_names: Sequence[str] | None = None,
    repository: str | Path | None = None,
    tolerance: float = parity.FP32_ABS_TOLERANCE,
    rewrites: bool = True,
    check_bf16: bool = False,
) -> ModelPackage:
    """Convert MODEL ('default', a checkpoint folder or a hub id) into a package at ``out_dir``.

    ``calibration_data``: int8 only, model-space windows (n, context, channels) or a long
    series (time, channels) to cut windows from; generated windows are used when absent. Raises ``ParityError`` when the fp32 IR disagrees with
    PyTorch beyond ``tolerance`` (and writes nothing). ``rewrites``: apply the export-time
    speed rewrites (``rewrites.py``); they are parity-checked like the rest of the export.
    ``check_bf16``: where this CPU has bf16 units, also measure bf16 against f32 on the
    package's windows and record it (what ``ovcast tune`` does; the Engine then uses bf16
    by default when it is within tolerance).
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    torch = require("torch", extra="convert", purpose="Converting a checkpoint")
    ov = require("openvino", extra="convert", purpose="Converting a checkpoint")
    from ..hf.loading import load_model, load_scaler, read_family, resolve_source

    source = resolve_source(model, revision=revision)
    hf_model = load_model(source)
    family = read_family(source.path)
    config = hf_model.config
    context, horizon, channels = (
        config.context_length,
        config.prediction_length,
        config.num_input_channels,
    )
    log.info(
        "loaded %s (%s, context %d, horizon %d, %d channels)",
        source.name,
        type(hf_model).__name__,
        context,
        horizon,
        channels,
    )
    if getattr(config, "loss", "mse") != "mse":
        raise ConversionError(
            f"the model has a distribution head (loss={config.loss!r}); ovcast converts point "
            "forecasters with loss='mse' (set it in config.json and fine-tune if needed)"
        )
    from .export_fixes import ForecastOnly

    forecast_only = ForecastOnly(hf_model).eval()

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return forecast_only(torch.from_numpy(x)).numpy()

    reference = _pytorch_reference(run_torch, hf_model, source.name)
    decline_openvino_telemetry()  # convert_model reports usage unless declined
    ov_model, applied = _export(ov, torch, forecast_only, hf_model, context, channels, rewrites)
    core = ov.Core()
    fp32_parity = parity.check(reference, _ov_runner(core, ov_model), context, channels)
    log.info(
        "fp32 parity: max abs error %.2e (max rel %.2e)",
        fp32_parity["max_abs_error"],
        fp32_parity["max_rel_error"],
    )
    if not parity.within_tolerance(fp32_parity, tolerance):
        raise ParityError(
            f"the fp32 IR differs from PyTorch by {fp32_parity['max_abs_error']:.3g} (max abs) on "
            f"the parity windows; the tolerance is {tolerance:g} x max(1, |forecast|). "
            "The export is not trustworthy for this model; please report it with its config.json."
        )
    report: dict[str, Any] = {
        "tolerance_abs": tolerance,
        "windows": f"seeded random walks + 24-step cycle, batches {list(parity.PARITY_BATCHES)}",
        "fp32_vs_torch": fp32_parity,
        "export_rewrites": applied,
    }
    if precision == "int8":
        from ..runtime.inputs import sliding_windows
        from .quantize import quantize_int8

        windows = calibration_data
        if windows is not None and np.ndim(windows) == 2:
            windows = sliding_windows(np.asarray(windows), context, max_windows=300)
        if windows is None:
            windows = np.concatenate(
                [parity.parity_windows(context, channels, 8, seed=s) for s in range(38)]
            )
        ov_model = quantize_int8(ov_model, windows)
    if precision != "fp32":
        final = _save_and_reload(ov, core, ov_model, precision)
        report[f"{precision}_vs_torch"] = parity.check(
            reference, _ov_runner(core, final), context, channels
        )
        log.info(
            "%s vs PyTorch: max abs error %.2e",
            precision,
            report[f"{precision}_vs_torch"]["max_abs_error"],
        )

    scaler = load_scaler(source)
    names = list(
        channel_names
        or (scaler.names if scaler and scaler.names else [f"channel_{i}" for i in range(channels)])
    )
    if len(names) != channels:
        raise ConversionError(f"{len(names)} channel names given for a {channels}-channel model")
    manifest = Manifest(
        name=name or _default_name(source.name),
        family=family,
        architecture=type(hf_model).__name__,
        context_length=context,
        prediction_length=horizon,
        num_input_channels=channels,
        channel_names=names,
        inputs=[TensorSpec(INPUT_NAME, [-1, context, channels])],
        outputs=[TensorSpec(OUTPUT_NAME, [-1, horizon, channels])],
        precision=precision,
        source=source.to_dict(),
        parity=report,
        versions=_versions(ov, torch),
        scaler=scaler.to_dict() if scaler else None,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, out / XML_FILE, compress_to_fp16=precision == "fp16")
    package = ModelPackage(out, manifest)
    if check_bf16:
        _check_bf16(package)
    package.save_manifest()
    log.info("wrote %s", package)
    if repository is not None:
        from .repository import write_repository

        write_repository(package, repository)
    return package


def _pytorch_reference(
    run_torch: Callable[[np.ndarray], np.ndarray], hf_model: Any, name: str
) -> dict[int, np.ndarray]:
    """The checkpoint's own PyTorch forecasts on the parity windows, before any export, so
    that a failure there is reported as the checkpoint's or transformers', not OpenVINO's."""
    import transformers

    config = hf_model.config
    saved_with = getattr(config, "transformers_version", None)
    versions = f"transformers {transformers.__version__}" + (
        f" (the checkpoint was saved with {saved_with})" if saved_with else ""
    )
    try:
        reference = parity.reference(run_torch, config.context_length, config.num_input_channels)
    except Exception as exc:
        raise ModelSourceError(
            f"{name}: the checkpoint's own PyTorch forward fails under {versions}, before any "
            f"conversion: {type(exc).__name__}: {exc}. This is a problem of the checkpoint or "
            "of this transformers version, not of OpenVINO: check its config.json, or install "
            "the transformers version it was saved with"
        ) from exc
    if not all(np.isfinite(f).all() for f in reference.values()):
        raise ModelSourceError(
            f"{name}: the checkpoint's own PyTorch forecasts are NaN or infinite under "
            f"{versions}, before any conversion; its weights or config.json are broken"
        )
    return reference


def _export(
    ov: Any,
    torch: Any,
    forecast_only: Any,
    hf_model: Any,
    context: int,
    channels: int,
    rewrites: bool = True,
) -> tuple[Any, list[str]]:
    """The traced IR (dynamic batch) and the names of the speed rewrites it was traced with."""
    from .export_fixes import exportable_patchify
    from .rewrites import speed_rewrites

    example = torch.from_numpy(parity.parity_windows(context, channels, 2))
    try:
        with (
            exportable_patchify(hf_model) as patched,
            speed_rewrites(hf_model, rewrites) as applied,
            torch.no_grad(),
            warnings.catch_warnings(),
        ):
            if not patched:
                raise ConversionError("found no patchify module to make exportable")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            ov_model = ov.convert_model(
                forecast_only,
                example_input=example,
                input=[(INPUT_NAME, ov.PartialShape([-1, context, channels]), ov.Type.f32)],
            )
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not convert the model: {exc}") from exc
    ov_model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    log.info("export rewrites: %s", ", ".join(applied) or "none")
    return ov_model, applied


def _ov_runner(core: Any, ov_model: Any) -> Callable[[np.ndarray], np.ndarray]:
    compiled = core.compile_model(ov_model, "CPU", EXACT_CONFIG)
    return lambda x: compiled(x)[0]


def _save_and_reload(ov: Any, core: Any, ov_model: Any, precision: str) -> Any:
    """The model as it will be on disk (fp16 compression happens at save time)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / XML_FILE
        ov.save_model(ov_model, xml, compress_to_fp16=precision == "fp16")
        return core.read_model(xml, Path(tmp) / BIN_FILE)


def _check_bf16(package: ModelPackage) -> None:
    from ..bench.precision import check_bf16, record_bf16
    from ..runtime.precision import native_bf16, summarize

    if not native_bf16():
        log.warning("this CPU has no bf16 units: bf16 not measured (the package stays f32)")
        return
    record = check_bf16(package)
    record_bf16(package, record)
    verdict = "within" if record["within_tolerance"] else "outside"
    log.info("%s: %s tolerance", summarize(record), verdict)


def _default_name(source_name: str) -> str:
    stem = Path(source_name.rstrip("/")).name or "model"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).lower()


def _versions(ov: Any, torch: Any) -> dict[str, str]:
    import transformers

    return {
        "ovcast": __version__,
        "openvino": ov.get_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
