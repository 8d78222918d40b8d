"""granite-tsfm's ``TimeSeriesPreprocessor`` (``preprocessor_config.json``), read without
granite-tsfm: the channels in the model's order, which of them are targets and exogenous,
the fitted scaler (or one per series id) and the frequency token.

    tsp = read_preprocessor("ckpt/preprocessor_config.json")
    tsp.channel_names        # targets, then observable, control, conditional columns
    tsp.scaler               # one Scaler for the whole data set, or None with ...
    tsp.series_scalers       # ... one per series, chosen by tsp.scaling_id_columns

granite-tsfm fits sklearn's StandardScaler or MinMaxScaler per series on the target columns
and, separately, on the other real-valued columns; both are affine per column, so they become
one ovcast ``Scaler`` over the model's channels, equal to granite-tsfm's to float rounding.
What cannot be honoured is refused with the reason rather than dropped: categorical encoders
(ordinal codes fed to the model), the power (Yeo-Johnson) scaler, clipping.
Pure Python and numpy: conversion reads it; nothing here needs granite-tsfm or sklearn.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelSourceError
from .scaling import Scaler
from .series_scalers import SeriesKey, SeriesScalers, id_text

log = logging.getLogger(__name__)

PREPROCESSOR_FILE = "preprocessor_config.json"
SCALER_KINDS = {"standard": "standard", "minmax": "minmax"}
# granite-tsfm's DEFAULT_FREQUENCY_MAPPING (the resolution tokens TTM r2 was trained with).
DEFAULT_FREQUENCY_MAPPING = {
    "oov": 0,
    "min": 1,
    "2min": 2,
    "5min": 3,
    "10min": 4,
    "15min": 5,
    "30min": 6,
    "h": 7,
    "H": 7,
    "d": 8,
    "D": 8,
    "W": 9,
}
_MINUTES = {"min": 1, "T": 1, "h": 60, "H": 60, "d": 1440, "D": 1440, "W": 10080}
_CANONICAL = {1: "min", 2: "2min", 5: "5min", 10: "10min", 15: "15min", 30: "30min"}
_CANONICAL.update({60: "h", 1440: "D", 10080: "W"})


@dataclass(frozen=True)
class Preprocessor:
    """What ovcast takes from a fitted ``TimeSeriesPreprocessor``."""

    target_columns: tuple[str, ...]
    observable_columns: tuple[str, ...] = ()
    control_columns: tuple[str, ...] = ()
    conditional_columns: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()
    scaling_id_columns: tuple[str, ...] = ()
    timestamp_column: str | None = None
    context_length: int | None = None
    prediction_length: int | None = None
    freq: str | None = None
    frequency_mapping: Mapping[str, int] = field(default_factory=dict)
    scaler: Scaler | None = None  # one scaler for all series (or identity without scaling)
    series_scalers: SeriesScalers | None = None  # one per series id

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The model's input channels, in granite-tsfm's order."""
        return tuple(
            dict.fromkeys(
                self.target_columns
                + self.observable_columns
                + self.control_columns
                + self.conditional_columns
            )
        )

    @property
    def prediction_channel_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.channel_names) if c in self.target_columns]

    @property
    def exogenous_channel_indices(self) -> list[int]:
        """Channels whose future is known (observable and control columns)."""
        known = set(self.observable_columns + self.control_columns)
        return [i for i, c in enumerate(self.channel_names) if c in known]


def frequency_token(freq: str, mapping: Mapping[str, int]) -> int | None:
    """A frequency a user names ('h', '1h', '60min', '0 days 01:00:00', 'D') as the token of
    the mapping's name for the same period; None when the mapping names no such period.

    This reads what a person typed; the token a granite-tsfm preprocessor's ``freq`` gets by
    default is granite-tsfm's own reading (``hf.ttm.pipeline_frequency_token``).
    """
    name = frequency_name(freq, mapping)
    return None if name is None else int(mapping[name])


def frequency_name(freq: str, mapping: Mapping[str, int]) -> str | None:
    """The mapping's name for the period ``freq`` spells ('60min' -> 'h'), or None."""
    if freq in mapping:
        return freq
    minutes = _minutes(freq)
    key = _CANONICAL.get(minutes) if minutes is not None else None
    if key is not None:
        for candidate in (key, key.upper(), key.lower()):
            if candidate in mapping:
                return candidate
    return None


