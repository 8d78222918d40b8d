"""A forecaster's input as users hold it, and the forecast in the same form.

Users have series with named channels and timestamps (a CSV with a header and a date column,
a pandas DataFrame), often longer than the model's context and with columns in another
order. This module turns such a series into the model's window, saying on the way what it
did (rows dropped, columns picked by name), and labels the forecast with the model's channel
names and the future timestamps, stepping on from the input's own interval:

    series = read_series("ETTh1.csv")                          # header and date column kept
    window, notes = series.window_for(512, engine.channel_names)
    table = ForecastTable.after(series, engine.forecast(window), engine.channel_names)
    write_forecast(table, "forecast.csv")                      # date,HUFL,...,OT

``forecast_frame`` does the same for pandas DataFrames (``Engine.forecast_frame``).
Nothing here needs pandas except that function.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .._csv import is_number
from ..errors import DataError, InvalidInputError, require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .engine import Engine

TIMESTAMP_NAMES = ("date", "datetime", "time", "timestamp", "ts")
OUTPUT_SUFFIXES = (".csv", ".json", ".npy", ".parquet")


@dataclass
class Series:
    """Values over time: ``values`` (time, channels) or a batch (n, time, channels)."""

    values: np.ndarray
    columns: list[str] | None = None  # names of the value columns, from a header
    timestamps: np.ndarray | None = None  # (time,) datetime64 or numbers, ascending
    timestamp_name: str = "timestamp"

    def window_for(
        self, context_length: int, channel_names: Sequence[str]
    ) -> tuple[np.ndarray, list[str]]:
        """The model's window(s) from this series, and what was done to get them.

        Channels are taken by name when the header holds every model channel (any order,
        extra columns ignored), else by position when the count matches. A series longer
        than the context gives its last ``context_length`` rows.
        """
        notes: list[str] = []
        expected = f"[{context_length}, {len(channel_names)}]"
        if self.values.ndim not in (2, 3):
            raise InvalidInputError(
                f"the input has shape {list(self.values.shape)}; expected {expected} "
                f"or [batch, {context_length}, {len(channel_names)}]"
            )
        values = self._channels(list(channel_names), notes)
        rows = values.shape[-2]
        if values.ndim == 2 and rows > context_length:
            notes.append(f"using the last {context_length} of {rows} rows")
            values = values[-context_length:]
        elif rows != context_length:
            raise InvalidInputError(
                f"the input has {rows} rows; the model needs {context_length}, expected "
                f"{expected} (a longer series is cut to its last {context_length} rows)"
            )
        return values, notes

    def _channels(self, names: list[str], notes: list[str]) -> np.ndarray:
        width = self.values.shape[-1]
        if self.columns and set(names) <= set(self.columns) and self.columns != names:
            picked = [self.columns.index(n) for n in names]
            extra = [c for c in self.columns if c not in names]
            notes.append(
                "channels taken by name"
                + (f"; ignored column(s) {extra}" if extra else "; reordered to the model's order")
            )
            return self.values[..., picked]
        if width == len(names):
            if self.columns and [c.lower() for c in self.columns] != [n.lower() for n in names]:
                notes.append(f"columns {self.columns} taken in order as the model's {names}")
            return self.values
        have = f"columns {self.columns}" if self.columns else f"{width} columns"
        raise InvalidInputError(
            f"the input has {have}; the model takes {len(names)} channels {names} "
            "(by name, in any order, or by position)"
        )


@dataclass
class ForecastTable:
    """A forecast labelled for people: channel names, and future timestamps where known."""

    values: np.ndarray  # (horizon, channels) or (batch, horizon, channels)
    columns: list[str]
    timestamps: np.ndarray | None = None  # (horizon,) future steps, same kind as the input's
    timestamp_name: str = "timestamp"

    @classmethod
    def after(cls, series: Series, forecast: np.ndarray, columns: Sequence[str]) -> ForecastTable:
        """Label ``forecast`` as the continuation of ``series``."""
        steps = forecast.shape[-2]
        future = None
        if series.timestamps is not None and forecast.ndim == 2:
            future = future_timestamps(series.timestamps, steps)
        return cls(forecast, list(columns), future, series.timestamp_name)

    def select(self, channels: Sequence[str]) -> ForecastTable:
        """Only ``channels`` (names or indices as text), in that order."""
        picked = [_channel_index(c, self.columns) for c in channels]
        return ForecastTable(
            self.values[..., picked],
            [self.columns[i] for i in picked],
            self.timestamps,
            self.timestamp_name,
        )

    def timestamp_strings(self) -> list[Any] | None:
        if self.timestamps is None:
            return None
        if np.issubdtype(self.timestamps.dtype, np.datetime64):
            return [str(t).replace("T", " ") for t in self.timestamps]
        return self.timestamps.tolist()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.columns}
        stamps = self.timestamp_strings()
        if stamps is not None:
            out[self.timestamp_name] = stamps
        out["predictions"] = np.ascontiguousarray(self.values)
        return out


def future_timestamps(timestamps: np.ndarray, steps: int) -> np.ndarray | None:
    """``steps`` timestamps after the last one, at the series' usual interval (None if none)."""
    if len(timestamps) < 2:
        return None
    deltas = np.diff(timestamps)
    values, counts = np.unique(deltas, return_counts=True)
    step = values[np.argmax(counts)]
    if not step > np.zeros_like(step):
        return None
    return timestamps[-1] + step * np.arange(1, steps + 1)


