"""The model package: a folder that describes itself.

    model_dir/
      model.xml, model.bin   OpenVINO IR, dynamic batch, fixed context
      ovcast.json            the manifest (this module): every input and output with its
                             meaning, names, source, parity, the scaler (or one per series)

``ovcast convert`` writes it; ``Engine`` and every server read it. Runtime-safe (no torch).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError, ModelPackageError
from .scaling import Scaler
from .series_scalers import SeriesScalers

MANIFEST_FILE = "ovcast.json"
XML_FILE = "model.xml"
BIN_FILE = "model.bin"
FORMAT = "ovcast-model-package"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as KServe v2 describes it (-1 = dynamic), and what it means."""

    name: str
    shape: list[int]
    datatype: str = "FP32"
    description: str = ""  # manifests before TTM support have none


# The inputs a model package may take, by name (the IR's tensor names). Every package takes
# PAST_VALUES first; TTM packages may take the others (see convert/ttm.py).
PAST_VALUES = "past_values"
OBSERVED_MASK = "past_observed_mask"
FREQ_TOKEN = "freq_token"
FUTURE_EXOGENOUS = "future_exogenous"


@dataclass
class Manifest:
    """Everything needed to use, trust and reproduce a converted model."""

    name: str
    family: str  # patchtst | patchtsmixer | ttm
    architecture: (
        str  # PatchTSTForPrediction | PatchTSMixerForPrediction | TinyTimeMixerForPrediction
    )
    context_length: int
    prediction_length: int
    num_input_channels: int
    channel_names: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str
    source: dict[str, Any]
    parity: dict[str, Any]
    versions: dict[str, str]
    scaler: dict[str, Any] | None = None
    # Forecast channels (indices into channel_names) when the model forecasts a subset
    # (TTM's prediction_channel_indices); None: every input channel.
    output_channels: list[int] | None = None
    # Channels whose future values are a model input (FUTURE_EXOGENOUS), in that order.
    exogenous_channels: list[int] | None = None
    # Per-series scalers (granite-tsfm's id_columns): {"id_columns": [...], "scalers":
    # [{"id": [...], "scaler": {...}}, ...]}; see series_scalers.py.
    series_scalers: dict[str, Any] | None = None
    # The frequency token (TTM resolution prefix tuning): {"vocab_size", "default", "mapping",
    # "fixed"}; "fixed" set: the token was built into the IR at conversion.
    frequency: dict[str, Any] | None = None
    runtime_config: dict[str, Any] = field(default_factory=dict)  # written by `ovcast tune`
    created_at: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> Manifest:
        if data.get("format") != FORMAT:
            raise ModelPackageError(
                f"{where} is not an ovcast manifest (format={data.get('format')!r})"
            )
        known = set(cls.__dataclass_fields__)
        required = {
            n
            for n, f in cls.__dataclass_fields__.items()
            if f.default is MISSING and f.default_factory is MISSING
        }
        missing = sorted(required - data.keys())
        if missing:
            raise ModelPackageError(f"{where} lacks the field(s) {missing}")
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
            kwargs["outputs"] = [TensorSpec(**t) for t in data["outputs"]]
        except TypeError as exc:
            raise ModelPackageError(f"{where}: malformed inputs/outputs ({exc})") from exc
        manifest = cls(**kwargs)
        if manifest.precision not in PRECISIONS:
            raise ModelPackageError(
                f"{where}: precision {manifest.precision!r} not in {PRECISIONS}"
            )
        if not manifest.inputs or manifest.inputs[0].name != PAST_VALUES:
            raise ModelPackageError(f"{where}: the first input must be {PAST_VALUES!r}")
        return manifest

    @property
    def forecast_channels(self) -> list[int]:
        """Indices (into channel_names) of the channels the model forecasts, in output order."""
        if self.output_channels is None:
            return list(range(self.num_input_channels))
        return list(self.output_channels)

    @property
    def extra_inputs(self) -> list[TensorSpec]:
        """The inputs besides past_values, in the IR's order."""
        return list(self.inputs[1:])


class ModelPackage:
    """A converted model on disk; ``load`` checks it is complete before anyone compiles it."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def xml_path(self) -> Path:
        return self.path / XML_FILE

    @property
    def bin_path(self) -> Path:
        return self.path / BIN_FILE

    @property
    def scaler(self) -> Scaler | None:
        return Scaler.from_dict(self.manifest.scaler) if self.manifest.scaler else None

    @property
    def series_scalers(self) -> SeriesScalers | None:
        """One scaler per series id, for packages converted with granite-tsfm's id_columns."""
        data = self.manifest.series_scalers
        return SeriesScalers.from_dict(data) if data else None

    @classmethod
    def load(cls, path: str | Path) -> ModelPackage:
        path = Path(path).expanduser()
        hint = f"create one with: ovcast convert MODEL {path}  (MODEL: 'default', a folder or a hub id)"
        if not path.exists():
            raise ModelNotFoundError(f"no model package at {path.resolve()}; {hint}")
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{path.resolve()} is a file; a model package is a folder. {hint}"
            )
        missing = [f for f in (MANIFEST_FILE, XML_FILE, BIN_FILE) if not (path / f).is_file()]
        if missing:
            raise ModelNotFoundError(
                f"model package {path.resolve()} is missing {', '.join(missing)}; {hint}"
            )
        try:
            data = json.loads((path / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ModelPackageError(f"cannot read {path / MANIFEST_FILE}: {exc}. {hint}") from exc
        if not isinstance(data, dict):
            raise ModelPackageError(f"{path / MANIFEST_FILE} is not a JSON object. {hint}")
        return cls(path, Manifest.from_dict(data, path / MANIFEST_FILE))

    def save_manifest(self) -> None:
        text = json.dumps(self.manifest.to_dict(), indent=2)
        (self.path / MANIFEST_FILE).write_text(text + "\n")

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ModelPackage({str(self.path)!r}, {m.architecture}, context={m.context_length}, "
            f"horizon={m.prediction_length}, channels={m.num_input_channels}, {m.precision})"
        )
