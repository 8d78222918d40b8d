"""Hot swap: load a new model package beside the running one, check it, then switch.

Requests read the current engine once when they start, so in-flight requests finish on
the old model; nothing is dropped. A package that fails to load, whose recorded parity is
outside tolerance, whose smoke forecast is not finite, or that changes what clients send or get
(input shapes, the window's channels, the forecast's horizon and channels, the exogenous
channels, a default frequency token or raw scaling lost) is refused, and the old model keeps
serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ModelPackageError, OvcastError
from ..parity import within_tolerance
from .engine import Engine

log = logging.getLogger(__name__)


class EngineSlot:
    """Holds the serving engine and swaps it safely; ``engine`` is always a ready model."""

    def __init__(
        self,
        model_dir: str | Path,
        load: Callable[[str], Engine],
        *,
        engine: Engine | None = None,
    ) -> None:
        """``engine``: one already loaded from ``model_dir`` (else it is loaded here)."""
        self.model_dir = str(model_dir)
        self._load = load
        self.engine = engine if engine is not None else load(self.model_dir)
        self._lock = threading.Lock()  # one reload at a time
        self.reloads = 0

    def reload(self, model_dir: str | Path | None = None) -> Engine:
        """Load, check and switch to ``model_dir`` (default: the current one, re-read)."""
        with self._lock:
            candidate = self.prepare(model_dir)
            self._switch(candidate, model_dir or self.model_dir)
        return candidate

    def prepare(self, model_dir: str | Path | None = None) -> Engine:
        """Load and check ``model_dir`` without switching to it (``swap`` does): callers that
        replace several slots at once switch them only once every candidate passed."""
        return load_checked(self._load, model_dir or self.model_dir, self.engine, self.model_dir)

    def swap(self, candidate: Engine, model_dir: str | Path) -> None:
        """Switch to ``candidate``, which ``prepare(model_dir)`` returned."""
        with self._lock:
            self._switch(candidate, model_dir)

    def _switch(self, candidate: Engine, model_dir: str | Path) -> None:
        self.engine, self.model_dir = candidate, str(model_dir)
        self.reloads += 1
        log.info("reloaded: now serving %s from %s", candidate.name, model_dir)


def load_checked(
    load: Callable[[str], Engine], model_dir: str | Path, current: Engine, serving: str
) -> Engine:
    """Load ``model_dir`` as a replacement of ``current`` (served from ``serving``) and check
    it; ModelPackageError, saying the old model keeps serving, when it is refused."""
    target = str(model_dir)
    try:
        candidate = load(target)
        _check(candidate, current)
    except OvcastError as exc:
        raise ModelPackageError(f"reload refused, still serving {serving}: {exc}") from exc
    except Exception as exc:  # OpenVINO, memory, a bug: still an answer, never a crash
        log.error("reload of %s failed unexpectedly", target, exc_info=exc)
        raise ModelPackageError(
            f"reload refused, still serving {serving}: unexpected "
            f"{type(exc).__name__} while loading {target} (see the log)"
        ) from exc
    return candidate


def _check(candidate: Engine, current: Engine) -> None:
    shape = (candidate.context_length, candidate.num_channels)
    if shape != (current.context_length, current.num_channels):
        raise ModelPackageError(
            f"reload refused: the new model takes [{shape[0]}, {shape[1]}] windows, the running one "
            f"[{current.context_length}, {current.num_channels}]; clients would break"
        )
    inputs = [(t.name, t.shape) for t in candidate.inputs]
    if inputs != [(t.name, t.shape) for t in current.inputs]:
        raise ModelPackageError(
            f"reload refused: the new model takes the inputs {inputs}, the running one "
            f"{[(t.name, t.shape) for t in current.inputs]}; clients would break"
        )
    changes = _contract_changes(candidate, current)
    if changes:
        raise ModelPackageError(
            f"reload refused: {'; '.join(changes)}; clients would get other answers or fail"
        )
    parity = candidate.package.manifest.parity.get("fp32_vs_torch")
    if parity is None or not within_tolerance(
        parity, candidate.package.manifest.parity["tolerance_abs"]
    ):
        raise ModelPackageError(
            f"reload refused: {candidate.package.path} has no passing fp32 parity record"
        )
    others = {name: value[0] for name, value in candidate.example_inputs(1).items()}  # TTM
    smoke = candidate.predict(np.zeros(shape, np.float32), **others)
    if not np.isfinite(smoke).all():
        raise ModelPackageError(f"reload refused: {candidate.package.path} forecasts NaN or inf")


def _contract_changes(candidate: Engine, current: Engine) -> list[str]:
    """What clients rely on beyond the input shapes: the channels a window holds (in order),
    what the forecast is, which channel a future_exogenous column is, and the defaults and
    raw scaling they may use (losing one breaks them; gaining one does not)."""
    changes = []
    for what, new, old in (
        ("the window's channels", candidate.channel_names, current.channel_names),
        (
            "the forecast ([horizon, channels])",
            [candidate.prediction_length, candidate.forecast_channel_names],
            [current.prediction_length, current.forecast_channel_names],
        ),
        ("the exogenous channels", _exogenous(candidate), _exogenous(current)),
    ):
        if new != old:
            changes.append(f"{what} would be {new}, not {old}")
    if _default_token(current) is not None and _default_token(candidate) is None:
        changes.append("freq_token would lose its default, which requests may rely on")
    if _raw(current) is not None and _raw(candidate) != _raw(current):
        changes.append(f"raw scaling would be {_raw(candidate)}, not {_raw(current)}")
    return changes


def _exogenous(engine: Engine) -> list[str]:
    return [engine.channel_names[i] for i in engine.package.manifest.exogenous_channels or []]


def _default_token(engine: Engine) -> int | None:
    return (engine.package.manifest.frequency or {}).get("default")


def _raw(engine: Engine) -> str | None:
    """How raw requests are scaled: None (refused), one scaler, or per series by id columns."""
    series = engine.package.series_scalers
    if series is not None:
        return f"one scaler per series of {list(series.id_columns)}"
    return None if engine.scaler is None else "one scaler"
