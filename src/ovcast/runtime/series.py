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
repeated time is refused, naming the line). Only the columns used must hold numbers: a text
column the model does not take is ignored. Times written with a zone keep it in the output;
a window whose times are unevenly spaced is warned about (the model reads rows as steps).

``forecast_frame`` reads a pandas DataFrame into the same ``Series`` by the same rules (a
DatetimeIndex counts as the time column; rows are named by index label instead of line), so
``Engine.forecast_frame`` and ``ovcast predict`` accept and refuse alike. Nothing here needs
pandas except that function. A forecast with NaN or inf is refused, never written.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .._csv import (
    TIME_COLUMN_NAMES,
    Problems,
    Table,
    is_number,
    is_time,
    iso_time,
    name_key,
    read_table,
    refuse_unordered,
    time_column,
)
from ..errors import ConfigError, DataError, InvalidInputError, ModelOutputError, require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .engine import Engine

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".csv", ".json", ".npy", ".parquet")
RECENT_STEPS = 24  # the future's step is the most common of the last this many intervals
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Series:
    """Values over time: ``values`` (time, channels) or a batch (n, time, channels)."""

    values: np.ndarray
    columns: list[str] | None = None  # names of the value columns, from a header
    timestamps: np.ndarray | None = None  # (time,) datetime64 (UTC) or numbers, ascending
    timestamp_name: str = "timestamp"
    zone: dt.tzinfo | None = None  # the zone the times were written in; the output keeps it
    # columns that are not numbers, with what is wrong: an error only if the model takes them
    unreadable: dict[str, Problems] = field(default_factory=dict)

    def window_for(
        self, context_length: int, channel_names: Sequence[str]
    ) -> tuple[np.ndarray, list[str]]:
        """The model's window(s) from this series, and what was done to get them.

        Channels are taken by name when the header holds every model channel (trimmed and
        ignoring case; any order, extra columns ignored), else by position when the count
        matches (a warning when the header names other columns). A series longer than the
        context gives its last ``context_length`` rows. Only the columns taken must be numbers.
        """
        notes: list[str] = []
        expected = f"[{context_length}, {len(channel_names)}]"
        if self.values.ndim not in (2, 3):
            raise InvalidInputError(
                f"the input has shape {list(self.values.shape)}; expected {expected} "
                f"or [batch, {context_length}, {len(channel_names)}]"
            )
        values, used = self._channels(list(channel_names), notes)
        self._refuse_unreadable(used)
        rows = values.shape[-2]
        if rows > context_length:  # a batch too: each window's last rows
            notes.append(f"using the last {context_length} of {rows} rows")
            values = values[..., -context_length:, :]
        elif rows != context_length:
            raise InvalidInputError(
                f"the input has {rows} rows; the model needs {context_length}, expected "
                f"{expected} (a longer series is cut to its last {context_length} rows)"
            )
        if self.timestamps is not None and values.ndim == 2:
            _warn_uneven(self.timestamps[-values.shape[0] :], self.zone)
        return values, notes

    def numbers(self) -> np.ndarray:
        """Every value column, all of which must be numbers (for readers that take them all)."""
        self._refuse_unreadable(list(self.unreadable))
        return self.values

    def _refuse_unreadable(self, columns: Sequence[str]) -> None:
        """One error listing what is wrong in ``columns`` that are not numbers, if any."""
        bad = [problem for c in columns if (p := self.unreadable.get(c)) for problem in p.found]
        if bad:
            Problems(next(iter(self.unreadable.values())).path, bad).raise_if_any()

    def _channels(self, names: list[str], notes: list[str]) -> tuple[np.ndarray, list[str]]:
        width = self.values.shape[-1]
        keys, wanted = [name_key(c) for c in self.columns or []], [name_key(n) for n in names]
        if keys and set(wanted) <= set(keys) and keys != wanted:
            picked = [keys.index(k) for k in wanted]
            extra = [c for c, k in zip(self.columns or [], keys, strict=True) if k not in wanted]
            notes.append(
                "channels taken by name"
                + (f"; ignored column(s) {extra}" if extra else "; reordered to the model's order")
            )
            return self.values[..., picked], [(self.columns or [])[i] for i in picked]
        if width == len(names):
            if keys and keys != wanted:
                log.warning(
                    "the input's columns %s are not the model's channels %s: taken in order, "
                    "by position; name the columns as the model does to match them by name",
                    self.columns,
                    names,
                )
            return self.values, list(self.columns or [])
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
    zone: dt.tzinfo | None = None  # written in the input's zone when it had one

    @classmethod
    def after(cls, series: Series, forecast: np.ndarray, columns: Sequence[str]) -> ForecastTable:
        """Label ``forecast`` as the continuation of ``series``."""
        steps = forecast.shape[-2]
        future = None
        if series.timestamps is not None and forecast.ndim == 2:
            future = future_timestamps(series.timestamps, steps)
        return cls(forecast, list(columns), future, series.timestamp_name, series.zone)

    def select(self, channels: Sequence[str]) -> ForecastTable:
        """Only ``channels`` (names or indices as text), in that order."""
        picked = [_channel_index(c, self.columns) for c in channels]
        return ForecastTable(
            self.values[..., picked],
            [self.columns[i] for i in picked],
            self.timestamps,
            self.timestamp_name,
            self.zone,
        )

    def timestamp_strings(self) -> list[Any] | None:
        if self.timestamps is None:
            return None
        if not np.issubdtype(self.timestamps.dtype, np.datetime64):
            return self.timestamps.tolist()
        if self.zone is None:
            return [str(t).replace("T", " ") for t in self.timestamps]
        return [_zoned(t, self.zone).isoformat(sep=" ") for t in self.timestamps]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.columns}
        stamps = self.timestamp_strings()
        if stamps is not None:
            out[self.timestamp_name] = stamps
        out["predictions"] = np.ascontiguousarray(self.values)
        return out


