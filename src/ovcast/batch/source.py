"""Batch forecasting input: a table of many series (CSV, Parquet) or a market recording.

A table has one row per series and time step: a series id column, an optional timestamp
column and the model's channels by name (other columns are ignored); header names are
matched as every ovcast reader matches them (trimmed, any case: ``_csv.name_key``). Rows
may come in any order: a series' rows are put in time order (in file order without a
timestamp column). A recording (``.db``) gives
one series per product: its bars' 7 market channels (close ... volatility, in the model's
channel order as the live pipeline feeds them) from the bar where every indicator is defined
on, timestamped by bar start.

Everything is read as an Arrow table, the format Ray Data moves between workers too, so the
local path and the Ray path see the very same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import name_key, repeated
from ..errors import DataError, require

TABLE_SUFFIXES = (".csv", ".parquet")
RECORDING_SUFFIXES = (".db", ".sqlite")


@dataclass(frozen=True)
class Columns:
    """Which input columns are what."""

    id: str
    timestamp: str | None
    channels: tuple[str, ...]


def pyarrow() -> Any:
    return require("pyarrow", extra="parquet", purpose="batch forecasting")


def column_names(path: str | Path) -> list[str]:
    """The input's column names (from the header or schema; no rows are read); none for a
    recording, whose columns ovcast names."""
    path = Path(path)
    if path.suffix.lower() in RECORDING_SUFFIXES:
        return []
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if path.suffix.lower() == ".csv":
        import csv

        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                return next(csv.reader(f), [])
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8 CSV") from None
    if path.suffix.lower() != ".parquet" and not path.is_dir():
        raise DataError(
            f"unsupported input {path.name}; expected {', '.join(TABLE_SUFFIXES)}, a folder "
            f"of Parquet files, or a recording ({', '.join(RECORDING_SUFFIXES)})"
        )
    pa = pyarrow()
    from pyarrow import dataset

    try:
        return list(dataset.dataset(path, format="parquet").schema.names)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} as Parquet: {exc}") from None


def resolve_columns(
    names: list[str], id_column: str, timestamp_column: str | None, channels: list[str]
) -> Columns:
    """The columns asked for, by their names in the file (matched by ``name_key``); a name
    the header holds twice, or one column asked for twice, is refused. ``names`` empty (a
    recording): as asked."""
    wanted = [id_column, *([timestamp_column] if timestamp_column else []), *channels]
    twice = repeated(wanted)
    if twice:
        raise DataError(
            f"column(s) {twice} asked for in two roles: the series id (--id-column), the "
            f"timestamp (--timestamp-column) and the model's channels {channels} must differ"
        )
    if not names:
        return Columns(id_column, timestamp_column, tuple(channels))
    ambiguous = [n for n in repeated(names) if name_key(n) in {name_key(w) for w in wanted}]
    if ambiguous:
        raise DataError(f"the header names {ambiguous} more than once (names ignore case)")
    by_key = {name_key(n): n for n in names}

    def actual(name: str) -> str:
        return by_key.get(name_key(name), name)  # a missing one: select_columns says so

    return Columns(
        actual(id_column),
        actual(timestamp_column) if timestamp_column else None,
        tuple(actual(c) for c in channels),
    )


def read_input(path: str | Path, columns: Columns) -> Any:
    """The input as an Arrow table of the id, timestamp and channel columns (checked)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in RECORDING_SUFFIXES:
        return recording_table(path, columns)
    pa = pyarrow()
    try:
        if suffix == ".csv":
            from pyarrow import csv

            table = csv.read_csv(path)
        elif suffix == ".parquet" or path.is_dir():
            from pyarrow import parquet

            table = parquet.read_table(path)
        else:
            raise DataError(
                f"unsupported input {path.name}; expected {', '.join(TABLE_SUFFIXES)}, a folder "
                f"of Parquet files, or a recording ({', '.join(RECORDING_SUFFIXES)})"
            )
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    table = select_columns(table, columns, where=str(path))
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows; expected one row per series and time step")
    if pa.types.is_dictionary(table.schema.field(columns.id).type):  # categorical ids
        ids = table.column(columns.id)
        table = table.set_column(0, columns.id, ids.cast(ids.type.value_type))
    if columns.timestamp:  # in time order, not text order, when sorted
        i = table.column_names.index(columns.timestamp)
        table = table.set_column(i, columns.timestamp, as_times(table.column(i), str(path)))
    return table


