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

A CSV is read by the rules training uses (``ovcast._csv``): a BOM is dropped, header names
are matched trimmed and ignoring case, a header naming a column twice is refused, the time
column is found by the same rule, and times must increase (a file out of order or with a
repeated time is refused, naming the line).

``forecast_frame`` does the same for pandas DataFrames (``Engine.forecast_frame``).
Nothing here needs pandas except that function.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .._csv import (
    TIME_COLUMN_NAMES,
    Table,
    is_number,
    is_time,
    name_key,
    read_table,
    time_column,
)
from ..errors import DataError, InvalidInputError, require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .engine import Engine

log = logging.getLogger(__name__)

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

        Channels are taken by name when the header holds every model channel (trimmed and
        ignoring case; any order, extra columns ignored), else by position when the count
        matches (a warning when the header names other columns). A series longer than the
        context gives its last ``context_length`` rows.
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
        keys, wanted = [name_key(c) for c in self.columns or []], [name_key(n) for n in names]
        if keys and set(wanted) <= set(keys) and keys != wanted:
            picked = [keys.index(k) for k in wanted]
            extra = [c for c, k in zip(self.columns or [], keys, strict=True) if k not in wanted]
            notes.append(
                "channels taken by name"
                + (f"; ignored column(s) {extra}" if extra else "; reordered to the model's order")
            )
            return self.values[..., picked]
        if width == len(names):
            if keys and keys != wanted:
                log.warning(
                    "the input's columns %s are not the model's channels %s: taken in order, "
                    "by position; name the columns as the model does to match them by name",
                    self.columns,
                    names,
                )
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

    JSON holds nested lists or ``{"past_values": ...}``; .npy an array. A CSV's time column
    is found as training finds it (``_csv.time_column``); its times must increase.
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
            if not isinstance(data, list):
                raise DataError(
                    f"{path}: past_values must be nested lists of numbers, [time][channel] or "
                    f"[batch][time][channel]; got a JSON {type(data).__name__}"
                )
            return Series(np.asarray(data, dtype=np.float32))
        if suffix == ".csv":
            return _read_csv(path)
    except DataError:
        raise
    except (ValueError, TypeError, OSError, orjson.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    raise DataError(f"unsupported input file {path.name}; expected .npy, .json or .csv")


def _read_csv(path: Path) -> Series:
    table = read_table(path, expected="a row per time step, a column per channel", header=None)
    header = table.header or None
    width = len(header) if header else len(table.rows[0])
    for row, line in zip(table.rows, table.lines, strict=True):
        if len(row) != width:
            raise DataError(f"{path} line {line} has {len(row)} fields; expected {width}")
    if not header:  # name the columns by number, for messages that name a column
        table.header = [str(i + 1) for i in range(width)]
    stamp = time_column(header or [], table.rows[0])
    keep = [name for i, name in enumerate(table.header) if i != stamp]
    series = Series(table.numbers(keep), keep if header else None)
    if stamp is not None:
        series.timestamps = _timestamps(table, table.header[stamp])
        series.timestamp_name = header[stamp] if header else "timestamp"
    return series


def _timestamps(table: Table, column: str) -> np.ndarray | None:
    """The times of ``column``: epoch numbers as given (integers stay integers), ISO 8601 as
    datetime64 in UTC. Times that increase are required; times neither form reads (such as
    '19/01/2024') leave the forecast labelled by step, with a warning."""
    cells = table.cells(column)
    unread = next((c for c in cells if not is_time(c)), None)
    if unread is not None:
        log.warning(
            "%s: the %r column holds times that are neither ISO 8601 nor epoch numbers (such "
            "as %r); the forecast is labelled by step",
            table.path,
            column,
            unread,
        )
        return None
    seconds = table.times(column)  # refuses times out of order or repeated, naming the line
    if all(is_number(c) for c in cells):
        numbers = np.array([float(c) for c in cells])
        whole = np.all(numbers == np.round(numbers)) and np.abs(numbers).max() < 2**62
        return numbers.astype(np.int64) if whole else numbers
    if np.all(seconds == np.round(seconds)):
        return seconds.astype(np.int64).astype("datetime64[s]")
    return np.round(seconds * 1e6).astype(np.int64).astype("datetime64[us]")


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
    id_columns: str | Sequence[str] = (),
    raw: bool = True,
    **inputs: Any,
) -> pd.DataFrame:
    """Forecast a DataFrame: one row per step, named channel columns, a timestamp column.

    Each series (one per value of ``id_columns``, or the whole frame) gives its last
    ``context_length`` rows to the model; the result has the id columns, the future
    timestamps and one column per model channel, ``prediction_length`` rows per series.
    Columns other than the model's channels are ignored when every channel is named.
    ``raw``: the frame is in raw units (scaled with the package's scaler and back).
    ``inputs``: the package's other inputs (``freq_token``, ``future_exogenous``) batched,
    one per series in the order the ids first appear, as ``Engine.predict`` takes a batch.
    """
    pd = require("pandas", extra="pandas", purpose="forecast_frame")
    ids = [id_columns] if isinstance(id_columns, str) else list(id_columns)
    absent = [c for c in ids if c not in frame.columns]
    if absent:
        raise DataError(f"id column(s) {absent} are not in the frame's {list(frame.columns)}")
    stamp = timestamp_column or _frame_timestamp_column(frame)
    values = _frame_value_columns(frame, [stamp, *ids], engine.channel_names)
    groups = list(frame.groupby(ids, sort=False)) if ids else [((), frame)]
    windows, labels = [], []
    for key, group in groups:
        series = Series(
            group[values].to_numpy(dtype=np.float64),
            values,
            _frame_timestamps(pd, group[stamp]) if stamp else None,
            stamp or "timestamp",
        )
        window, _ = series.window_for(engine.context_length, engine.channel_names)
        windows.append(window)
        labels.append((key if isinstance(key, tuple) else (key,), series))
    batch = np.stack(windows).astype(np.float32)
    if raw and engine.package.series_scalers is not None:  # one scaler per series id
        series_ids = [dict(zip(ids, key, strict=True)) for key, _ in labels]
        forecasts = engine.forecast(batch, series_id=series_ids, **inputs)
    else:
        forecasts = engine.forecast(batch, **inputs) if raw else engine.predict(batch, **inputs)
    parts = []
    for (key, series), forecast in zip(labels, forecasts, strict=True):
        table = ForecastTable.after(series, forecast, engine.forecast_channel_names)
        part = pd.DataFrame(table.values, columns=table.columns)
        if table.timestamps is not None:
            part.insert(0, table.timestamp_name, table.timestamps)
        for name, value in reversed(list(zip(ids, key, strict=True))):
            part.insert(0, name, value)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _frame_value_columns(
    frame: pd.DataFrame, skip: Sequence[str | None], channel_names: Sequence[str]
) -> list[str]:
    """The frame's model channels by name when it names them all (others ignored), else
    every column but the time and ids, which must then all be numbers."""
    import pandas as pd

    rest = [str(c) for c in frame.columns if c not in skip]
    by_key = {name_key(c): c for c in rest}
    if all(name_key(n) in by_key for n in channel_names):
        return [by_key[name_key(n)] for n in channel_names]
    text = [c for c in rest if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DataError(
            f"the frame's columns {text} are not numbers and it does not name every model "
            f"channel {list(channel_names)}; name the channels (other columns are then "
            "ignored) or drop those columns"
        )
    return rest


def _frame_timestamps(pd: Any, column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy()
    return pd.to_datetime(column).to_numpy()


def _frame_timestamp_column(frame: pd.DataFrame) -> str | None:
    import pandas as pd

    for column in frame.columns:
        if name_key(str(column)) in TIME_COLUMN_NAMES or pd.api.types.is_datetime64_any_dtype(
            frame[column]
        ):
            return str(column)
    return None