def _zoned(stamp: np.datetime64, zone: dt.tzinfo) -> dt.datetime:
    micros = int(stamp.astype("datetime64[us]").astype(np.int64))
    return (_EPOCH + dt.timedelta(microseconds=micros)).astimezone(zone)


def recent_step(timestamps: np.ndarray) -> Any:
    """The series' interval now: the most common of its last ``RECENT_STEPS`` (None if none),
    so a series that went from 2-hourly to hourly steps on hourly."""
    if len(timestamps) < 2:
        return None
    deltas = np.diff(timestamps[-(RECENT_STEPS + 1) :])
    values, counts = np.unique(deltas, return_counts=True)
    step = values[np.argmax(counts)]
    return step if step > np.zeros_like(step) else None


def future_timestamps(timestamps: np.ndarray, steps: int) -> np.ndarray | None:
    """``steps`` timestamps after the last one, at the series' recent interval (None if none)."""
    step = recent_step(timestamps)
    if step is None:
        return None
    return timestamps[-1] + step * np.arange(1, steps + 1)


def _warn_uneven(stamps: np.ndarray, zone: dt.tzinfo | None) -> None:
    """Warn when the window's rows are not evenly spaced: the model reads them as steps."""
    step = recent_step(stamps)
    if step is None:
        return
    deltas = np.diff(stamps)
    same = deltas == step if deltas.dtype.kind == "m" else np.isclose(deltas, step, rtol=1e-9)
    uneven = np.flatnonzero(~same)
    if not len(uneven):
        return
    widest = uneven[np.argmax(deltas[uneven])]
    table = ForecastTable(np.zeros((2, 0)), [], stamps[widest : widest + 2], zone=zone)
    after, to = table.timestamp_strings() or ["?", "?"]
    log.warning(
        "the window's times are not evenly spaced: %d of its %d intervals differ from the "
        "usual step %s (the widest runs from %s to %s); the model reads its rows as evenly "
        "spaced steps, so fill or drop the gap for a forecast you can trust",
        len(uneven),
        len(deltas),
        _duration(step),
        after,
        to,
    )


def _duration(step: Any) -> str:
    if isinstance(step, np.timedelta64):
        return str(dt.timedelta(microseconds=int(step.astype("timedelta64[us]").astype(np.int64))))
    return str(step)


def require_finite(
    forecast: np.ndarray, channels: Sequence[str], window: np.ndarray, inputs: Sequence[str]
) -> None:
    """Refuse a forecast with NaN or inf (as the servers answer model_output_not_finite),
    naming its channels and the input's largest value, the likely cause."""
    bad = ~np.isfinite(forecast)
    if not bad.any():
        return
    columns = np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(axis=0)).tolist()
    names = [channels[i] for i in columns]
    magnitude = np.abs(window.reshape(-1, window.shape[-1]).astype(np.float64))
    column = int(np.unravel_index(np.argmax(magnitude), magnitude.shape)[1])
    raise ModelOutputError(
        f"the forecast of channel(s) {names} is not finite (NaN or inf); the input's largest "
        f"value is {magnitude.max():.4g} in {inputs[column]!r}: the input is likely far outside "
        "the range the model was trained on (check its scale, or --raw); refused rather than "
        "written as NaN or null"
    )


