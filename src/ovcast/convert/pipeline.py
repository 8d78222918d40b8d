"""HuggingFace checkpoint -> checked OpenVINO model package.

    ovcast convert ibm-granite/granite-timeseries-patchtst models/granite
    ovcast.convert("default", "models/default", precision="fp32")

Steps: check the options; resolve and load the checkpoint (and a granite-tsfm preprocessor beside it); trace
its ``Signature`` (every input, named: ``signature.py``, ``ttm.py``) with the patchify fix
(``export_fixes.py``) and the speed rewrites (``rewrites.py``) into an IR with a dynamic batch and the fixed context; check parity
against PyTorch on every input;
optionally compress (fp16 weights) or quantize (int8, NNCF); write the package (with the
checkpoint's training.json, so the package knows its run) and, on
request, an OVMS/KServe model repository.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import parity
from .._csv import repeated
from .._telemetry import decline_openvino_telemetry
from .._version import __version__
from ..errors import ConfigError, ConversionError, ModelSourceError, ParityError, require
from ..hf.loading import SCALER_FILE
from ..package import BIN_FILE, FREQ_TOKEN, PRECISIONS, XML_FILE, Manifest, ModelPackage
from ..preprocessor import (
    DEFAULT_FREQUENCY_MAPPING,
    PREPROCESSOR_FILE,
    Preprocessor,
    frequency_name,
    frequency_token,
    read_preprocessor,
)
from ..scaling import Scaler
from ..series_scalers import SeriesScalers

if TYPE_CHECKING:  # signature.py imports torch: only when converting
    from .signature import Signature

log = logging.getLogger(__name__)

# Parity and the engine compile in f32: on CPUs with bf16 (AVX-512 BF16, AMX) OpenVINO
# otherwise picks bf16 by itself, which moved forecasts by ~5e-4 here.
EXACT_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
RUN_FILE = "training.json"  # how the checkpoint was trained (train.loop writes it)
# A model name is one path component: it names a folder of a model repository.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Runner = Callable[..., np.ndarray]  # (past_values, *other inputs) -> forecasts


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
    preprocessor: str | Path | None = None,
    freq_token: int | str | None = None,
    observed_mask: bool = False,
    prediction_filter_length: int | None = None,
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

    ``preprocessor``: a granite-tsfm ``preprocessor_config.json`` (default: the one beside the
    checkpoint, if any): its channels, targets and fitted scaler(s) go into the package.
    TTM only: ``freq_token`` fixes the frequency token in the IR (a token or a frequency such
    as 'h'); ``observed_mask`` adds the ``past_observed_mask`` input;
    ``prediction_filter_length`` forecasts only the first N steps of the horizon.
    """
    _check_options(precision, calibration_data, name, channel_names, out_dir)
    torch = require("torch", extra="convert", purpose="Converting a checkpoint")
    ov = require("openvino", extra="convert", purpose="Converting a checkpoint")
    from ..hf.loading import load_model, load_scaler, read_family, resolve_source

    source = resolve_source(model, revision=revision)
    family = read_family(source.path)
    tsp = _preprocessor(source.path, preprocessor)
    ttm_options = {"freq_token": freq_token, "observed_mask": observed_mask}
    ttm_options["prediction_filter_length"] = prediction_filter_length
    if family != "ttm" and (freq_token is not None or observed_mask or prediction_filter_length):
        raise ConversionError(
            "--freq-token, --observed-mask and --prediction-filter-length apply to TinyTimeMixer "
            f"checkpoints; {source.name} is a {family} model"
        )
    changes = _config_changes(source.path, family, tsp, prediction_filter_length)
    hf_model = load_model(source, **changes)
    signature = _signature(hf_model, family, tsp, freq_token, observed_mask)
    config = hf_model.config
    context, channels = config.context_length, config.num_input_channels
    horizon = signature.output.shape[1]
    log.info(
        "loaded %s (%s, context %d, horizon %d, %d channels, inputs %s)",
        source.name,
        type(hf_model).__name__,
        context,
        horizon,
        channels,
        ", ".join(signature.input_names),
    )
    if family != "ttm" and getattr(config, "loss", "mse") != "mse":
        raise ConversionError(
            f"the model has a distribution head (loss={config.loss!r}); ovcast converts point "
            "forecasters with loss='mse' (set it in config.json and fine-tune if needed)"
        )
    extras = _parity_extras(signature)

    def run_torch(x: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (x, *rest)]
            return signature.module(*tensors).numpy()

    reference = _pytorch_reference(extras(run_torch), hf_model, source.name)
    decline_openvino_telemetry()  # convert_model reports usage unless declined
    ov_model, applied = _export(ov, torch, signature, hf_model, rewrites)
    core = ov.Core()
    fp32_parity = parity.check(reference, extras(_ov_runner(core, ov_model)), context, channels)
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
    if signature.extra_inputs:
        report["other_inputs"] = (
            "seeded: " + ", ".join(spec.name for spec in signature.extra_inputs) + " "
            "(every frequency token in turn, random-walk exogenous futures, ~10% missing)"
        )
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
        ov_model = quantize_int8(ov_model, windows, _calibration_extras(signature, len(windows)))
    if precision != "fp32":
        final = _save_and_reload(ov, core, ov_model, precision)
        report[f"{precision}_vs_torch"] = parity.check(
            reference, extras(_ov_runner(core, final)), context, channels
        )
        log.info(
            "%s vs PyTorch: max abs error %.2e",
            precision,
            report[f"{precision}_vs_torch"]["max_abs_error"],
        )

    scaler, series_scalers = _scalers(source, tsp, load_scaler)
    if scaler is not None and scaler.num_channels != channels:
        raise ConversionError(
            f"{source.path / 'scaler.json'} scales {scaler.num_channels} channels; the model "
            f"takes {channels}. It belongs to another model: fix or remove it"
        )
    names = list(
        channel_names
        or (tsp.channel_names if tsp else ())
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
        inputs=signature.inputs,
        outputs=[signature.output],
        precision=precision,
        source=source.to_dict(),
        parity=report,
        versions=_versions(ov, torch, family),
        scaler=scaler.to_dict() if scaler else None,
        output_channels=signature.output_channels,
        exogenous_channels=signature.exogenous_channels,
        series_scalers=series_scalers.to_dict() if series_scalers else None,
        frequency=signature.frequency,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, out / XML_FILE, compress_to_fp16=precision == "fp16")
    package = ModelPackage(out, manifest)
    if check_bf16:
        _check_bf16(package)
    package.save_manifest()
    if (source.path / RUN_FILE).is_file():  # evaluate then knows the run's splits and data
        shutil.copy2(source.path / RUN_FILE, out / RUN_FILE)
    log.info("wrote %s", package)
    if repository is not None:
        from .repository import write_repository

        write_repository(package, repository)
    return package


