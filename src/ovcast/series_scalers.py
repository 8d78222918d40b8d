"""One scaler per series: granite-tsfm fits a scaler per id (``id_columns``), and a package
converted with such a preprocessor carries them all, chosen by series id at request time.

    scalers = SeriesScalers.from_dict(manifest.series_scalers)
    scaler = scalers.get("BTC-USD")                 # one id column
    scaler = scalers.get({"store": 3, "item": 7})   # several: a mapping, or values in order

Ids are compared as text ("3" and 3 are the same series), as granite-tsfm writes them.
Pure numpy: this module is on the runtime path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError, ModelPackageError
from .scaling import Scaler

SeriesKey = tuple[str, ...]


@dataclass(frozen=True)
class SeriesScalers:
    """Scalers by series id; ``id_columns`` names the parts of an id."""

    id_columns: tuple[str, ...]
    scalers: Mapping[SeriesKey, Scaler]

    def __post_init__(self) -> None:
        if not self.id_columns or not self.scalers:
            raise ModelPackageError("series scalers need id columns and at least one scaler")
        if any(len(key) != len(self.id_columns) for key in self.scalers):
            raise ModelPackageError(
                f"every series id must have {len(self.id_columns)} part(s) ({self.id_columns})"
            )

    def key(self, series_id: Any) -> SeriesKey:
        """A series id as given (a value, values in id-column order, or a mapping) as a key."""
        columns = self.id_columns
        if isinstance(series_id, Mapping):
            missing = [c for c in columns if c not in series_id]
            if missing:
                raise InvalidInputError(f"series id {dict(series_id)} lacks {missing}")
            parts: Sequence[Any] = [series_id[c] for c in columns]
        elif isinstance(series_id, (list, tuple)):
            parts = series_id
        else:
            parts = [series_id]
        # numpy scalars (np.int64 from an array or a pandas group key) as the Python values
        parts = [p.item() if isinstance(p, np.generic) else p for p in parts]
        if len(parts) != len(columns) or any(
            not isinstance(p, (str, int, float)) or isinstance(p, bool) for p in parts
        ):
            raise InvalidInputError(
                f"series id {series_id!r}: expected {len(columns)} value(s) for {list(columns)}"
            )
        return tuple(id_text(p) for p in parts)

    def get(self, series_id: Any) -> Scaler:
        if series_id is None:
            raise InvalidInputError(
                f"this package scales each series on its own: give the series id "
                f"({', '.join(self.id_columns)}); known: {self.known()}"
            )
        key = self.key(series_id)
        scaler = self.scalers.get(key)
        if scaler is None:
            raise InvalidInputError(
                f"no scaler for series {list(key)}; the package knows {self.known()}"
            )
        return scaler

    def known(self, shown: int = 5) -> str:
        keys = [k[0] if len(k) == 1 else list(k) for k in list(self.scalers)[:shown]]
        more = len(self.scalers) - shown
        return f"{keys}{f' and {more} more' if more > 0 else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_columns": list(self.id_columns),
            "scalers": [{"id": list(k), "scaler": s.to_dict()} for k, s in self.scalers.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesScalers:
        try:
            scalers = {
                tuple(id_text(p) for p in entry["id"]): Scaler.from_dict(entry["scaler"])
                for entry in data["scalers"]
            }
            return cls(tuple(data["id_columns"]), scalers)
        except (KeyError, TypeError) as exc:
            raise ModelPackageError(
                "invalid series scalers: expected {'id_columns': [...], 'scalers': "
                f"[{{'id': [...], 'scaler': {{...}}}}]}} ({exc!r})"
            ) from exc


def id_text(part: Any) -> str:
    """Ids compare as text; whole floats as integers (1.0 -> '1'), as JSON round trips make them."""
    if isinstance(part, float) and part.is_integer():
        return str(int(part))
    return str(part)
