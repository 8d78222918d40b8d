"""CSV tables for ovcast's readers: cells by column name, and errors that name line and column.

    table = read_table("candles.csv", expected="a header time,open,high,low,close,volume")
    time_s = table.times("time")              # epoch seconds, strictly increasing
    close = table.numbers(["close"])          # finite floats, (rows, 1)

Every check collects all the problems of a file and raises one ``DataError`` that shows the
first few, each as ``line N, column 'name': what is wrong`` (line 1 is the header), so a
user can open the file at the line.

Times are ISO 8601 (``2024-01-01T00:00:00Z``, an offset, or none for UTC) or epoch numbers.
An epoch number's unit is told by its magnitude unless given: below 1e11 seconds (until the
year 5138), below 1e14 milliseconds, below 1e17 microseconds (Binance's kline files since
2025), else nanoseconds.

Header names are matched as people write them: trimmed and case-insensitive (``name_key``),
so a header that names a column twice, even as 'OT' and 'ot', is refused as ambiguous. The
time column is found by one rule (``time_column``) for every reader: training, features and
predict.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

TIME_UNITS = ("auto", "s", "ms", "us", "ns")
# Header names (any case) that mark the time column; "open_time" is Binance's kline header.
TIME_COLUMN_NAMES = ("date", "datetime", "time", "timestamp", "ts", "open_time")
_SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_UNIT_BELOW = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", math.inf))
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_LATEST_S = 9.2e9  # 2261-12: numpy's datetime64[ns] and most tools end here
SHOWN_PROBLEMS = 5


@dataclass
class Problems:
    """What is wrong with one file, collected to be raised once."""

    path: Path | str  # a file, or what else holds the data ("the frame")
    found: list[tuple[int, str]] = field(default_factory=list)  # (sort key, message)

    def add(self, order: int, message: str) -> None:
        self.found.append((order, message))

    def raise_if_any(self, advice: str = "") -> None:
        if not self.found:
            return
        shown = [m for _, m in sorted(self.found, key=lambda p: p[0])[:SHOWN_PROBLEMS]]
        more = len(self.found) - len(shown)
        tail = f"; and {more} more" if more else ""
        advice = f". {advice}" if advice else ""
        raise DataError(f"{self.path}: {'; '.join(shown)}{tail}{advice}")


@dataclass
class Table:
    """The non-empty rows of a CSV file under its header, with each row's line in the file."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line of each row (the header is line 1)
    row_word: str = "line"  # how messages name a row: "line" in a CSV, "record" in JSON

    def column(self, name: str) -> int:
        """The index of column ``name`` (trimmed, any case: see ``name_key``)."""
        keys = [name_key(h) for h in self.header]
        try:
            return keys.index(name_key(name))
        except ValueError:
            raise DataError(f"{self.path} has no column {name!r}; it has {self.header}") from None

    def has(self, name: str) -> bool:
        return name_key(name) in {name_key(h) for h in self.header}

    def header_is_data(self) -> bool:
        """True when the header line holds numbers where names belong: the file has none."""
        return is_data_row(self.header)

    def cells(self, column: str) -> list[str]:
        """The trimmed cells of ``column`` (missing cells are empty)."""
        i = self.column(column)
        return [row[i].strip() if i < len(row) else "" for row in self.rows]

    def numbers(self, columns: Sequence[str], *, problems: Problems | None = None) -> np.ndarray:
        """The cells of ``columns`` as finite floats (rows, columns). A bad cell is NaN and a
        problem naming it: raised at once, or added to ``problems`` for the caller to raise."""
        index = [self.column(c) for c in columns]
        out = np.empty((len(self.rows), len(index)))
        found = problems or Problems(self.path)
        for r, row in enumerate(self.rows):
            for k, (name, i) in enumerate(zip(columns, index, strict=True)):
                value, problem = _number(row, i)
                if problem:
                    found.add(r, f"{self.row_word} {self.lines[r]}, column {name!r}: {problem}")
                out[r, k] = value
        if problems is None:
            found.raise_if_any()
        return out

    def times(self, column: str, unit: str = "auto") -> np.ndarray:
        """Epoch seconds (float64) of a time column; they must increase strictly."""
        if unit not in TIME_UNITS:
            raise DataError(f"time unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
        cells = self.cells(column)
        problems = Problems(self.path)
        parsed = [self._time(r, cell, unit, problems) for r, cell in enumerate(cells)]
        units = [(r, used) for r, (_, used) in enumerate(parsed) if used]
        for r, used in units:  # one unit per file: a guess that changes midway is an error
            if used != units[0][1]:
                problems.add(
                    r,
                    f"{self.row_word} {self.lines[r]}: {cells[r]} reads as {_UNIT_NAMES[used]} but {self.row_word} "
                    f"{self.lines[units[0][0]]}'s {cells[units[0][0]]} as {_UNIT_NAMES[units[0][1]]}",
                )
        problems.raise_if_any(
            f"The time column is {self.header[self.column(column)]!r}: pass --time-unit if an "
            "epoch unit was guessed wrong, or name the time column with --timestamp-column"
        )
        seconds = np.array([s for s, _ in parsed])
        refuse_unordered(
            seconds,
            lambda r: f"{self.row_word} {self.lines[r]} ({cells[r]})",
            problems,
            "sort the file",
        )
        return seconds

    def _time(self, r: int, cell: str, unit: str, problems: Problems) -> tuple[float, str | None]:
        try:
            return time_seconds(cell, unit)
        except DataError as exc:
            problems.add(r, f"{self.row_word} {self.lines[r]}: {exc}")
            return math.nan, None


def refuse_unordered(
    seconds: np.ndarray, row: Callable[[int], str], problems: Problems, sort: str
) -> None:
    """The one ordering rule of every reader (files and frames): times increase strictly.
    ``row(i)`` names row i for the message; ``sort`` says how to sort ("sort the file")."""
    for r in (np.flatnonzero(np.diff(seconds) <= 0) + 1).tolist():
        relation = "repeats the time of" if seconds[r] == seconds[r - 1] else "is earlier than"
        problems.add(r, f"{row(r)} {relation} {row(r - 1)}")
    problems.raise_if_any(f"Times must increase from row to row: {sort}, drop repeats")


def read_table(path: str | Path, *, expected: str, header: bool | None = True) -> Table:
    """A CSV file's header and non-empty rows; ``expected`` says what a good file holds.

    ``header``: True, the first line is the header; None, it is one unless it reads as data
    (numbers, perhaps after a time cell), and a file without one gets an empty header.
    Refused: another delimiter than the comma, and a header naming a column twice.
    """
    path = Path(path)
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc}); expected {expected}") from exc
    if not rows:
        raise DataError(f"{path} has no data rows; expected {expected}")
    _refuse_other_delimiters(path, rows[0], expected)
    if header is None and is_data_row(rows[0]):
        return Table(path, [], rows, lines)
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; expected {expected}")
    names = [h.strip() for h in rows[0]]
    _refuse_repeated_names(path, names)
    return Table(path, names, rows[1:], lines[1:])


