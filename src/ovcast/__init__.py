"""ovcast: IBM Granite time-series forecasters (PatchTST, PatchTSMixer) on CPUs with OpenVINO.

    import ovcast
    ovcast.convert("default", "models/default")     # needs ovcast[convert] (torch)
    engine = ovcast.Engine("models/default")        # torch-free from here on
    engine.predict(window)                          # (512, 7) -> (96, 7)

Importing ovcast never imports torch or transformers; ``convert`` loads them on first use.
Nor does it let OpenVINO phone home: unless you have chosen with OpenVINO's ``opt_in_out``,
ovcast records OpenVINO's telemetry opt-out before OpenVINO loads (see ``_telemetry.py``).
"""

from __future__ import annotations

from typing import Any

from ._telemetry import decline_openvino_telemetry
from ._version import __version__

decline_openvino_telemetry()  # before anything imports openvino: its import sends an event

from .errors import (  # noqa: E402
    ConfigError,
    ConversionError,
    DataError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelPackageError,
    ModelSourceError,
    OvcastError,
    ParityError,
    TrainingError,
)
from .package import Manifest, ModelPackage, TensorSpec  # noqa: E402
from .runtime.cpu import usable_cores  # noqa: E402
from .runtime.engine import Engine, PatchTSTOpenVINOInference  # noqa: E402
from .scaling import Scaler  # noqa: E402

__all__ = [
    "ConfigError",
    "ConversionError",
    "DataError",
    "Engine",
    "InvalidInputError",
    "Manifest",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelPackage",
    "ModelPackageError",
    "ModelSourceError",
    "OvcastError",
    "ParityError",
    "PatchTSTOpenVINOInference",
    "Scaler",
    "TensorSpec",
    "TrainingError",
    "__version__",
    "convert",
    "usable_cores",
]


def __getattr__(name: str) -> Any:
    # convert pulls in torch: load it only when asked for.
    if name == "convert":
        from .convert import convert

        return convert
    raise AttributeError(f"module 'ovcast' has no attribute {name!r}")
