"""Forecast every window of many series, in bounded chunks, and write the forecasts as they come.

    spec = BatchSpec("models/default", Columns("series_id", "date", channels))
    stats = forecast_local("series.parquet", "forecasts.parquet", spec)

Each series gives a window ending at every ``stride``-th row from its ``context``-th on; the
windows are cut from the series' rows ``batch_size`` at a time (a chunk at a time in memory:
a window repeats ``context`` rows, so all of them at once would not fit), forecast by one
``Engine`` and written at once. The output is long, one row per window and horizon step:

    <id column>, origin (the window's last timestamp, or its last row's index),
    <timestamp column> (the forecast's time: origin + step x the series' usual interval),
    step (1..horizon), then one column per channel

``forecast_series`` is the one function the local path and each Ray Data worker run, on the
same chunks, so both give the very same forecasts (``ray_data.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._csv import time_column
from ..errors import ConfigError, DataError
from ..runtime.series import future_timestamps
from .source import (
    Columns,
    as_times,
    empty_ids,
    is_text,
    pyarrow,
    read_input,
    resolve_columns,
    series_values,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime.engine import Engine

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".parquet", ".csv")
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class BatchSpec:
    """What to forecast and how: the same for the local path and every Ray worker."""

    model_dir: str
    columns: Columns
    stride: int = 1
    batch_size: int = 256
    raw: bool = False

    def __post_init__(self) -> None:
        if self.stride < 1 or self.batch_size < 1:
            raise ConfigError(
                f"stride and batch size must be >= 1, got {self.stride} and {self.batch_size}"
            )


@dataclass
class BatchStats:
    series: int = 0
    windows: int = 0
    skipped: int = 0  # series shorter than the context
    seconds: float = 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0


def detect_columns(
    names: list[str], id_column: str, timestamp_column: str | None, channels: list[str]
) -> Columns:
    """The columns to use, by their names in the input (``resolve_columns``): the timestamp
    one named, or found by its name as every ovcast reader finds it (``_csv.time_column``;
    by name only: a table's first column is often its series id)."""
    if timestamp_column is None:
        found = time_column(names, ())
        timestamp_column = None if found is None else names[found]
    return resolve_columns(names, id_column, timestamp_column, channels)


def series_of(table: Any, columns: Columns) -> Iterator[tuple[Any, Any]]:
    """(id, that series' rows) for each series, by id; rows in time order (as they were
    given when there is no timestamp column)."""
    pyarrow()
    import pyarrow.compute as pc

    keys = [(columns.id, "ascending")]
    if columns.timestamp:
        keys.append((columns.timestamp, "ascending"))
    table = table.take(pc.sort_indices(table, sort_keys=keys))  # stable: ties keep input order
    ids = table.column(columns.id)
    empty = ids.null_count
    if is_text(ids.type):
        empty += pc.sum(pc.equal(pc.utf8_trim_whitespace(ids), "")).as_py() or 0
    if empty:
        raise empty_ids(columns.id, empty)
    values = ids.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield values[start], table.slice(start, end - start)


def forecast_series(engine: Engine, spec: BatchSpec, series_id: Any, rows: Any) -> Iterator[Any]:
    """Arrow tables of one series' forecasts, ``spec.batch_size`` windows at a time; its
    rows are put in time order first (they may come in any)."""
    pa = pyarrow()
    columns = spec.columns
    if series_id is None or (isinstance(series_id, str) and not series_id.strip()):
        raise empty_ids(columns.id)
    where = f"series {series_id!r}"
    times = offsets = None
    if columns.timestamp:
        stamps = as_times(rows.column(columns.timestamp), where)
        times = stamps.to_numpy(zero_copy_only=False)
        if len(times) > 1 and not (times[1:] > times[:-1]).all():
            order = np.argsort(times, kind="stable")
            rows, times = rows.take(pa.array(order)), times[order]
            same = np.flatnonzero(times[1:] == times[:-1])
            if len(same):
                raise DataError(
                    f"{where}: timestamp {times[same[0]]} repeats; one row per series and time step"
                )
    values = series_values(rows, columns, where=where)
    context, horizon = engine.context_length, engine.prediction_length
    ends = np.arange(context - 1, len(values), spec.stride)
    if len(ends) == 0:
        return
    if times is not None:
        future = future_timestamps(times, horizon)
        offsets = None if future is None else future - times[-1]
    windows = np.lib.stride_tricks.sliding_window_view(values, context, axis=0)  # no copy
    steps = np.arange(1, horizon + 1, dtype=np.int32)
    for first in range(0, len(ends), spec.batch_size):
        chunk = ends[first : first + spec.batch_size]
        batch = np.ascontiguousarray(windows[chunk - context + 1].transpose(0, 2, 1))
        forecast = engine.forecast(batch) if spec.raw else engine.predict(batch)
        n = len(chunk)
        origin = times[chunk] if times is not None else chunk.astype(np.int64)
        data: dict[str, Any] = {
            columns.id: pa.array(np.repeat(np.asarray([series_id] * n), horizon)),
            "origin": np.repeat(origin, horizon),
        }
        if offsets is not None and columns.timestamp:
            data[columns.timestamp] = (origin[:, None] + offsets[None, :]).reshape(-1)
        data["step"] = np.tile(steps, n)
        for c, name in enumerate(engine.channel_names):
            data[name] = forecast[:, :, c].reshape(-1)
        yield pa.table(data)


class TableWriter:
    """Arrow tables appended to one .parquet or .csv file as they come: into a temporary
    file beside it, renamed to ``path`` by ``commit()``. An interrupted or failed run leaves
    no partial file under the final name, and an earlier ``path`` as it was.

        with TableWriter(out) as writer:
            writer.write(table) ...
            writer.commit()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(
                f"--out {self.path.name}: expected a {' or '.join(OUTPUT_SUFFIXES)} file"
            )
        self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self._writer: Any = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.abort()

    def write(self, table: Any) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.suffix.lower() == ".parquet":
                from pyarrow import parquet

                self._writer = parquet.ParquetWriter(self.partial, table.schema)
            else:
                from pyarrow import csv

                self._writer = csv.CSVWriter(self.partial, table.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> None:
        """Close the file and put it under its name (atomically, on the same file system)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop what was written (nothing once committed)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
                self.partial.unlink(missing_ok=True)


def no_windows(stats: BatchStats, context: int) -> DataError:
    """Every series is shorter than the context: an error, not an empty file (nothing to
    backtest is almost always the wrong input or the wrong model)."""
    every = f"all {stats.series}" if stats.series else "every one"
    return DataError(
        f"no series has a full window: {every} have fewer than {context} rows, the model's "
        "context; nothing was written"
    )


class Progress:
    """A line on stderr every few seconds: windows done, and how fast."""

    def __init__(self, what: str) -> None:
        self.what, self.started = what, time.perf_counter()
        self.windows = 0
        self._next = self.started + PROGRESS_EVERY_S

    def add(self, windows: int) -> None:
        self.windows += windows
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY_S
            rate = self.windows / (now - self.started)
            log.info("%s: %d windows forecast (%.0f/s)", self.what, self.windows, rate)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def forecast_local(
    source: str | Path, out: str | Path, spec: BatchSpec, *, engine: Engine | None = None
) -> BatchStats:
    """Forecast every window of ``source`` in this process with one engine; write ``out``."""
    from ..runtime.engine import Engine

    engine = engine or Engine(spec.model_dir)
    table = read_input(source, spec.columns)
    stats, progress = BatchStats(), Progress("forecast-batch")
    with TableWriter(out) as writer:
        for series_id, rows in series_of(table, spec.columns):
            stats.series += 1
            if rows.num_rows < engine.context_length:
                stats.skipped += 1
                continue
            for part in forecast_series(engine, spec, series_id, rows):
                writer.write(part)
                progress.add(part.num_rows // engine.prediction_length)
        if progress.windows == 0:
            raise no_windows(stats, engine.context_length)
        writer.commit()
    stats.windows, stats.seconds = progress.windows, progress.seconds
    return stats