def _channel_index(channel: str, columns: Sequence[str]) -> int:
    if channel in columns:
        return list(columns).index(channel)
    try:
        index = int(channel)
    except ValueError:
        index = -1
    if not 0 <= index < len(columns):
        raise DataError(
            f"channel {channel!r} is not one of {list(columns)} or an index 0..{len(columns) - 1}"
        )
    return index


# Reading ------------------------------------------------------------------------------


def read_series(path: str | Path) -> Series:
    """A series from .csv (header and timestamp column optional), .npy or .json.

    JSON holds nested lists or ``{"past_values": ...}``; .npy an array. A CSV's timestamp
    column is the first column if it is not numeric, or a column named date/datetime/time/
    timestamp/ts.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return Series(np.load(path, allow_pickle=False))
        if suffix == ".json":
            data = orjson.loads(path.read_bytes())
            if isinstance(data, dict):
                if "past_values" not in data:
                    raise DataError(f"{path}: a JSON object needs a 'past_values' field")
                data = data["past_values"]
            return Series(np.asarray(data, dtype=np.float32))
        if suffix == ".csv":
            return _read_csv(path)
    except (ValueError, OSError, orjson.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    raise DataError(f"unsupported input file {path.name}; expected .npy, .json or .csv")


def _read_csv(path: Path) -> Series:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise DataError(f"{path} is empty; expected a row per time step, a column per channel")
    header = None
    if not all(is_number(v) for v in rows[0][1:]) or not is_number(rows[0][-1]):
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    stamp_col = _timestamp_column(header, rows[0])
    width = len(rows[0])
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise DataError(f"{path} line {number} has {len(row)} fields; expected {width}")
    keep = [i for i in range(width) if i != stamp_col]
    try:
        values = np.array([[float(r[i]) for i in keep] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: a value is not a number ({exc})") from exc
    series = Series(values, [header[i] for i in keep] if header else None)
    if stamp_col is not None:
        series.timestamps = _parse_timestamps([r[stamp_col] for r in rows])
        series.timestamp_name = header[stamp_col] if header else "timestamp"
    return series


def _timestamp_column(header: list[str] | None, first_row: list[str]) -> int | None:
    if header:
        for i, name in enumerate(header):
            if name.lower() in TIMESTAMP_NAMES:
                return i
    return 0 if not is_number(first_row[0]) else None


def _parse_timestamps(texts: list[str]) -> np.ndarray | None:
    """datetime64 for ISO dates, numbers for numeric stamps; None where neither parses."""
    try:
        return np.array([float(t) for t in texts])
    except ValueError:
        pass
    try:
        stamps = np.array([np.datetime64(t.strip().replace("Z", "")) for t in texts])
    except ValueError:
        return None
    return stamps.astype("datetime64[s]") if stamps.dtype != "datetime64[ns]" else stamps


# Writing ------------------------------------------------------------------------------


def write_forecast(table: ForecastTable, path: str | Path) -> None:
    """Write .csv (header: timestamp or step, channels), .json, .npy or .parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, table.values)
        return
    if suffix == ".json":
        path.write_bytes(orjson.dumps(table.to_json(), option=orjson.OPT_SERIALIZE_NUMPY))
        return
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"unsupported output {path.name}; expected one of {OUTPUT_SUFFIXES}")
    if table.values.ndim != 2:
        raise DataError(f"a {suffix} output holds one forecast; use .npy or .json for a batch")
    names, first = _first_column(table)
    if suffix == ".parquet":
        pa = require("pyarrow", extra="parquet", purpose="writing Parquet")
        pq = require("pyarrow.parquet", extra="parquet", purpose="writing Parquet")
        columns = {names: first, **{c: table.values[:, i] for i, c in enumerate(table.columns)}}
        pq.write_table(pa.table(columns), path)
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([names, *table.columns])
        for stamp, row in zip(first, table.values, strict=True):
            writer.writerow([stamp, *(f"{v:.7g}" for v in row)])