def name_key(name: str) -> str:
    """How a header name is matched: trimmed and case-insensitive ('OT' finds ' ot ')."""
    return name.strip().casefold()


def repeated(names: Sequence[str]) -> list[str]:
    """The names given more than once, matched as header names are (``name_key``)."""
    keys = [name_key(n) for n in names]
    return sorted({n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1})


def time_column(header: Sequence[str], first_row: Sequence[str]) -> int | None:
    """The time column, by the one rule every reader shares: the first column named like a
    time (``TIME_COLUMN_NAMES``, any case), else the first column when its first cell is not
    a number (a date), else none."""
    for i, name in enumerate(header):
        if name_key(name) in TIME_COLUMN_NAMES:
            return i
    if first_row and not is_number(first_row[0]):
        return 0
    return None


def is_data_row(row: Sequence[str]) -> bool:
    """A line of numbers (its first cell may be a time): data, not a header."""
    return bool(row) and is_number(row[-1]) and all(is_number(v) for v in row[1:])


def _refuse_other_delimiters(path: Path, first: list[str], expected: str) -> None:
    if len(first) == 1 and (";" in first[0] or "\t" in first[0]):
        delimiter = "';'" if ";" in first[0] else "tab"
        raise DataError(
            f"{path} looks {delimiter}-separated (its first line is {first[0][:60]!r}); ovcast "
            f"reads comma-separated files with '.' as the decimal point: save it as such "
            f"(expected {expected})"
        )


def _refuse_repeated_names(path: Path, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = name_key(name)
        if not key:
            continue
        if key in seen:
            raise DataError(
                f"{path}: the header names column {seen[key] + 1} ({names[seen[key]]!r}) and "
                f"column {i + 1} ({name!r}) alike; every column needs a name of its own "
                "(names are matched ignoring case and spaces)"
            )
        seen[key] = i


def time_seconds(text: str, unit: str = "auto") -> tuple[float, str | None]:
    """Epoch seconds of a time cell, and the unit an epoch number was read in (None for ISO)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return _iso_seconds(text), None
    if not math.isfinite(value):
        raise DataError(f"time {text!r} is not a finite number")
    if unit == "auto":
        unit = next(u for u, below in _UNIT_BELOW if abs(value) < below)
    seconds = value * _SECONDS_PER_UNIT[unit]
    if abs(seconds) >= _LATEST_S:
        raise DataError(
            f"time {text} in {_UNIT_NAMES[unit]} is beyond the year 2261; is its unit another?"
        )
    return seconds, unit


def parse_time(text: str, unit: str = "auto") -> int:
    """Whole epoch seconds of ISO 8601 or an epoch number (unit by magnitude unless given)."""
    return math.floor(time_seconds(text, unit)[0])


def _iso_seconds(text: str) -> float:
    stamp = iso_time(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def iso_time(text: str) -> dt.datetime:
    """An ISO 8601 time as written: with its offset ('Z' is UTC) or naive."""
    iso = text.replace("Z", "+00:00").replace(" ", "T", 1)
    if "." in iso:  # truncate fractions to microseconds: 9-digit fractions break fromisoformat
        head, _, rest = iso.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        iso = head + "." + digits[:6].ljust(6, "0") + rest[len(digits) :]
    try:
        stamp = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise DataError(
            f"cannot parse time {text!r}; expected ISO 8601 or epoch s, ms, us or ns"
        ) from None
    return stamp


def is_time(text: str) -> bool:
    """Whether ``text`` reads as a time: an epoch number or ISO 8601."""
    if is_number(text):
        return True
    try:
        _iso_seconds(text.strip())
    except DataError:
        return False
    return True


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(row: list[str], i: int) -> tuple[float, str]:
    """A cell as a finite float, or NaN and what is wrong with it."""
    if i >= len(row):
        return math.nan, f"missing (the line has {len(row)} cells)"
    text = row[i].strip()
    if not text:
        return math.nan, "empty"
    try:
        value = float(text)
    except ValueError:
        return math.nan, f"non-numeric value {text!r}"
    if not math.isfinite(value):
        return math.nan, f"{text} is not a finite number"
    return value, ""