def _minutes(freq: str) -> int | None:
    """Minutes of '15min', 'h', '2H', 'D', or a pandas Timedelta text '0 days 01:00:00'."""
    text = freq.strip()
    match = re.fullmatch(r"(?:(\d+) days? ?)?(\d+):(\d+):(\d+)", text)
    if match:
        days, hours, mins, secs = (int(g or 0) for g in match.groups())
        if secs:
            return None
        return days * 1440 + hours * 60 + mins
    match = re.fullmatch(r"(\d*)\s*([A-Za-z]+)", text)
    if match and match.group(2) in _MINUTES:
        return int(match.group(1) or 1) * _MINUTES[match.group(2)]
    return None


def read_preprocessor(path: str | Path) -> Preprocessor:
    """Read a ``preprocessor_config.json`` (or the folder holding one)."""
    file = Path(path)
    if file.is_dir():
        file = file / PREPROCESSOR_FILE
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot read the preprocessor {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelSourceError(f"{file} is not a JSON object")
    try:
        return parse_preprocessor(data)
    except ModelSourceError as exc:
        raise ModelSourceError(f"{file}: {exc}") from exc


def parse_preprocessor(data: Mapping[str, Any]) -> Preprocessor:
    """A ``TimeSeriesPreprocessor.to_dict()`` (or its JSON) as a ``Preprocessor``."""
    kind = data.get("feature_extractor_type") or data.get("processor_class")
    if kind not in (None, "TimeSeriesPreprocessor"):
        raise ModelSourceError(f"a {kind}, not a TimeSeriesPreprocessor")
    columns = {
        name: tuple(data.get(name) or ())
        for name in (
            "target_columns",
            "observable_columns",
            "control_columns",
            "conditional_columns",
            "id_columns",
        )
    }
    if not columns["target_columns"]:
        raise ModelSourceError("no target_columns: was the preprocessor trained?")
    categorical = list(data.get("categorical_columns") or []) + list(
        data.get("static_categorical_columns") or []
    )
    if categorical:
        raise ModelSourceError(
            f"categorical columns {categorical} need granite-tsfm's ordinal encoder (and, for "
            "static ones, the model's categorical embedding), which ovcast does not apply; "
            "convert a model trained without categorical columns"
        )
    scaling_ids = data.get("scaling_id_columns")
    scaling_ids = tuple(columns["id_columns"] if scaling_ids is None else scaling_ids)
    preprocessor = Preprocessor(
        **columns,  # type: ignore[arg-type]
        scaling_id_columns=scaling_ids,
        timestamp_column=data.get("timestamp_column"),
        context_length=data.get("context_length"),
        prediction_length=data.get("prediction_length"),
        freq=None if data.get("freq") is None else str(data["freq"]),
        frequency_mapping=dict(data.get("frequency_mapping") or DEFAULT_FREQUENCY_MAPPING),
    )
    names = preprocessor.channel_names
    if not data.get("scaling"):
        identity = Scaler(
            ("identity",) * len(names), np.zeros(len(names)), np.ones(len(names)), names
        )
        return _with(preprocessor, scaler=identity)
    kind = str(data.get("scaler_type"))
    if kind not in SCALER_KINDS:
        raise ModelSourceError(
            f"scaler_type {kind!r} cannot be applied by ovcast (it reads "
            f"{sorted(SCALER_KINDS)}); refit the preprocessor with one of them"
        )
    scaled_others = data.get("other_columns_to_scale")
    if scaled_others is None:
        scaled_others = list(
            dict.fromkeys(
                preprocessor.observable_columns
                + preprocessor.control_columns
                + preprocessor.conditional_columns
            )
        )
    target_columns = preprocessor.target_columns
    targets = _scalers(data.get("target_scaler_dict"), kind, "target_scaler_dict", target_columns)
    others = (
        _scalers(data.get("scaler_dict"), kind, "scaler_dict", scaled_others)
        if scaled_others
        else {}
    )
    if not targets:
        raise ModelSourceError("scaling is on but target_scaler_dict is empty: train it first")
    by_series = {}
    for key, target in targets.items():
        other = others.get(key)
        if scaled_others and other is None:
            raise ModelSourceError(f"series {list(key)} has a target scaler but no scaler_dict")
        by_series[key] = _combine(names, target, other or {}, SCALER_KINDS[kind])
    if scaling_ids:
        series = SeriesScalers(scaling_ids, _keys(by_series, len(scaling_ids)))
        return _with(preprocessor, series_scalers=series)
    if len(by_series) != 1:
        raise ModelSourceError(f"{len(by_series)} scalers but no scaling_id_columns")
    return _with(preprocessor, scaler=next(iter(by_series.values())))


def _with(p: Preprocessor, **changes: Any) -> Preprocessor:
    return replace(p, **changes)


_Fitted = dict[str, tuple[float, float]]  # column -> (offset, scale): model = (x - offset) / scale


def _scalers(raw: Any, kind: str, where: str, columns: Sequence[str]) -> dict[SeriesKey, _Fitted]:
    """{series key: fitted scaler per column} for the ``columns`` a column list says are
    scaled; a damaged scaler, or one fitted on other columns, is refused (granite-tsfm would
    fail on it too), never read as a partly identity scaler."""
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ModelSourceError(f"{where} is not a mapping of series id to scaler")
    out = {}
    for key, params in raw.items():
        name = f"{where}[{key!r}]"
        try:
            fitted = list(params.get("feature_names_in_") or columns)
            n = len(fitted)
            read = _standard if kind == "standard" else _minmax
            offset, scale = read(params, n)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelSourceError(f"{name} is not a fitted {kind} scaler: {exc}") from exc
        if offset.shape != (n,) or scale.shape != (n,):
            raise ModelSourceError(
                f"{name} has {offset.size} offset and {scale.size} scale values for the "
                f"{n} columns {fitted}; a fitted scaler has one of each per column"
            )
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(scale))):
            raise ModelSourceError(f"{name} has values that are not finite")
        if np.any(scale == 0):
            raise ModelSourceError(f"{name} has a zero scale; a fitted scaler's is non-zero")
        missing = [c for c in columns if c not in fitted]
        if missing or len(set(fitted)) != len(columns):
            what = f"columns {missing} are scaled" if missing else f"{list(columns)} are scaled"
            raise ModelSourceError(
                f"{what} (the column lists name {list(columns)}) but {name} is fitted on "
                f"{sorted(fitted)}: the column lists and the fitted scaler disagree; restore "
                "the names or refit the preprocessor"
            )
        out[_key(key)] = {
            c: (float(o), float(s)) for c, o, s in zip(fitted, offset, scale, strict=True)
        }
    return out


