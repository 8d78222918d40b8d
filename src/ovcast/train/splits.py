"""A series split by time, scaled on its train rows, and cut into (context, horizon) windows.

    data = split_series(series, SplitConfig(splits="0.7,0.15", gap=96), 512, 96,
                        targets=["close"])
    for batch in data.val.batches(256): ...   # contexts (b, 512, 7), futures (b, 96, 7)

Two split forms. Without a gap (the standard ETTh1 protocol), validation and test start
``context_length`` rows before their boundary: their contexts reach back into the split
before, every forecast target lies inside the split. With a gap, splits share no row: each
window lies inside its split and ``gap`` rows separate the splits.

Scoring leaves out target steps on partial bars, and on filled bars unless
``score_filled``: a window's forecast still covers them, but they add nothing to its error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from .._csv import name_key
from ..errors import ConfigError, DataError
from ..scaling import Scaler
from .config import SplitConfig
from .data import Series, refuse_repeats

ETTH1_ENDS = (8640, 11520, 14400)  # 12/4/4 months of hourly rows


@dataclass(frozen=True)
class Splits:
    """Row ranges [start, end) of train, validation and test, contexts included."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    gap: int | None = None  # None: contexts reach back across boundaries; else rows left out

    @classmethod
    def parse(
        cls, spec: str, n_rows: int, context_length: int, *, gap: int | None = None
    ) -> Splits:
        """'etth1', 'TRAIN_END,VAL_END,TEST_END' (rows) or 'TRAIN,VAL' (fractions)."""
        if gap is not None and spec == "etth1":
            raise ConfigError(
                "--splits etth1 is the standard protocol, whose validation and test contexts "
                "reach back into the split before; a --gap cannot apply to it. For disjoint "
                f"splits of the same rows: --splits {','.join(map(str, ETTH1_ENDS))} --gap ROWS"
            )
        if gap is not None and gap < 0:
            raise ConfigError(f"--gap must be 0 or more rows, got {gap}")
        train_end, val_end, test_end = _split_ends(spec, n_rows)
        if gap is None:
            return cls(
                (0, train_end),
                (max(0, train_end - context_length), val_end),
                (max(0, val_end - context_length), test_end),
            )
        return cls((0, train_end), (train_end + gap, val_end), (val_end + gap, test_end), gap)

    def describe(self) -> str:
        spans = f"train rows {self.train}, validation {self.val}, test {self.test}"
        if self.gap is None:
            return f"{spans}; validation and test contexts reach back into the split before"
        return f"{spans}; disjoint, {self.gap} rows left out between splits"


class Batch(NamedTuple):
    contexts: np.ndarray  # (batch, context, channels)
    futures: np.ndarray  # (batch, horizon, channels)
    scored: np.ndarray  # (batch, horizon) bool: the target steps that count in a score


@dataclass(frozen=True)
class Windows:
    """Every (context, horizon) window of one split at stride 1, over scaled values."""

    values: np.ndarray  # (time, channels) float32, scaled
    starts: np.ndarray  # (windows,) the first context row of each window
    context_length: int
    prediction_length: int
    targets: tuple[int, ...]  # the channels that are scored
    channel_names: tuple[str, ...]
    scored: np.ndarray  # (time,) bool: rows that count as targets
    scoring: str  # which target steps count, in words

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(self.channel_names[i] for i in self.targets)

    def gather(self, starts: np.ndarray) -> Batch:
        """The windows that start at ``starts``."""
        offsets = np.arange(self.context_length + self.prediction_length)
        rows = starts[:, None] + offsets[None, :]  # (batch, context + horizon)
        windows = self.values[rows]
        return Batch(
            windows[:, : self.context_length],
            windows[:, self.context_length :],
            self.scored[rows[:, self.context_length :]],
        )

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for i in range(0, len(self.starts), batch_size):
            yield self.gather(self.starts[i : i + batch_size])

    def subsample(self, max_windows: int) -> Windows:
        """At most ``max_windows`` evenly spaced windows (all when 0)."""
        if not max_windows or len(self.starts) <= max_windows:
            return self
        picks = np.linspace(0, len(self.starts) - 1, max_windows).astype(int)
        return replace(self, starts=self.starts[picks])

    def without_targets_in(self, rows: np.ndarray) -> Windows:
        """The windows none of whose target steps falls on ``rows`` (a (time,) bool mask)."""
        return replace(self, starts=self.starts[self._targets_in(rows) == 0])

    def scored_steps(self) -> int:
        """How many (window, step) targets count in a score."""
        return int(self._targets_in(self.scored).sum())

    def _targets_in(self, rows: np.ndarray) -> np.ndarray:
        """(windows,) how many target steps of each window fall on ``rows``."""
        before = np.concatenate([[0], np.cumsum(rows)])  # before[i]: marked rows among [0, i)
        first = self.starts + self.context_length
        return before[first + self.prediction_length] - before[first]


@dataclass(frozen=True)
class SplitData:
    """What training and evaluation take: the splits' windows and the train-fitted scaler."""

    splits: Splits
    scaler: Scaler
    train: Windows
    val: Windows
    test: Windows


