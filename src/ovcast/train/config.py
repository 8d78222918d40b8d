"""Every knob of training, fine-tuning and evaluation, in flat dataclasses.

Each field is also its command-line option (``cli/_options.py`` generates the flags, defaults
and help from these declarations), and a run stores its config inside its checkpoint
(``best/training.json``), so the run can be read back and repeated from the checkpoint alone.
A config checks its values when built (``__post_init__``): a bad one is a ``ConfigError``
naming the flag, before any data is read.

    SplitConfig                 how rows become train / validation / test
    ├── LoopConfig              the training loop (ovcast train and finetune share it)
    │   ├── TrainConfig         + CsvData + the model to build       (ovcast train)
    │   └── FinetuneConfig      + MarketData + the base model        (ovcast finetune)
    └── EvaluateConfig          + CsvData + the split to score       (ovcast evaluate)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._csv import TIME_UNITS
from ..cli._options import flag_of, option, redefault
from ..errors import ConfigError
from ..market.bars import Bars
from ..market.features import FeatureConfig
from .data import Series, load_bars, read_csv

# Model settings a run takes from its data and options, never from --model-config.
RUN_SHAPE = {
    "context_length": "--context",
    "prediction_length": "--horizon",
    "num_input_channels": "--columns (the channels are the data's)",
}


def comma_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b'] (for options that name several columns)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"expected a JSON object such as '{{\"d_model\": 64}}': {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"expected a JSON object such as '{{\"d_model\": 64}}', got {text!r}")
    return value


class _Checked:
    """Configs check their own fields after init, each calling its bases' check first."""

    def __post_init__(self) -> None:
        pass

    def _require(self, name: str, ok: Callable[[Any], bool], rule: str) -> None:
        """Refuse field ``name`` unless ``ok(value)``, naming its flag and the ``rule``."""
        value = getattr(self, name)
        if not ok(value):
            field = {f.name: f for f in dataclasses.fields(self)}[name]  # type: ignore[arg-type]
            raise ConfigError(f"{flag_of(field)} must be {rule}, got {value!r}")


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: math.isfinite(value) and value >= low


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(kw_only=True)
class SplitConfig(_Checked):
    splits: str = option(
        "0.7,0.1",
        metavar="SPEC",
        help="'etth1' (the standard ETTh1 rows), fractions TRAIN,VAL (test takes the rest) "
        "or row ends TRAIN_END,VAL_END,TEST_END",
    )
    gap: int | None = option(
        None,
        metavar="ROWS",
        help="leave this many rows out between splits, so every window lies inside its split "
        "(default: none; validation and test contexts then reach back into the split before, "
        "as the standard ETTh1 protocol does)",
    )