def _preprocessor(checkpoint: Path, given: str | Path | None) -> Preprocessor | None:
    """The granite-tsfm preprocessor given, or the one saved beside the checkpoint."""
    if given is not None:
        return read_preprocessor(given)
    if (checkpoint / PREPROCESSOR_FILE).is_file():
        log.info("using the preprocessor beside the checkpoint: %s", checkpoint / PREPROCESSOR_FILE)
        return read_preprocessor(checkpoint)
    return None


def _config_changes(
    path: Path, family: str, tsp: Preprocessor | None, filter_length: int | None
) -> dict[str, Any]:
    """What TTM's config needs changed at load time: a shorter horizon, and the channel count
    of the preprocessor's data for a channel-independent model (as granite-tsfm's get_model)."""
    if family != "ttm":
        return {}
    import json

    config = json.loads((path / "config.json").read_text())
    changes: dict[str, Any] = {}
    if filter_length is not None:
        if not 0 < filter_length <= config.get("prediction_length", 0):
            raise ConversionError(
                f"--prediction-filter-length {filter_length} must be in 1..{config.get('prediction_length')} "
                "(the model's horizon)"
            )
        changes["prediction_filter_length"] = filter_length
    if tsp is not None and len(tsp.channel_names) != config.get("num_input_channels"):
        mixes = (
            config.get("mode") == "mix_channel"
            or config.get("decoder_mode") == "mix_channel"
            or config.get("enable_forecast_channel_mixing")
        )
        if mixes:
            raise ConversionError(
                f"the preprocessor has {len(tsp.channel_names)} channels "
                f"({', '.join(tsp.channel_names)}) but the model mixes "
                f"{config.get('num_input_channels')} channels"
            )
        changes["num_input_channels"] = len(tsp.channel_names)
    return changes