def split_series(
    series: Series,
    split: SplitConfig,
    context_length: int,
    prediction_length: int,
    *,
    targets: Sequence[str] | None = None,
    score_filled: bool = False,
    scaler_kinds: str | Sequence[str] = "standard",
    scaler: Scaler | None = None,
) -> SplitData:
    """Split, fit the scaler on the train rows only (unless ``scaler`` is given: the one a
    model was trained with), scale, and cut every split's windows."""
    try:
        return _split_series(
            series,
            split,
            context_length,
            prediction_length,
            targets=targets,
            score_filled=score_filled,
            scaler_kinds=scaler_kinds,
            scaler=scaler,
        )
    except DataError as exc:
        if not series.origin:
            raise
        raise DataError(f"{exc} ({series.origin})") from exc


def _split_series(
    series: Series,
    split: SplitConfig,
    context_length: int,
    prediction_length: int,
    *,
    targets: Sequence[str] | None,
    score_filled: bool,
    scaler_kinds: str | Sequence[str],
    scaler: Scaler | None,
) -> SplitData:
    spans = Splits.parse(split.splits, len(series), context_length, gap=split.gap)
    starts = {
        name: window_starts(span, context_length, prediction_length, name)
        for name, span in (("train", spans.train), ("validation", spans.val), ("test", spans.test))
    }
    if scaler is None:
        scaler = Scaler.fit(series.values[slice(*spans.train)], scaler_kinds, series.columns)
    scaled = scaler.transform(series.values)
    scored = ~series.partial & (score_filled | ~series.filled)
    target_indices = _target_indices(series.columns, targets)
    scoring = _scoring(series, score_filled)

    def windows(name: str) -> Windows:
        return Windows(
            values=scaled,
            starts=starts[name],
            context_length=context_length,
            prediction_length=prediction_length,
            targets=target_indices,
            channel_names=series.columns,
            scored=scored,
            scoring=scoring,
        )

    # A partial bar may lack trades: never a training target.
    train = windows("train").without_targets_in(series.partial)
    if not len(train):
        raise DataError(
            "every training window has a target step on a partial bar (trades may be "
            "missing there): none is left to train on; use other --splits or more data"
        )
    val, test = windows("validation"), windows("test")
    for name, windows_of_split in (("validation", val), ("test", test)):
        if not windows_of_split.scored_steps():
            raise DataError(
                f"the {name} split has no target step to score: every one falls on a filled "
                "or partial bar. Use other --splits, or --score-filled to score filled bars"
            )
    return SplitData(spans, scaler, train, val, test)


def window_starts(
    span: tuple[int, int], context_length: int, prediction_length: int, name: str = "the split"
) -> np.ndarray:
    """Start rows of every (context + horizon) window inside ``span``, stride 1."""
    start, end = span
    last = end - context_length - prediction_length
    if last < start:
        raise DataError(
            f"{name} rows [{start}, {end}) are too few for one window of {context_length} + "
            f"{prediction_length} rows; use more data or other --splits"
        )
    return np.arange(start, last + 1)


def _split_ends(spec: str, n_rows: int) -> tuple[int, int, int]:
    if spec == "etth1":
        ends = ETTH1_ENDS
    else:
        try:
            parts = [float(p) for p in spec.split(",")]
        except ValueError:
            parts = []
        if len(parts) == 2 and all(0 < p < 1 for p in parts) and sum(parts) < 1:
            ends = (round(n_rows * parts[0]), round(n_rows * sum(parts)), n_rows)
            if not 0 < ends[0] < ends[1] < ends[2]:
                raise DataError(
                    f"--splits {spec} of the data's {n_rows} rows leaves a split without rows "
                    f"(train, validation and test end at rows {ends}); use more data or other "
                    "fractions"
                )
        elif len(parts) == 3 and all(p.is_integer() for p in parts):
            ends = (int(parts[0]), int(parts[1]), int(parts[2]))
        else:
            raise ConfigError(
                f"bad split spec {spec!r}; expected 'etth1', row ends 'TRAIN_END,VAL_END,TEST_END' "
                "or fractions 'TRAIN,VAL' in (0, 1) with a sum below 1 (e.g. 0.7,0.1)"
            )
    if not 0 < ends[0] < ends[1] < ends[2]:
        raise ConfigError(
            f"split ends {ends} must increase from above 0: TRAIN_END < VAL_END < TEST_END"
        )
    if ends[2] > n_rows:
        raise DataError(f"the splits end at row {ends[2]}; the data has {n_rows} rows")
    return ends


def _target_indices(columns: tuple[str, ...], targets: Sequence[str] | None) -> tuple[int, ...]:
    """The channels ``targets`` names (trimmed, any case, as CSV headers are matched)."""
    if not targets:
        return tuple(range(len(columns)))
    refuse_repeats(targets, "--targets")
    keys = [name_key(c) for c in columns]
    unknown = [t for t in targets if name_key(t) not in keys]
    if unknown:
        raise DataError(f"target column(s) {unknown} are not among the channels {list(columns)}")
    return tuple(keys.index(name_key(t)) for t in targets)


def _scoring(series: Series, score_filled: bool) -> str:
    if not (series.filled.any() or series.partial.any()):
        return "every target step"
    if score_filled:
        return "every target step but those on partial bars (filled bars scored)"
    return "real bars only: target steps on filled or partial bars left out"