def _floats(params: Mapping[str, Any], name: str) -> np.ndarray:
    value = params.get(name)
    if value is None:
        raise ValueError(f"{name} is null")
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


def _standard(params: Mapping[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's StandardScaler: with_mean / with_std off leave mean_ / scale_ null."""
    with_mean, with_std = params.get("with_mean", True), params.get("with_std", True)
    offset = _floats(params, "mean_") if with_mean else np.zeros(n)
    scale = _floats(params, "scale_") if with_std else np.ones(n)
    return offset, scale


def _minmax(params: Mapping[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    if params.get("clip"):
        raise ValueError("clip=True (clipping to the feature range) is not affine")
    s = _floats(params, "scale_")  # y = x * s + m
    m = _floats(params, "min_")
    if np.any(s == 0):
        raise ValueError("a zero scale_")
    return -m / s, 1.0 / s


def _combine(
    names: Sequence[str],
    targets: Mapping[str, tuple[float, float]],
    others: Mapping[str, tuple[float, float]],
    kind: str,
) -> Scaler:
    kinds, offset, scale = [], [], []
    for name in names:
        fitted = targets.get(name) or others.get(name)
        kinds.append(kind if fitted else "identity")
        o, s = fitted or (0.0, 1.0)
        offset.append(o)
        scale.append(s)
    return Scaler(tuple(kinds), np.array(offset), np.array(scale), tuple(names))


def _key(raw: str) -> SeriesKey:
    """granite-tsfm writes a tuple id as a JSON list and a single id as its text."""
    try:
        value = json.loads(raw)
    except ValueError:
        return (raw,)
    parts = value if isinstance(value, list) else [raw]
    return tuple(id_text(p) for p in parts)


def _keys(by_series: dict[SeriesKey, Scaler], parts: int) -> dict[SeriesKey, Scaler]:
    bad = [list(k) for k in by_series if len(k) != parts]
    if bad:
        raise ModelSourceError(f"series ids {bad[:3]} do not have {parts} part(s)")
    return by_series