def _channel_index(channel: str, columns: Sequence[str]) -> int:
    keys = [name_key(c) for c in columns]  # matched as headers are: 'ot' finds 'OT'
    if name_key(channel) in keys:
        return keys.index(name_key(channel))
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
    """A series from .csv (header and timestamp column optional), .npy, .json or .parquet.

    JSON holds nested lists, ``{"past_values": ...}`` (or ``"instances"``), or a table as
    pandas writes one (``orient="records"``: a list of objects; ``orient="columns"``: an
    object of columns); .npy an array. A table (CSV, JSON records, Parquet) is read by one
    set of rules: its time column is found as training finds it (``_csv.time_column``) and
    its times must increase.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return Series(np.load(path, allow_pickle=False))
        if suffix == ".parquet":
            return _series_from_table(_parquet_table(path))
        if suffix == ".json":
            data = orjson.loads(path.read_bytes())
            table = _json_table(path, data)
            if table is not None:
                return _series_from_table(table)
            if isinstance(data, dict):
                field_name = next((k for k in ("past_values", "instances") if k in data), None)
                if field_name is None:
                    raise DataError(
                        f"{path}: a JSON object needs a 'past_values' field, or is a table of "
                        'columns as pandas writes one (df.to_json(orient="columns"))'
                    )
                data = data[field_name]
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
    raise DataError(f"unsupported input file {path.name}; expected .npy, .json, .csv or .parquet")


def _read_csv(path: Path) -> Series:
    table = read_table(path, expected="a row per time step, a column per channel", header=None)
    header = table.header or None
    width = len(header) if header else len(table.rows[0])
    for row, line in zip(table.rows, table.lines, strict=True):
        if len(row) != width:
            raise DataError(f"{path} line {line} has {len(row)} fields; expected {width}")
    return _series_from_table(table)


def _cell(value: Any) -> str:
    """A JSON or Parquet value as the CSV cell that says the same."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _json_table(path: Path, data: Any) -> Table | None:
    """A table as pandas writes JSON: records (a list of objects) or columns (an object of
    columns, each keyed by row or a list); None for the other JSON forms."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        header = list(data[0])
        rows = [[_cell(record.get(name)) for name in header] for record in data]
    elif (
        isinstance(data, dict)
        and data
        and not {"past_values", "instances"} & set(data)
        and all(isinstance(c, dict | list) for c in data.values())
    ):  # columns keyed by row (orient="columns") or as lists (df.to_dict("list"))
        header = list(data)
        columns = [c if isinstance(c, dict) else dict(enumerate(c)) for c in data.values()]
        rows = [[_cell(c.get(key)) for c in columns] for key in columns[0]]
    else:
        return None
    if not rows:
        raise DataError(f"{path} has no rows; expected a record per time step")
    lines = list(range(1, len(rows) + 1))
    return Table(path, [str(h) for h in header], rows, lines, row_word="record")


def _parquet_table(path: Path) -> Table:
    pq = require("pyarrow.parquet", extra="parquet", purpose="reading Parquet")
    try:
        columns = pq.read_table(path).to_pydict()
    except Exception as exc:  # pyarrow's errors have no common base but Exception
        raise DataError(f"cannot read {path} as Parquet: {exc}") from exc
    header = [str(name) for name in columns]
    rows = [list(map(_cell, row)) for row in zip(*columns.values(), strict=True)]
    if not rows:
        raise DataError(f"{path} has no rows; expected a row per time step")
    return Table(path, header, rows, list(range(1, len(rows) + 1)), row_word="row")


def _series_from_table(table: Table) -> Series:
    """A table's channels and times, by the rules every reader shares."""
    header = table.header or None
    width = len(header) if header else len(table.rows[0])
    if not header:  # name the columns by number, for messages that name a column
        table.header = [str(i + 1) for i in range(width)]
    stamp = time_column(header or [], table.rows[0])
    keep = [name for i, name in enumerate(table.header) if i != stamp]
    series = Series(np.empty((len(table.rows), len(keep))), keep if header else None)
    for k, name in enumerate(keep):  # a column of text is an error only if it is used
        problems = Problems(table.path)
        series.values[:, k] = table.numbers([name], problems=problems)[:, 0]
        if problems.found:
            series.unreadable[name] = problems
    if stamp is not None:
        series.timestamps = _timestamps(table, table.header[stamp])
        series.timestamp_name = header[stamp] if header else "timestamp"
        last = table.rows[-1][stamp].strip()
        if series.timestamps is not None and not is_number(last):
            series.zone = iso_time(last).tzinfo
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
    """Write .csv (header: timestamp or step, channels), .json, .npy or .parquet; a file that
    cannot be written (no such folder, disk full) is a ``ConfigError`` naming it."""
    path = Path(path)
    try:
        _write(table, path)
    except OSError as exc:
        if path.is_file():  # no half-written forecast left behind
            path.unlink()
        raise ConfigError(
            f"cannot write the forecast to {path}: {exc.strerror or exc}; expected a writable "
            "file on a disk with room"
        ) from exc