def _signature(
    hf_model: Any,
    family: str,
    tsp: Preprocessor | None,
    freq_token: int | str | None,
    observed_mask: bool,
) -> Signature:
    from .signature import forecast_only
    from .ttm import ttm_signature

    if family != "ttm":
        return forecast_only(hf_model)

    mapping = dict(tsp.frequency_mapping) if tsp else dict(DEFAULT_FREQUENCY_MAPPING)
    token: int | None
    if isinstance(freq_token, str):
        token = frequency_token(freq_token, mapping)
        if token is None:
            raise ConversionError(
                f"--freq-token {freq_token!r} is not a frequency of the mapping "
                f"{sorted(mapping)} (nor the same period spelt otherwise, such as '60min' "
                "for 'h'); give one of them or a token number"
            )
    else:
        token = freq_token
    default, default_from = (None, "")
    if tsp is not None and hf_model.config.resolution_prefix_tuning and token is None:
        default, default_from = _preprocessor_token(tsp, mapping)
    signature = ttm_signature(
        hf_model,
        observed_mask=observed_mask,
        fixed_freq_token=token,
        default_freq_token=default,
        frequency_mapping=mapping,
    )
    if (
        signature.frequency is not None
        and default_from
        and signature.frequency["default"] == default
    ):
        signature.frequency["default_from"] = default_from
    if tsp is not None:
        _check_channels(hf_model.config, tsp)
    return signature


def _preprocessor_token(tsp: Preprocessor, mapping: dict[str, int]) -> tuple[int | None, str]:
    """The package's default frequency token and how it was chosen: the token granite-tsfm's
    own pipeline feeds for the preprocessor's freq, so Engine.forecast equals the pipeline
    and a model fine-tuned with granite-tsfm gets the token it was trained with. Where that
    is 'oov' but the mapping names the same period (daily data stored as '1 days 00:00:00'
    reads as 'oov' with pandas 3), the package still defaults to granite's token and says
    how to feed the named one instead."""
    from ..hf.ttm import pipeline_frequency_token

    if tsp.freq is None:
        return None, ""
    token = pipeline_frequency_token(tsp.freq, mapping)
    if token is None:
        log.warning(
            "granite-tsfm cannot read the preprocessor's freq %r: the package has no default "
            "frequency token and requests must give freq_token",
            tsp.freq,
        )
        return None, f"none: granite-tsfm cannot read the preprocessor's freq {tsp.freq!r}"
    note = (
        f"the preprocessor's freq {tsp.freq!r} as granite-tsfm's own pipeline reads it "
        f"(TimeSeriesPreprocessor.get_frequency_token): token {token}"
    )
    name = frequency_name(tsp.freq, mapping)
    if name is not None and mapping[name] != token:
        note += (
            f"; the mapping calls the same period {name!r} (token {mapping[name]}): send "
            f"freq_token {name!r}, or convert with --freq-token {name}, to feed that instead"
        )
        log.warning("frequency token: %s", note)
    return token, note


def _check_channels(config: Any, tsp: Preprocessor) -> None:
    """The preprocessor's targets and exogenous columns must be the model's; its window
    lengths should be (a warning: the fitted scaler is still right, but data prepared with
    the preprocessor's lengths does not fit the model)."""
    for what, fitted, model in (
        ("context_length", tsp.context_length, config.context_length),
        ("prediction_length", tsp.prediction_length, config.prediction_length),
    ):
        if fitted is not None and fitted != model:
            log.warning(
                "the preprocessor's %s is %s but the model's is %s: was it fitted for "
                "another model? The package uses the model's",
                what,
                fitted,
                model,
            )
    model_targets = config.prediction_channel_indices
    if model_targets and sorted(model_targets) != tsp.prediction_channel_indices:
        raise ConversionError(
            f"the model forecasts channels {sorted(model_targets)} but the preprocessor's "
            f"targets are {tsp.prediction_channel_indices} of {list(tsp.channel_names)}"
        )
    model_exogenous = config.exogenous_channel_indices
    if model_exogenous and sorted(model_exogenous) != tsp.exogenous_channel_indices:
        raise ConversionError(
            f"the model's exogenous channels are {sorted(model_exogenous)} but the "
            f"preprocessor's are {tsp.exogenous_channel_indices} of {list(tsp.channel_names)}"
        )


def _scalers(
    source: Any, tsp: Preprocessor | None, load_scaler: Callable[[Any], Scaler | None]
) -> tuple[Scaler | None, SeriesScalers | None]:
    """The package's scaler(s): the preprocessor's if there is one, else scaler.json's."""
    if tsp is None:
        return load_scaler(source), None
    if (source.path / SCALER_FILE).is_file():
        log.warning(
            "%s has both scaler.json and a granite-tsfm preprocessor; the preprocessor's "
            "scaler is used",
            source.path,
        )
    return tsp.scaler, tsp.series_scalers


