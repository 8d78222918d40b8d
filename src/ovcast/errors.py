"""The one exception hierarchy of ovcast.

Every error a user can cause or fix is an ``OvcastError``; the CLI prints its message
(no traceback unless ``--debug``) and exits non-zero. Foreign exceptions (OpenVINO,
torch, json) are translated where they cross into ovcast and re-raised ``from exc``.

    OvcastError
    ├── InvalidInputError (also ValueError)   a window of the wrong shape, dtype or values
    ├── ModelPackageError                     a converted model package that cannot be used
    │   └── ModelNotFoundError                nothing at the path that was looked for
    ├── ModelSourceError                      a HuggingFace checkpoint that cannot be loaded
    ├── ConversionError                       export to OpenVINO IR failed
    │   └── ParityError                       the IR disagrees with PyTorch beyond tolerance
    ├── DataError (also ValueError)           a CSV / data set that cannot be used
    ├── ConfigError (also ValueError)         an option or setting ovcast does not accept
    ├── TrainingError                         training produced no usable checkpoint
    ├── ServerStartError                      a server cannot listen where it was asked
    ├── BenchmarkError                        a benchmark could not measure what it was asked to
    └── MissingDependencyError (also ImportError)  an optional extra is not installed
"""

from __future__ import annotations

from typing import Any


class OvcastError(Exception):
    """Base class of every error ovcast raises on purpose."""


class InvalidInputError(OvcastError, ValueError):
    """Input to a model (a window or a batch of windows) is not what the model expects."""


class ModelPackageError(OvcastError):
    """A converted model package is incomplete or inconsistent."""


class ModelNotFoundError(ModelPackageError, FileNotFoundError):
    """No model package exists at the given path."""


class ModelSourceError(OvcastError):
    """A HuggingFace checkpoint (folder, hub id or ``default``) cannot be resolved or loaded."""


class ConversionError(OvcastError):
    """Exporting a checkpoint to OpenVINO IR failed."""


class ParityError(ConversionError):
    """The converted IR's forecasts differ from PyTorch's beyond the documented tolerance."""


class DataError(OvcastError, ValueError):
    """A data file cannot be read or does not hold what was asked for."""


class ConfigError(OvcastError, ValueError):
    """An option or setting has a value ovcast does not accept (the message lists the valid ones)."""


class TrainingError(OvcastError):
    """Training produced no checkpoint worth keeping (e.g. every validation score was NaN)."""


class ServerStartError(OvcastError):
    """A server (HTTP, dashboard) cannot start: a bad or busy address, missing assets."""


class BenchmarkError(OvcastError):
    """A benchmark target (a server under test, a backend) failed while being measured."""


class MissingDependencyError(OvcastError, ImportError):
    """An optional dependency is missing; the message names the extra that brings it."""


def require(module: str, *, extra: str, purpose: str) -> Any:
    """Import an optional dependency or say which ``ovcast[extra]`` installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'ovcast[{extra}]'"
        ) from exc
