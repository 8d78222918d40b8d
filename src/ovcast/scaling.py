"""Per-channel scalers that travel inside a model package.

A model is trained on scaled data, so a raw window must be scaled the same way before
``Engine.predict`` and the forecast scaled back afterwards; ``Engine.forecast`` does both
with the package's ``Scaler``. Pure numpy: this module is on the runtime path.

Kinds, per channel:
- ``standard``:      (x - mean) / std
- ``minmax``:        (x - min) / (max - min)        (maps the fitted range to [0, 1])
- ``log_standard``:  (log1p(x) - mean) / std         (for volumes and other positive counts)
- ``identity``:      x
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError, ModelPackageError

KINDS = ("standard", "minmax", "log_standard", "identity")


@dataclass(frozen=True)
class Scaler:
    """Affine per-channel scaling, optionally after log1p: ``y = (f(x) - offset) / scale``."""

    kinds: tuple[str, ...]
    offset: np.ndarray  # (channels,) mean or min, in the (log1p) transformed space
    scale: np.ndarray  # (channels,) std or (max - min); never 0
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        n = len(self.kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            problems.append(f"unknown scaler kinds {bad}; expected one of {list(KINDS)}")
        if self.offset.shape != (n,) or self.scale.shape != (n,):
            problems.append(
                f"offset and scale must have shape ({n},), got {self.offset.shape}, {self.scale.shape}"
            )
        elif not (np.all(np.isfinite(self.offset)) and np.all(np.isfinite(self.scale))):
            problems.append("offset and scale must be finite")
        elif np.any(self.scale == 0):
            problems.append("scale must be non-zero for every channel")
        if self.names and len(self.names) != n:
            problems.append(f"{len(self.names)} names for {n} channels")
        if problems:
            raise ModelPackageError("invalid scaler: " + "; ".join(problems))

    @property
    def num_channels(self) -> int:
        return len(self.kinds)

    @property
    def _log_mask(self) -> np.ndarray:
        return np.array([k == "log_standard" for k in self.kinds])

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        kinds: str | Sequence[str] = "standard",
        names: Sequence[str] = (),
    ) -> Scaler:
        """Fit on ``values`` (time, channels); std is the population std, as sklearn's."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] < 2:
            raise InvalidInputError(
                f"Scaler.fit expects (time >= 2, channels) values, got {values.shape}"
            )
        c = values.shape[1]
        kinds_t = (kinds,) * c if isinstance(kinds, str) else tuple(kinds)
        if len(kinds_t) != c:
            raise InvalidInputError(f"{len(kinds_t)} scaler kinds for {c} channels")
        log_mask = np.array([k == "log_standard" for k in kinds_t])
        if np.any(values[:, log_mask] <= -1):
            raise InvalidInputError("log_standard channels need values > -1 (log1p)")
        transformed = values.copy()
        transformed[:, log_mask] = np.log1p(transformed[:, log_mask])
        offset = np.zeros(c)
        scale = np.ones(c)
        for i, kind in enumerate(kinds_t):
            col = transformed[:, i]
            if kind in ("standard", "log_standard"):
                offset[i], scale[i] = col.mean(), col.std()
            elif kind == "minmax":
                offset[i], scale[i] = col.min(), col.max() - col.min()
        scale[scale == 0] = 1.0  # a constant channel maps to 0, not to NaN
        return cls(kinds_t, offset, scale, tuple(names))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw values (..., channels) to model space, as float32."""
        x = self._check(x).astype(np.float64, copy=True)
        mask = self._log_mask
        if mask.any():
            x[..., mask] = np.log1p(x[..., mask])
        return ((x - self.offset) / self.scale).astype(np.float32)

    def inverse_transform(self, y: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
        """Model-space values (..., channels) back to raw units.

        ``channels`` names which of the scaler's channels the last axis holds, for
        forecasts that were narrowed to a subset (e.g. only the close, channel 0).
        """
        idx = np.arange(self.num_channels) if channels is None else np.asarray(channels)
        y = np.asarray(y, dtype=np.float64)
        if y.shape[-1] != len(idx):
            raise InvalidInputError(
                f"expected {len(idx)} channels in the last axis, got shape {y.shape}"
            )
        x = y * self.scale[idx] + self.offset[idx]
        mask = self._log_mask[idx]
        if mask.any():
            x[..., mask] = np.expm1(x[..., mask])
        return x.astype(np.float32)

    def select(self, channels: Sequence[int]) -> Scaler:
        """The scaler of a subset of channels (e.g. the exogenous ones), in the given order."""
        idx = list(channels)
        return Scaler(
            tuple(self.kinds[i] for i in idx),
            self.offset[idx],
            self.scale[idx],
            tuple(self.names[i] for i in idx) if self.names else (),
        )

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[-1:] != (self.num_channels,):
            raise InvalidInputError(
                f"expected {self.num_channels} channels in the last axis, got shape {x.shape}"
            )
        return x

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": [
                {"name": n, "kind": k, "offset": float(o), "scale": float(s)}
                for n, k, o, s in zip(
                    self.names or ("",) * self.num_channels,
                    self.kinds,
                    self.offset,
                    self.scale,
                    strict=True,
                )
            ]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        try:
            channels = data["channels"]
            names = tuple(ch.get("name", "") for ch in channels)
            return cls(
                kinds=tuple(ch["kind"] for ch in channels),
                offset=np.array([ch["offset"] for ch in channels], dtype=np.float64),
                scale=np.array([ch["scale"] for ch in channels], dtype=np.float64),
                names=names if any(names) else (),
            )
        except (KeyError, TypeError) as exc:
            raise ModelPackageError(
                f"invalid scaler: expected {{'channels': [{{'kind', 'offset', 'scale'}}, ...]}} ({exc!r})"
            ) from exc
