"""Reading CSV files into rows, with the one error message every reader gives."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import DataError


def read_rows(path: str | Path, *, expected: str) -> list[list[str]]:
    """Non-empty rows of a CSV file, header included; ``expected`` says what a good file holds."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; expected {expected}")
    return rows