def as_times(column: Any, where: str) -> Any:
    """A timestamp column as Arrow times or numbers; text is parsed (ISO 8601), and a cell
    that is no time, or empty, is refused naming it."""
    pa = pyarrow()
    if column.null_count:
        raise DataError(
            f"{where}: {column.null_count} empty timestamp(s); every row needs its time"
        )
    if is_text(column.type):
        try:
            return column.cast(pa.timestamp("ns"))
        except pa.ArrowException as exc:
            raise DataError(
                f"{where}: the timestamp column holds text that is not an ISO 8601 time ({exc})"
            ) from None
    if pa.types.is_dictionary(column.type) or not (
        pa.types.is_temporal(column.type)
        or pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
    ):
        raise DataError(f"{where}: the timestamp column is {column.type}; expected times")
    return column


def is_text(data_type: Any) -> bool:
    """An Arrow string column (of either offset width)."""
    pa = pyarrow()
    return bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))


def empty_ids(column: str, count: int | None = None) -> DataError:
    """The one refusal of rows without a series id (an empty cell in CSV, a null in Parquet)."""
    rows = f" ({count} rows)" if count else ""
    return DataError(f"column {column!r} has empty series ids{rows}; every row needs its series")


def select_columns(table: Any, columns: Columns, *, where: str) -> Any:
    """The id, timestamp and channel columns of ``table``; a clear error naming what is missing."""
    wanted = [columns.id, *([columns.timestamp] if columns.timestamp else []), *columns.channels]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where} has no column(s) {missing}; it has {table.column_names}. Expected a series "
            f"id column (--id-column), a timestamp column (--timestamp-column) and the model's "
            f"channels {list(columns.channels)}"
        )
    return table.select(wanted)


def series_values(table: Any, columns: Columns, *, where: str) -> np.ndarray:
    """One series' channels as float32 (rows, channels); cells that are no number, or not
    finite in float32, are refused."""
    pa = pyarrow()
    values = np.empty((table.num_rows, len(columns.channels)), np.float32)
    for c, name in enumerate(columns.channels):
        column = table.column(name)
        try:
            column = column.cast(pa.float64())  # text of numbers (a CSV column) too
        except pa.ArrowException as exc:
            raise DataError(
                f"{where}: column {name!r} is {column.type}, not numbers ({exc})"
            ) from None
        wide = column.to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore", invalid="ignore"):
            values[:, c] = wide
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        name = columns.channels[col]
        value = table.column(name)[int(row)].as_py()
        value = "empty" if value is None else value
        raise DataError(
            f"{where}: row {row} of the series, column {name!r} is {value} (missing, not "
            f"finite, or beyond float32's range, ~3.4e38); fill or drop such rows first"
        )
    return values


def recording_table(path: Path, columns: Columns) -> Any:
    """A recording's products as one table: id, bar start time and the 7 market channels."""
    from ..market.features import CHANNELS, compute_features, warmup_bars
    from ..market.recording import Recording

    if len(columns.channels) != len(CHANNELS):
        raise DataError(
            f"a recording gives the {len(CHANNELS)} market channels {list(CHANNELS)}; the model "
            f"takes {len(columns.channels)} {list(columns.channels)}"
        )
    pa = pyarrow()
    parts = []
    with Recording(path) as recording:
        for product in recording.products():
            bars = recording.read_bars(product)
            if len(bars) == 0:
                continue
            features = compute_features(bars.high, bars.low, bars.close, bars.volume)
            keep = slice(warmup_bars(), None)
            data = {
                columns.id: pa.array([product] * len(bars.time_s[keep]), pa.string()),
                columns.timestamp or "timestamp": pa.array(
                    bars.time_s[keep].astype("datetime64[s]")
                ),
            }
            # By position, as the live pipeline feeds them: close ... volatility.
            data.update({name: features[keep, i] for i, name in enumerate(columns.channels)})
            parts.append(pa.table(data))
    if not parts:
        raise DataError(f"{path} holds no bars; record some with 'ovcast live --record'")
    return pa.concat_tables(parts)
