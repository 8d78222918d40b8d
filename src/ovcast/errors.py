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
    ├── ServingError                          a served request that gets an error answer;
    │   │                                     carries .code (protocol) and .http_status
    │   ├── InvalidRequestError     400       malformed or invalid request (every problem listed)
    │   │   └── PayloadTooLargeError 413      a body or line over the configured cap
    │   ├── AccessDeniedError       401/403   no or wrong API key; model control disabled
    │   ├── UnknownModelError       404       no such model or version is served
    │   ├── ModelOutputError        422       the forecast is not finite (NaN or inf)
    │   ├── ReloadError             400       a load or reload refused; the old model serves on
    │   └── UnavailableError        503       not ready, draining, overloaded or timed out
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


class ServingError(OvcastError):
    """An error answer of the serving core: ``code`` for JSON lines, ``http_status`` for HTTP."""

    code = "internal_error"
    http_status = 500

    def __init__(
        self, message: str, *, code: str | None = None, http_status: int | None = None,
        request_id: object = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.code = code or self.code
        self.http_status = http_status or self.http_status
        self.request_id = request_id


class InvalidRequestError(ServingError):
    """A malformed request or one its model cannot take; the message lists every problem."""

    code, http_status = "invalid_request", 400


class PayloadTooLargeError(InvalidRequestError):
    """A body or line over the configured cap, refused before it is read."""

    code, http_status = "payload_too_large", 413


class AccessDeniedError(ServingError):
    """No or a wrong API key (401), or an operation this server does not allow (403)."""

    code, http_status = "unauthorized", 401


class UnknownModelError(ServingError):
    """No such model or version is served or in the repository (a name, never a path)."""

    code, http_status = "model_not_found", 404


class ModelOutputError(ServingError):
    """A finite input whose forecast is NaN or inf: answered as an error, never as nulls."""

    code, http_status = "model_output_not_finite", 422


class ReloadError(ServingError):
    """A load or reload was refused; the model that was serving goes on serving."""

    code, http_status = "reload_failed", 400


class UnavailableError(ServingError):
    """Not ready, overloaded or timed out (503): retrying later can succeed."""

    code, http_status = "unavailable", 503


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
            f"Install it with: {install_hint(extra)}"
        ) from exc


# Extras that pull in PyTorch: pip must be pointed at the CPU build, or it takes a CUDA one
# of several GB.
TORCH_EXTRAS = ("convert", "bench")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to this installation (a source checkout or a wheel),
    run by the interpreter that runs ovcast, so it lands in the same environment."""
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "ovcast").is_dir():
        target = f"-e '{checkout}[{extra}]'"  # running from a clone: install it editable
    else:
        target = f"'ovcast[{extra}]'"
    torch = f" --extra-index-url {TORCH_CPU_INDEX}" if extra in TORCH_EXTRAS else ""
    return f"{sys.executable} -m pip install {target}{torch}"