def _first_column(table: ForecastTable) -> tuple[str, list[Any]]:
    stamps = table.timestamp_strings()
    if stamps is None:
        return "step", list(range(1, table.values.shape[0] + 1))
    return table.timestamp_name, stamps


# pandas -------------------------------------------------------------------------------


def forecast_frame(
    engine: Engine,
    frame: pd.DataFrame,
    *,
    timestamp_column: str | None = None,
    id_columns: Sequence[str] = (),
    raw: bool = True,
) -> pd.DataFrame:
    """Forecast a DataFrame: one row per step, named channel columns, a timestamp column.

    Each series (one per value of ``id_columns``, or the whole frame) gives its last
    ``context_length`` rows to the model; the result has the id columns, the future
    timestamps and one column per model channel, ``prediction_length`` rows per series.
    ``raw``: the frame is in raw units (scaled with the package's scaler and back).
    """
    pd = require("pandas", extra="pandas", purpose="forecast_frame")
    stamp = timestamp_column or _frame_timestamp_column(frame)
    groups = list(frame.groupby(list(id_columns), sort=False)) if id_columns else [((), frame)]
    windows, labels = [], []
    for key, group in groups:
        series = Series(
            group[[c for c in group.columns if c not in (stamp, *id_columns)]].to_numpy(
                dtype=np.float64
            ),
            [c for c in group.columns if c not in (stamp, *id_columns)],
            _frame_timestamps(pd, group[stamp]) if stamp else None,
            stamp or "timestamp",
        )
        window, _ = series.window_for(engine.context_length, engine.channel_names)
        windows.append(window)
        labels.append((key if isinstance(key, tuple) else (key,), series))
    batch = np.stack(windows).astype(np.float32)
    if raw and engine.package.series_scalers is not None:  # one scaler per series id
        ids = [dict(zip(id_columns, key, strict=True)) for key, _ in labels]
        forecasts = engine.forecast(batch, series_id=ids)
    else:
        forecasts = engine.forecast(batch) if raw else engine.predict(batch)
    parts = []
    for (key, series), forecast in zip(labels, forecasts, strict=True):
        table = ForecastTable.after(series, forecast, engine.forecast_channel_names)
        part = pd.DataFrame(table.values, columns=table.columns)
        if table.timestamps is not None:
            part.insert(0, table.timestamp_name, table.timestamps)
        for name, value in reversed(list(zip(id_columns, key, strict=True))):
            part.insert(0, name, value)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _frame_timestamps(pd: Any, column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy()
    return pd.to_datetime(column).to_numpy()


def _frame_timestamp_column(frame: pd.DataFrame) -> str | None:
    import pandas as pd

    for column in frame.columns:
        if str(column).lower() in TIMESTAMP_NAMES or pd.api.types.is_datetime64_any_dtype(
            frame[column]
        ):
            return str(column)
    return None