def _parity_extras(signature: Signature) -> Callable[[Runner], Callable[[np.ndarray], np.ndarray]]:
    """Runner of all inputs -> runner of windows: the other inputs are seeded by batch size,
    so PyTorch and OpenVINO see the same values."""
    from ..runtime.inputs import example_inputs

    vocab = int((signature.frequency or {}).get("vocab_size", 1))
    specs = signature.extra_inputs

    def wrap(run: Runner) -> Callable[[np.ndarray], np.ndarray]:
        def run_windows(x: np.ndarray) -> np.ndarray:
            values = example_inputs(specs, len(x), vocab_size=vocab)
            return run(x, *(values[spec.name] for spec in specs))

        return run_windows

    return wrap


def _calibration_extras(signature: Signature, windows: int) -> list[dict[str, np.ndarray]]:
    """The other inputs for each calibration window: the package's default frequency token
    for every other window (what most requests feed) and every token in turn between, a
    different exogenous future per window. One fixed set (token 0 for all) calibrated int8
    for that token only: twice the error at the default token."""
    from ..runtime.inputs import example_inputs

    frequency = signature.frequency or {}
    vocab = int(frequency.get("vocab_size", 1))
    values = example_inputs(signature.extra_inputs, windows, vocab_size=vocab)
    if FREQ_TOKEN in values and frequency.get("default") is not None:
        tokens = values[FREQ_TOKEN]
        tokens[1::2] = np.arange(len(tokens[1::2])) % vocab
        tokens[::2] = int(frequency["default"])
    return [{name: array[i : i + 1] for name, array in values.items()} for i in range(windows)]


def _check_options(
    precision: str,
    calibration_data: np.ndarray | None,
    name: str | None,
    channel_names: Sequence[str] | None,
    out_dir: str | Path,
) -> None:
    """Refuse options that cannot work or would do nothing, before the minutes of work."""
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if calibration_data is not None:
        if precision != "int8":
            raise ConfigError(
                f"calibration data calibrates int8 quantization; --precision {precision} "
                "does not use it (add --precision int8, or leave --calibration-data out)"
            )
        values = np.asarray(calibration_data)
        if values.dtype.kind not in "fiu" or not np.isfinite(values).all():
            raise ConfigError(
                "the calibration data holds NaN, infinite or non-numeric values; int8 scales "
                "calibrated on them would be wrong. Give finite model-space windows"
            )
    if name is not None and (not NAME_PATTERN.fullmatch(name) or name in (".", "..")):
        raise ConfigError(
            f"--name {name!r} is not a model name: use letters, digits, '.', '_' and '-' "
            "(it names a folder of the model repository, so no '/' or '..')"
        )
    if channel_names is not None:
        blank = [i for i, n in enumerate(channel_names) if not n.strip()]
        twice = repeated(channel_names)
        if blank or twice:
            what = f"blank names at positions {blank}" if blank else f"{twice} more than once"
            raise ConfigError(f"--channel-names gives {what}; name every channel, each once")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"OUT_DIR {out_dir} is a file; the package is a folder")


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
    ov: Any, torch: Any, signature: Signature, hf_model: Any, rewrites: bool = True
) -> tuple[Any, list[str]]:
    """The traced IR (dynamic batch) and the names of the speed rewrites it was traced with."""
    from ..runtime.inputs import example_inputs
    from .export_fixes import exportable_patchify
    from .rewrites import speed_rewrites
    from .signature import OV_TYPES

    specs = signature.inputs
    context, channels = specs[0].shape[1], specs[0].shape[2]
    vocab = int((signature.frequency or {}).get("vocab_size", 1))
    others = example_inputs(signature.extra_inputs, 2, vocab_size=vocab)
    example = (
        torch.from_numpy(parity.parity_windows(context, channels, 2)),
        *(torch.from_numpy(others[spec.name]) for spec in signature.extra_inputs),
    )
    shapes = [
        (ov.PartialShape(spec.shape), getattr(ov.Type, OV_TYPES[spec.datatype])) for spec in specs
    ]
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
            ov_model = ov.convert_model(signature.module, example_input=example, input=shapes)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"OpenVINO could not convert the model: {exc}") from exc
    for port, spec in zip(ov_model.inputs, specs, strict=True):
        port.get_tensor().set_names({spec.name})
    ov_model.outputs[0].get_tensor().set_names({signature.output.name})
    log.info("export rewrites: %s", ", ".join(applied) or "none")
    return ov_model, applied


def _ov_runner(core: Any, ov_model: Any) -> Runner:
    compiled = core.compile_model(ov_model, "CPU", EXACT_CONFIG)
    return lambda *inputs: compiled(list(inputs))[0]


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


def _versions(ov: Any, torch: Any, family: str) -> dict[str, str]:
    import transformers

    versions = {
        "ovcast": __version__,
        "openvino": ov.get_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if family == "ttm":
        from importlib.metadata import version

        versions["granite-tsfm"] = version("granite-tsfm")
    return versions