def _write(table: ForecastTable, path: Path) -> None:
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
        stamps: Any = first
        if table.timestamps is not None and table.timestamps.dtype.kind == "M":
            zone = table.zone.utcoffset(None) if table.zone is not None else None
            kind = pa.timestamp("us", tz=_offset_name(zone) if zone is not None else None)
            stamps = pa.array(table.timestamps.astype("datetime64[us]"), type=pa.timestamp("us"))
            stamps = stamps.cast(kind) if zone is not None else stamps
        columns = {names: stamps, **{c: table.values[:, i] for i, c in enumerate(table.columns)}}
        pq.write_table(pa.table(columns), path)
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([names, *table.columns])
        for stamp, row in zip(first, table.values, strict=True):
            writer.writerow([stamp, *(f"{v:.7g}" for v in row)])


def _offset_name(offset: dt.timedelta) -> str:
    """'+02:00' for a UTC offset (the zone name Arrow takes for a fixed offset)."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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

    Each series (one per value of ``id_columns``, or the whole frame) is read as ``ovcast
    predict`` reads a CSV (``frame_series``) and gives its last ``context_length`` rows to the
    model; the result has the id columns, the future timestamps (in the input's zone) and one
    column per model channel, ``prediction_length`` rows per series.
    ``raw``: the frame is in raw units (scaled with the package's scaler and back).
    ``inputs``: the package's other inputs (``freq_token``, ``future_exogenous``) batched,
    one per series in the order the ids first appear, as ``Engine.predict`` takes a batch.
    """
    pd = require("pandas", extra="pandas", purpose="forecast_frame")
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"forecast_frame takes a pandas DataFrame; got {type(frame).__name__}")
    ids = [id_columns] if isinstance(id_columns, str) else list(id_columns)
    if timestamp_column is None and isinstance(frame.index, pd.DatetimeIndex):
        name = str(frame.index.name or "timestamp")  # the index is the time column
        if name not in frame.columns:
            frame = frame.rename_axis(name).reset_index()
    for kind, names in (("id column(s)", ids), ("timestamp_column", [timestamp_column])):
        absent = [c for c in names if c is not None and c not in frame.columns]
        if absent:
            raise DataError(f"{kind} {absent} are not in the frame's {list(frame.columns)}")
    if frame.empty:
        raise DataError("the frame has no rows; expected a row per time step")
    stamp = timestamp_column or _frame_timestamp_column(frame)
    groups = list(frame.groupby(ids, sort=False)) if ids else [((), frame)]
    windows, labels = [], []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        where = f"the frame's series {dict(zip(ids, key, strict=True))}" if ids else "the frame"
        series = frame_series(group, stamp, skip=ids, where=where)
        try:
            window, _ = series.window_for(engine.context_length, engine.channel_names)
        except InvalidInputError as exc:  # name the series the window is wrong for
            raise InvalidInputError(f"{where}: {exc}") from exc
        windows.append(window)
        labels.append((key, series))
    batch = np.stack(windows).astype(np.float32)
    if raw and engine.package.series_scalers is not None:  # one scaler per series id
        series_ids = [dict(zip(ids, key, strict=True)) for key, _ in labels]
        forecasts = engine.forecast(batch, series_id=series_ids, **inputs)
    else:
        forecasts = engine.forecast(batch, **inputs) if raw else engine.predict(batch, **inputs)
    require_finite(forecasts, engine.forecast_channel_names, batch, engine.channel_names)
    parts = []
    for (key, series), forecast in zip(labels, forecasts, strict=True):
        table = ForecastTable.after(series, forecast, engine.forecast_channel_names)
        part = pd.DataFrame(table.values, columns=table.columns)
        if table.timestamps is not None:
            part.insert(0, table.timestamp_name, _frame_stamps(pd, table))
        for name, value in reversed(list(zip(ids, key, strict=True))):
            part.insert(0, name, value)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def frame_series(
    frame: pd.DataFrame, stamp: str | None, *, skip: Sequence[str] = (), where: str = "the frame"
) -> Series:
    """One series of a DataFrame as ``read_series`` reads a CSV: every column but ``stamp``
    and ``skip`` a candidate channel (non-numbers and NaN are errors only if the model takes
    that column), times increasing strictly (rows named by index label), tz-aware times kept
    as UTC with their zone."""
    import pandas as pd

    labels = frame.index.tolist()
    columns = [c for c in frame.columns if c != stamp and c not in skip]
    series = Series(np.empty((len(frame), len(columns))), [str(c) for c in columns])
    for k, column in enumerate(columns):
        name, problems = str(column), Problems(where)
        cells = frame[column]
        if not pd.api.types.is_numeric_dtype(cells):
            try:
                cells = pd.to_numeric(cells)
            except (ValueError, TypeError):
                text = next((v for v in cells if not is_number(str(v))), cells.iloc[0])
                problems.add(0, f"column {name!r} holds {text!r}, not a number")
                cells = pd.Series(np.nan, index=frame.index)
        values = cells.to_numpy(dtype=np.float64, na_value=np.nan)
        if not problems.found:  # NaN or inf: refused as a CSV's empty or 'inf' cell is
            for r in np.flatnonzero(~np.isfinite(values)).tolist():
                problems.add(r, f"row {labels[r]}, column {name!r}: {values[r]} is not finite")
        series.values[:, k] = values
        if problems.found:
            series.unreadable[name] = problems
    if stamp is not None:
        series.timestamps, series.zone = _frame_times(pd, frame[stamp], where)
        series.timestamp_name = str(stamp)
    return series


