"""ovcast: IBM Granite time-series forecasters (PatchTST, PatchTSMixer) on CPUs with OpenVINO.

    import ovcast
    ovcast.convert("default", "models/default")     # needs ovcast[convert] (torch)
    engine = ovcast.Engine("models/default")        # torch-free from here on
    engine.predict(window)                          # (512, 7) -> (96, 7)

Importing ovcast never imports torch or transformers; ``convert`` loads them on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import (
    ConversionError,
    DataError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelPackageError,
    ModelSourceError,
    OvcastError,
    ParityError,
)
from .package import Manifest, ModelPackage, TensorSpec
from .runtime.cpu import usable_cores
from .runtime.engine import Engine, PatchTSTOpenVINOInference
from .scaling import Scaler

__all__ = [
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
