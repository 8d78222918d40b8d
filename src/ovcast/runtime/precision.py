"""Which precision the Engine computes in: f32, or bf16 where it is measured to be harmless.

On CPUs with bf16 units (AVX-512 BF16, AMX) OpenVINO can run the matrix products in bf16,
which is much faster and moves forecasts a little. ``ovcast tune`` (and ``ovcast convert
--check-bf16``) measure how much on the package's own windows, and on a data set when given
one, and record it in the manifest (``runtime_config["precision"]["bf16"]``, see
``bench/precision.py``). By default (``auto``) the Engine then computes in bf16 when

- this CPU has bf16 units (emulated bf16 on other AVX-512 CPUs would be slower), and
- the record says the change is within tolerance: the forecasts' error metrics (MSE and
  MAE) move by at most ``METRIC_TOLERANCE`` relative, and the forecasts themselves by at most
  ``FORECAST_TOLERANCE`` relative RMS.

Everywhere else, and whenever asked (``Engine(precision_hint="f32")``, ``ovcast --precision
f32 ...`` or ``OVCAST_PRECISION=f32``), it computes in f32, where the parity figures hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..package import Manifest
from .cpu import cpu_info

log = logging.getLogger(__name__)

PRECISION_ENV = "OVCAST_PRECISION"
CHOICES = ("auto", "f32", "bf16")
METRIC_TOLERANCE = 1e-3  # relative change of MSE and of MAE, bf16 against f32
FORECAST_TOLERANCE = 1e-2  # relative RMS change of the forecasts, bf16 against f32
# /proc/cpuinfo flags of native bf16 arithmetic: AVX-512 BF16, AMX, AVX-NE-CONVERT (AVX2 hosts)
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert")


@dataclass(frozen=True)
class PrecisionChoice:
    """The inference precision an Engine compiles with, and why (shown by info/dashboard)."""

    hint: str  # 'f32' or 'bf16', OpenVINO's INFERENCE_PRECISION_HINT
    reason: str
    evidence: str = ""  # the bf16 record, summarized, where there is one
    asked: bool = False  # by the caller or $OVCAST_PRECISION, not chosen here

    def __str__(self) -> str:
        return f"{self.hint} ({self.reason})"


def native_bf16(flags: Sequence[str] | None = None) -> bool:
    """Does this CPU compute in bf16 natively (not emulated)?"""
    flags = cpu_info()["flags"] if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def bf16_record(manifest: Manifest) -> dict[str, Any] | None:
    """The measured effect of bf16 on this package's forecasts, if it was measured."""
    record = manifest.runtime_config.get("precision", {}).get("bf16")
    return record if isinstance(record, dict) else None


def summarize(record: dict[str, Any]) -> str:
    """One line of evidence: how far bf16 moved forecasts and metrics, against the tolerances."""
    metric, tolerance = record["metric"], record["tolerance"]
    return (
        f"bf16 moved forecasts {100 * record['forecast_rms_change']:.2f}% RMS (tolerance "
        f"{100 * tolerance['forecast_rms_change']:g}%), MSE {100 * metric['mse_change']:+.3f}% "
        f"and MAE {100 * metric['mae_change']:+.3f}% (tolerance "
        f"{100 * tolerance['metric_change']:g}%) on {metric['windows']}"
    )


def requested_precision(requested: str | None) -> str:
    """The caller's choice, else $OVCAST_PRECISION, else 'auto'; checked."""
    value = requested or os.environ.get(PRECISION_ENV) or "auto"
    if value not in CHOICES:
        where = "precision_hint" if requested else f"${PRECISION_ENV}"
        raise ConfigError(f"{where} must be one of {CHOICES}, got {value!r}")
    return value


def choose_precision(
    manifest: Manifest, requested: str | None = None, flags: Sequence[str] | None = None
) -> PrecisionChoice:
    """f32 or bf16 for this package on this CPU (see the module docstring)."""
    wanted = requested_precision(requested)
    if wanted != "auto":
        return PrecisionChoice(wanted, "as asked", asked=True)
    if not native_bf16(flags):
        return PrecisionChoice("f32", "this CPU has no bf16 units")
    record = bf16_record(manifest)
    if record is None:
        return PrecisionChoice(
            "f32", "bf16 was not measured for this package (ovcast tune measures it)"
        )
    if not record.get("within_tolerance"):
        return PrecisionChoice("f32", "bf16 was measured outside tolerance", summarize(record))
    return PrecisionChoice(
        "bf16", "bf16 was measured within tolerance; --precision f32 for f32", summarize(record)
    )


def fallback_to_f32(choice: PrecisionChoice, error: Exception) -> PrecisionChoice:
    """f32 after a chosen bf16 failed to compile (e.g. ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN
    below bf16: no bf16 Softmax); re-raises ``error`` when there is nothing to fall back from."""
    if choice.asked or choice.hint == "f32":
        raise error
    first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    log.warning("bf16 did not compile here (%s); computing in f32", first_line)
    return PrecisionChoice(
        "f32", f"bf16 did not compile here ({first_line[:160]})", choice.evidence
    )


@contextlib.contextmanager
def precision_for_process(choice: str | None) -> Iterator[None]:
    """``$OVCAST_PRECISION`` = ``choice`` within the block (for this process's engines and the
    servers it starts), restored after it; None leaves it as it is."""
    previous = os.environ.get(PRECISION_ENV)
    if choice:
        requested_precision(choice)  # checked
        os.environ[PRECISION_ENV] = choice
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = previous