def _frame_times(pd: Any, column: pd.Series, where: str) -> tuple[np.ndarray, dt.tzinfo | None]:
    """A time column's values (epoch numbers as given, else datetime64 in UTC), its zone, and
    the ordering rule every reader applies."""
    problems, labels = Problems(where), column.index.tolist()
    zone = None
    if pd.api.types.is_numeric_dtype(column):
        stamps = column.to_numpy()
        seconds = stamps.astype(np.float64)
    else:
        try:
            times = pd.to_datetime(column)
            if not pd.api.types.is_datetime64_any_dtype(times):  # mixed offsets
                times = pd.to_datetime(column, utc=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(
                f"{where}: the time column {column.name!r} does not read as times ({exc}); "
                "expected datetimes, ISO 8601 text or epoch numbers"
            ) from exc
        zone = times.dt.tz
        if zone is not None:
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        stamps = times.to_numpy()
        seconds = stamps.astype("datetime64[us]").astype(np.int64) / 1e6
        seconds[times.isna().to_numpy()] = np.nan
    for r in np.flatnonzero(np.isnan(seconds))[:5]:
        problems.add(int(r), f"row {labels[r]} has no time")
    problems.raise_if_any(f"every row needs a time in {column.name!r}")
    refuse_unordered(
        seconds,
        lambda r: f"row {labels[r]} ({column.iloc[r]})",
        problems,
        "sort the frame (frame.sort_values)",
    )
    return stamps, zone


def _frame_stamps(pd: Any, table: ForecastTable) -> Any:
    """The forecast's timestamps as the frame had them: tz-aware in the input's zone."""
    stamps = table.timestamps
    if table.zone is None or stamps is None or not np.issubdtype(stamps.dtype, np.datetime64):
        return stamps
    return pd.DatetimeIndex(table.timestamps).tz_localize("UTC").tz_convert(table.zone)


def _frame_timestamp_column(frame: pd.DataFrame) -> str | None:
    import pandas as pd

    for column in frame.columns:
        if name_key(str(column)) in TIME_COLUMN_NAMES or pd.api.types.is_datetime64_any_dtype(
            frame[column]
        ):
            return str(column)
    return None