@dataclass(kw_only=True)
class LoopConfig(SplitConfig):
    epochs: int = option(
        10, help="passes over the training windows (early stopping may end sooner)"
    )
    batch_size: int = option(64, help="windows per optimizer step")
    windows_per_epoch: int = option(0, help="random training windows per epoch (0: all of them)")
    learning_rate: float = option(1e-4, flag="--lr", help="peak AdamW learning rate")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    warmup_fraction: float = option(
        0.1, help="share of all steps spent warming up linearly; then cosine decay to 0"
    )
    patience: int = option(3, help="epochs without a better validation score before stopping")
    seed: int = option(42, help="seeds the initial weights and the order of training windows")
    head_only: bool = option(
        False,
        help="train only the forecasting head (fast fine-tuning; for TTM, granite-tsfm's "
        "recipe: the backbone is frozen, the decoder and head train)",
    )
    num_threads: int = option(0, flag="--threads", help="torch threads (0: the usable cores)")
    max_eval_windows: int = option(
        0, help="validate on this many evenly spaced windows (0: all of them)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require("epochs", _at_least(1), "1 or more")
        self._require("batch_size", _at_least(1), "1 or more")
        self._require("windows_per_epoch", _at_least(0), "0 (all) or more")
        self._require("learning_rate", _positive, "a positive number")
        self._require("weight_decay", _at_least(0), "0 or more")
        self._require("warmup_fraction", lambda v: 0 <= v <= 1, "between 0 and 1")
        self._require("patience", _at_least(1), "1 or more")
        self._require("num_threads", _at_least(0), "0 (the usable cores) or more")
        self._require("max_eval_windows", _at_least(0), "0 (all) or more")


@dataclass(kw_only=True)
class TimeConfig(_Checked):
    time_unit: str = option(
        "auto",
        choices=TIME_UNITS,
        help="unit of epoch-number times; auto tells s, ms, us and ns apart by magnitude",
    )


@dataclass(kw_only=True)
class CsvData(TimeConfig):
    """A CSV of a timestamp column and numeric columns (ETTh1's layout)."""

    data: str = option(help="the CSV file", cli=False)  # a positional argument on the CLI
    columns: list[str] | None = option(
        None,
        parse=comma_list,
        metavar="A,B",
        help="the columns to read, in the model's channel order (default: all but the timestamp)",
    )
    timestamp_column: str | None = option(
        None,
        help="the time column (default: the first named date, datetime, time, timestamp, ts "
        "or open_time in any case, else a first column of dates; predict finds it the same way)",
    )
    target_columns: list[str] | None = option(
        None,
        flag="--targets",
        parse=comma_list,
        metavar="A,B",
        help="the columns that are scored, and that early stopping selects on (default: all)",
    )

    def read(self) -> Series:
        return read_csv(
            self.data,
            columns=self.columns,
            timestamp_column=self.timestamp_column,
            time_unit=self.time_unit,
        )


@dataclass(kw_only=True)
class MarketData(TimeConfig):
    """OHLCV candles (CSV or an `ovcast live` recording) and how they become the 7 channels."""

    data: str = option(
        flag="--data", metavar="FILE", help="OHLCV CSV, or a recording written by 'ovcast live'"
    )
    product: str | None = option(None, help="the product to read from a recording")
    interval_s: int | None = option(
        None,
        flag="--interval",
        help="bar interval in seconds (default: the commonest step); refused when the data "
        "contradicts it",
    )
    macd_output: str = option(
        "line", flag="--macd", choices=("line", "signal", "histogram"), help="the MACD channel"
    )
    volatility_window: int = option(20, help="log returns in the volatility channel")
    score_filled: bool = option(
        False,
        help="score filled bars (no trades: flat at the last close) as targets too. A filled "
        "minute is a real price for crypto but a closed market for FX; partial bars are "
        "never scored",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require("interval_s", lambda v: v is None or v > 0, "a positive number of seconds")
        self._require("volatility_window", _at_least(2), "2 or more (log returns)")

    def bars(self) -> Bars:
        return load_bars(
            self.data, product=self.product, interval_s=self.interval_s, time_unit=self.time_unit
        )

    def features(self) -> FeatureConfig:
        return FeatureConfig(self.macd_output, self.volatility_window)


@dataclass(kw_only=True)
class TrainConfig(CsvData, LoopConfig):
    """Everything that determines an `ovcast train` run."""

    out: str = option(
        metavar="DIR", help="run folder: best/ (the selected checkpoint), checkpoint-last/"
    )
    family: str = option(
        "patchtst",
        choices=("patchtst", "patchtsmixer", "ttm"),
        help="architecture (ttm: TinyTimeMixer, the r2 shape for --context; needs granite-tsfm)",
    )
    context_length: int = option(512, flag="--context", help="rows each forecast sees")
    prediction_length: int = option(96, flag="--horizon", help="rows each forecast predicts")
    model_overrides: dict[str, Any] = option(
        default_factory=dict,
        flag="--model-config",
        metavar="JSON",
        parse=json_object,
        help="changes to the Granite config, e.g. '{\"d_model\": 64}'",
    )
    init_from: str | None = option(
        None,
        metavar="MODEL",
        help="start from this checkpoint ('default', a folder or a hub id) instead of random "
        "weights; it is then a candidate for best/ too",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require("context_length", _at_least(1), "1 or more rows")
        self._require("prediction_length", _at_least(1), "1 or more rows")
        fixed = sorted(set(self.model_overrides) & set(RUN_SHAPE))
        if fixed:
            raise ConfigError(
                f"--model-config sets {fixed}, which this run sets itself: use "
                f"{', '.join(RUN_SHAPE[k] for k in fixed)}"
            )


@dataclass(kw_only=True)
class FinetuneConfig(MarketData, LoopConfig):
    """Everything that determines an `ovcast finetune` run."""

    base: str | None = option(
        None,
        metavar="MODEL",
        help="the model to start from: 'default', a folder or a hub id (default: 'default'; "
        "with --family ttm, ibm-granite/granite-timeseries-ttm-r2)",
    )
    family: str | None = option(
        None,
        choices=("patchtst", "patchtsmixer", "ttm"),
        help="the base model's family, checked (default: whatever --base is)",
    )
    channel_mixing: bool = option(
        False,
        help="TTM: mix channels in the decoder (granite-tsfm's decoder_mode='mix_channel'; "
        "its mixing layers start untrained)",
    )
    out: str = option(
        metavar="DIR", help="run folder: best/, evaluation.json, forecasts.png, package/"
    )
    convert: bool = option(
        False, help="also write the selected checkpoint as a parity-checked OpenVINO package"
    )
    splits: str = redefault(SplitConfig, "splits", "0.7,0.15")
    gap: int | None = redefault(
        SplitConfig,
        "gap",
        None,
        help="rows left out between splits, so no window reaches into another split "
        "(default: the horizon)",
    )
    epochs: int = redefault(LoopConfig, "epochs", 5)
    batch_size: int = redefault(LoopConfig, "batch_size", 32)
    patience: int = redefault(LoopConfig, "patience", 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.splits == "etth1":
            raise ConfigError(
                "--splits etth1 is ETTh1's standard protocol (fixed row ends of an hourly "
                "data set); split market data by fractions TRAIN,VAL or row ends "
                "TRAIN_END,VAL_END,TEST_END"
            )


@dataclass(kw_only=True)
class EvaluateConfig(CsvData, SplitConfig):
    """Which model, data and split `ovcast evaluate` scores."""

    model: str = option(help="a package folder, 'default', a checkpoint or a hub id", cli=False)
    splits: str | None = redefault(  # type: ignore[assignment]
        SplitConfig,
        "splits",
        None,
        help="as for train (default: the splits the model's run recorded in its "
        "training.json, so that no scored row is one it trained on; else etth1)",
    )
    split: str = option("test", choices=("train", "val", "test"), help="the split to score")
    season: int = option(24, help="period of the seasonal-naive baseline (0: leave it out)")
    max_windows: int = option(0, help="score this many evenly spaced windows (0: all of them)")
    batch_size: int = option(256, help="windows per forward pass")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require("season", _at_least(0), "0 (no seasonal baseline) or more")
        self._require("max_windows", _at_least(0), "0 (all) or more")
        self._require("batch_size", _at_least(1), "1 or more")
