"""Hot swap: load a new model package beside the running one, check it, then switch.

Requests read the current engine once when they start, so in-flight requests finish on
the old model; nothing is dropped. A package that fails to load, whose recorded parity is
outside tolerance, whose smoke forecast is not finite, or whose input shape differs from the
running model's (clients would break) is refused, and the old model keeps serving.
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

    def __init__(self, model_dir: str | Path, load: Callable[[str], Engine]) -> None:
        self.model_dir = str(model_dir)
        self._load = load
        self.engine = load(self.model_dir)
        self._lock = threading.Lock()  # one reload at a time
        self.reloads = 0

    def reload(self, model_dir: str | Path | None = None) -> Engine:
        """Load, check and switch to ``model_dir`` (default: the current one, re-read)."""
        target = str(model_dir or self.model_dir)
        with self._lock:
            try:
                candidate = self._load(target)
                _check(candidate, self.engine)
            except OvcastError as exc:
                raise ModelPackageError(
                    f"reload refused, still serving {self.model_dir}: {exc}"
                ) from exc
            except Exception as exc:  # OpenVINO, memory, a bug: still an answer, never a crash
                log.error("reload of %s failed unexpectedly", target, exc_info=exc)
                raise ModelPackageError(
                    f"reload refused, still serving {self.model_dir}: unexpected "
                    f"{type(exc).__name__} while loading {target} (see the log)"
                ) from exc
            self.engine, self.model_dir = candidate, target
            self.reloads += 1
        log.info("reloaded: now serving %s from %s", candidate.name, target)
        return candidate

    def reload_in_background(self, model_dir: str | Path | None = None) -> threading.Thread:
        def run() -> None:
            try:
                self.reload(model_dir)
            except OvcastError as exc:
                log.error("%s", exc)

        thread = threading.Thread(target=run, name="ovcast-reload", daemon=True)
        thread.start()
        return thread


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
