"""The forecast scorecard: every forecast against the bars that really came, as they come.

    card = Scorecard("BTC-USD", interval_s=60)
    card.add_bar(start_s, close, partial=False)         # every closed bar, before its forecast
    card.add_forecast(start_s, forecast, window_closes, model="btc")
    card.summary()                                      # per horizon bucket, JSON-ready
    stored = card.to_dict(); Scorecard.from_dict(stored, "BTC-USD", interval_s=60)

A forecast made at the close of the bar that starts at ``t`` says, for step ``h``, the close
of the bar that starts at ``t + h * interval_s``. When that bar closes, step ``h`` is scored,
so every forecast is scored step by step while its horizon elapses. Each scored step adds,
in price units, the absolute and squared error of three forecasts of the same bar:

- the model's;
- the random walk's: the close the forecast was made at (no change), the forecast that is
  hardest to beat on prices;
- drift's: the straight line through the first and last close of the model's input window,
  carried on (the baseline ``ovcast finetune`` reports too).

Direction: a step moved up or down from the close the forecast was made at; a forecaster
called up or down by its forecast against that same close. The hit rate is the share of
calls that were right, over steps that moved and were called (a flat step or a flat call
is no call): the random walk never calls a move, so it has no hit rate. The same rule as
``ovcast finetune``'s directional accuracy.

Which bars count, as a trader would have it: a **filled** bar (no trades in its interval,
flat at the last price) is a real price, the one a position would have been marked at: it
is scored. A **partial** bar (trades may be missing) is unknown: it is never scored, only
counted (``skipped_partial``). A bar that never comes (a hole in a recording) leaves its
steps unscored. Numbers that are not numbers never reach the sums, so one bad value cannot
spoil a day's card: a bar whose close is NaN or infinite is skipped like a partial one, and
a forecast with a non-finite value (or made from such a window) is not scored at all, only
counted (``unscorable``).

The sums and the forecasts in flight are stored together (``to_dict``), so a restart
mid-horizon goes on scoring those forecasts at the bars that come after it (bars missed
while it was down leave their steps unscored).

One card per model: after a hot swap the new model's forecasts go to a new card, and the
old model's forecasts still in flight finish in the old one's. ``summary()`` shows the card
of the latest forecast's model and names the others. Errors are summed per horizon step,
so the buckets (1, 2-5, 6-15, 16-48, 49-96 steps, and the rest of a longer horizon) and the
error-by-step curve come from the same sums. Pure arithmetic on numbers: no model, no I/O.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORECASTERS = ("model", "random_walk", "drift")
LABELS = {"model": "model", "random_walk": "random walk", "drift": "drift"}
BUCKETS = ((1, 1), (2, 5), (6, 15), (16, 48), (49, 96))
TIE = 0.01  # MAEs within 1% of each other are a tie, not a win
FEW = 100  # scored steps below which the verdict says it is too early to judge
FORMAT_VERSION = 1
RULES = (
    "Each forecast step is scored when its bar closes: mean absolute error (MAE) of the "
    "close, in price, for the model, the random walk (no change from the close the forecast "
    "was made at) and drift (the window's first-to-last line), on the same bars; lower is "
    "better, and on prices the random walk is usually the one to beat. Hits: moves called "
    "right, of the steps that moved and were called. Filled bars (no trades: the last "
    "price stands) are scored; partial bars (trades may be missing) never are."
)


def meta_key(product: str) -> str:
    """Where a recording keeps a product's scorecard (``Recording.meta``)."""
    return f"scorecard:{product}"


def horizon_buckets(horizon: int) -> list[tuple[int, int]]:
    """BUCKETS cut at ``horizon`` (1-based, inclusive), plus the rest of a longer one."""
    buckets = [(lo, min(hi, horizon)) for lo, hi in BUCKETS if lo <= horizon]
    if horizon > BUCKETS[-1][1]:
        buckets.append((BUCKETS[-1][1] + 1, horizon))
    return buckets


def bucket_label(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


class _Card:
    """One model's error sums per horizon step (row ``h - 1``), one column per forecaster."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.steps = np.zeros(horizon, np.int64)  # scored (forecast, step) pairs per step
        self.abs = np.zeros((horizon, len(FORECASTERS)))
        self.sq = np.zeros((horizon, len(FORECASTERS)))
        self.calls = np.zeros((horizon, len(FORECASTERS)), np.int64)
        self.hits = np.zeros((horizon, len(FORECASTERS)), np.int64)
        self.forecasts = 0  # forecasts with at least one step scored
        self.skipped_partial = 0  # steps not scored: their bar was partial

    def score(
        self, steps: np.ndarray, forecasts: np.ndarray, origins: np.ndarray, close: float
    ) -> None:
        """One bar's close against ``forecasts`` (pairs, forecasters) made at ``origins``
        (pairs,) for horizon ``steps`` (pairs,), 1-based."""
        rows = steps - 1
        error = forecasts - close
        moved = np.sign(close - origins)[:, None]
        called = np.sign(forecasts - origins[:, None])
        decided = (moved != 0) & (called != 0)
        np.add.at(self.steps, rows, 1)
        np.add.at(self.abs, rows, np.abs(error))
        np.add.at(self.sq, rows, error**2)
        np.add.at(self.calls, rows, decided)
        np.add.at(self.hits, rows, decided & (called == moved))

    def over(self, lo: int, hi: int) -> dict[str, Any]:
        """Errors and hit rates over steps ``lo``..``hi``."""
        rows = slice(lo - 1, hi)
        n = int(self.steps[rows].sum())
        calls = self.calls[rows].sum(axis=0)
        hits = self.hits[rows].sum(axis=0)
        mae = self.abs[rows].sum(axis=0) / n if n else np.full(len(FORECASTERS), math.nan)
        rmse = np.sqrt(self.sq[rows].sum(axis=0) / n) if n else mae
        return {
            "steps": bucket_label(lo, hi),
            "first": lo,
            "last": hi,
            "scored": n,
            "mae": _per_forecaster(mae),
            "rmse": _per_forecaster(rmse),
            "hit_rate": {
                name: round(float(hits[k] / calls[k]), 4) if calls[k] else None
                for k, name in enumerate(FORECASTERS)
            },
            "calls": {name: int(calls[k]) for k, name in enumerate(FORECASTERS)},
            "model_vs_random_walk": _ratio(mae[0], mae[1]),
        }

    def by_step(self) -> dict[str, Any]:
        """The MAE of each forecaster at every step (None where nothing was scored yet)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mae = self.abs / self.steps[:, None]
        return {
            "scored": self.steps.tolist(),
            "mae": {name: _floats(mae[:, k]) for k, name in enumerate(FORECASTERS)},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon,
            "forecasts": self.forecasts,
            "skipped_partial": self.skipped_partial,
            "steps": self.steps.tolist(),
            "abs": self.abs.tolist(),
            "sq": self.sq.tolist(),
            "calls": self.calls.tolist(),
            "hits": self.hits.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Card:
        card = cls(int(data["horizon"]))
        card.forecasts = int(data["forecasts"])
        card.skipped_partial = int(data["skipped_partial"])
        for name in ("steps", "abs", "sq", "calls", "hits"):
            stored = np.asarray(data[name], dtype=getattr(card, name).dtype)
            if stored.shape != getattr(card, name).shape or not np.isfinite(stored).all():
                raise ValueError(f"{name} has shape {stored.shape} or non-finite values")
            setattr(card, name, stored)
        return card


@dataclass
class _Pending:
    """A forecast whose horizon has not elapsed yet: its three paths, in price."""

    origin_s: int
    origin_close: float
    slope: float  # drift's, per step
    paths: np.ndarray  # (horizon, forecasters)
    model: str
    card: _Card
    scored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The model's path and the drift's slope: the other paths follow from them."""
        return {"origin_s": self.origin_s, "close": self.origin_close, "slope": self.slope,
                "model": self.model, "forecast": self.paths[:, 0].tolist(),
                "scored": self.scored}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any], cards: dict[str, _Card]) -> _Pending:
        card = cards[data["model"]]
        forecast = np.asarray(data["forecast"], np.float64)
        origin, slope = float(data["close"]), float(data["slope"])
        if forecast.shape != (card.horizon,) or not np.isfinite([*forecast, origin, slope]).all():
            raise ValueError(
                f"a forecast in flight has shape {forecast.shape} or non-finite values"
            )
        return cls(int(data["origin_s"]), origin, slope, _paths(forecast, origin, slope),
                   str(data["model"]), card, bool(data["scored"]))  # fmt: skip


def _paths(forecast: np.ndarray, origin: float, slope: float) -> np.ndarray:
    """(horizon, forecasters): the model's forecast, the random walk's, drift's."""
    steps = np.arange(1, len(forecast) + 1)
    return np.stack([forecast, np.full(len(forecast), origin), origin + slope * steps], 1)


class Scorecard:
    """One product's scorecard: forecasts waiting for their bars, and a card per model.
    Thread-safe: the pipeline writes, the dashboard and status lines read."""

    def __init__(self, product: str, interval_s: int = 60) -> None:
        self.product = product
        self.interval_s = interval_s
        self.model: str | None = None  # the latest forecast's model: its card is shown
        self._cards: dict[str, _Card] = {}
        self._pending: deque[_Pending] = deque()
        self.unscorable = 0  # forecasts not scored: a value in them was NaN or infinite
        self._lock = threading.Lock()

    def add_bar(self, start_s: int, close: float, *, partial: bool = False) -> None:
        """A closed bar: score every pending forecast's step that it is the bar of."""
        with self._lock:
            unknown = partial or not math.isfinite(close)
            due: dict[int, list[tuple[int, _Pending]]] = {}
            for pending in self._pending:
                offset = start_s - pending.origin_s
                step = offset // self.interval_s
                if offset % self.interval_s == 0 and 1 <= step <= pending.card.horizon:
                    due.setdefault(id(pending.card), []).append((step, pending))
            self._pending = deque(p for p in self._pending if self._last_bar(p) > start_s)
            for pairs in due.values():
                card = pairs[0][1].card
                if unknown:
                    card.skipped_partial += len(pairs)
                    continue
                steps = np.array([step for step, _ in pairs])
                paths = np.stack([p.paths[step - 1] for step, p in pairs])
                origins = np.array([p.origin_close for _, p in pairs])
                card.score(steps, paths, origins, close)
                for _, p in pairs:
                    card.forecasts += not p.scored
                    p.scored = True

    def _last_bar(self, pending: _Pending) -> int:
        """When the bar of the forecast's last step starts."""
        return pending.origin_s + pending.card.horizon * self.interval_s

    def add_forecast(
        self, start_s: int, forecast: np.ndarray, window_closes: np.ndarray, *, model: str
    ) -> None:
        """The model's forecast of the close (horizon,), made at the close of the bar that
        starts at ``start_s``, from a window whose closes were ``window_closes``."""
        forecast = np.asarray(forecast, np.float64)
        closes = np.asarray(window_closes, np.float64)
        if not (np.isfinite(forecast).all() and np.isfinite(closes).all()) or not len(closes):
            with self._lock:
                self.unscorable += 1
            log.warning("%s: a forecast at %d holds a value that is not a finite number (in "
                        "it or its window): it is not scored", self.product, start_s)  # fmt: skip
            return
        origin = float(closes[-1])
        slope = float(closes[-1] - closes[0]) / (len(closes) - 1) if len(closes) > 1 else 0.0
        paths = _paths(forecast, origin, slope)
        with self._lock:
            card = self._cards.get(model)
            if card is None or card.horizon != len(forecast):
                if card is not None:
                    log.warning("%s: %s now forecasts %d steps, not %d: its scorecard starts "
                                "again", self.product, model, len(forecast), card.horizon)  # fmt: skip
                card = self._cards[model] = _Card(len(forecast))
            self.model = model
            self._pending = deque(p for p in self._pending if p.origin_s != start_s)
            self._pending.append(_Pending(start_s, origin, slope, paths, model, card))

    # -- readers ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The shown model's card: every bucket, the whole horizon, the MAE by step, and a
        verdict in words. JSON-ready (None where nothing is scored yet)."""
        with self._lock:
            card = self._cards.get(self.model or "")
            pending = len(self._pending)
            others = sorted(name for name in self._cards if name != self.model)
            if card is None:
                return {"product": self.product, "model": self.model, "forecasts": 0,
                        "pending": pending, "skipped_partial": 0, "buckets": [], "all": None,
                        "by_step": None, "verdict": _verdict(None, []), "other_models": others,
                        "interval_s": self.interval_s, "unscorable": self.unscorable}  # fmt: skip
            buckets = [card.over(lo, hi) for lo, hi in horizon_buckets(card.horizon)]
            whole = card.over(1, card.horizon)
            return {
                "product": self.product,
                "model": self.model,
                "interval_s": self.interval_s,
                "horizon": card.horizon,
                "forecasts": card.forecasts,
                "pending": pending,
                "skipped_partial": card.skipped_partial,
                "buckets": buckets,
                "all": whole,
                "by_step": card.by_step(),
                "verdict": _verdict(whole, buckets),
                "other_models": others,
                "unscorable": self.unscorable,
            }

    def brief(self, *, short: bool = False) -> str:
        """One clause for a status line (``short``: the ratio and hit rate only, for a
        narrow terminal)."""
        summary = self.summary()
        whole = summary["all"]
        if not whole or not whole["scored"]:
            return "nothing scored yet" if short else "scorecard: nothing scored yet"
        mae, hits = whole["mae"], whole["hit_rate"]["model"]
        ratio = whole["model_vs_random_walk"]
        if short:
            return (
                f"MAE {ratio:.2f}x random walk"
                if ratio is not None
                else f"MAE {_number(mae['model'])}"
            ) + (f", hits {hits:.0%}" if hits is not None else "")
        return (
            f"scorecard {_count(summary['forecasts'], 'forecast')}, "
            f"{_count(whole['scored'], 'step')}: MAE "
            f"{_number(mae['model'])} vs random walk {_number(mae['random_walk'])}"
            + (f" ({ratio:.2f}x)" if ratio is not None else "")
            + (f", hits {hits:.0%}" if hits is not None else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything summed so far and the forecasts in flight, for the recording: a
        restart mid-horizon goes on scoring them at the bars that come after it."""
        with self._lock:
            return {
                "version": FORMAT_VERSION,
                "product": self.product,
                "interval_s": self.interval_s,
                "model": self.model,
                "unscorable": self.unscorable,
                "cards": {name: card.to_dict() for name, card in self._cards.items()},
                "pending": [pending.to_dict() for pending in self._pending],
            }

    @classmethod
    def from_dict(cls, data: Any, product: str, *, interval_s: int = 60) -> Scorecard:
        """A stored scorecard to go on with; a new one when there is none, or when it is of
        another interval or cannot be read (said in the log: the recording is left as is)."""
        card = cls(product, interval_s)
        if data is None:
            return card
        try:
            if data["version"] != FORMAT_VERSION or data["interval_s"] != interval_s:
                raise ValueError(
                    f"version {data['version']}, {data['interval_s']} s bars; this run: "
                    f"version {FORMAT_VERSION}, {interval_s} s bars"
                )
            card._cards = {name: _Card.from_dict(c) for name, c in data["cards"].items()}
            card.model = data["model"] if data["model"] in card._cards else None
            card.unscorable = int(data.get("unscorable", 0))
            card._pending = deque(
                _Pending.from_dict(p, card._cards) for p in data.get("pending", [])
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: the stored scorecard is not used (%s); scoring starts afresh",
                        product, exc)  # fmt: skip
            return cls(product, interval_s)
        return card


def summaries(streams: Mapping[str, Any]) -> dict[str, Any]:
    """Each product's scorecard summary, from its stream (``ProductStream.scorecard``);
    streams without a scorecard are left out."""
    return {
        product: stream.scorecard.summary()
        for product, stream in list(streams.items())
        if stream.scorecard is not None
    }


def format_table(summary: dict[str, Any]) -> str:
    """A summary as a plain-text table (``ovcast replay``'s report)."""
    head = f"{summary['product']}, model {summary['model']}: "
    if not summary["buckets"]:
        return head + summary["verdict"]
    lines = [
        head + f"{_count(summary['forecasts'], 'forecast')} scored over "
        f"{_count(summary['all']['scored'], 'step')}; MAE of the close in price "
        "(lower is better)",
        f"  {'steps':<7}{'scored':>8}{'model':>12}{'random walk':>13}{'drift':>12}"
        f"{'model/RW':>10}{'hits model':>12}{'hits drift':>12}",
    ]
    for row in [*summary["buckets"], {**summary["all"], "steps": "all"}]:
        mae, hits, ratio = row["mae"], row["hit_rate"], row["model_vs_random_walk"]
        lines.append(
            f"  {row['steps']:<7}{row['scored']:>8}{_number(mae['model']):>12}"
            f"{_number(mae['random_walk']):>13}{_number(mae['drift']):>12}"
            f"{'-' if ratio is None else f'{ratio:.2f}x':>10}"
            f"{_percent(hits['model']):>12}{_percent(hits['drift']):>12}"
        )
    lines.append(f"  {summary['verdict']}")
    skipped = summary["skipped_partial"]
    lines.append(
        "  filled bars (no trades) are scored at the last price; partial bars never are"
        + (f" ({_count(skipped, 'step')} skipped)" if skipped else "")
        + "; the random walk calls no moves, so it has no hit rate"
        + (
            f"; {_count(summary['unscorable'], 'forecast')} not scored (NaN or infinite)"
            if summary["unscorable"]
            else ""
        )  # fmt: skip
    )
    return "\n".join(lines)


def _verdict(whole: dict[str, Any] | None, buckets: list[dict[str, Any]]) -> str:
    """Who forecast better, in words; a tie within 1% is said as one, and a verdict on few
    steps says so."""
    if not whole or not whole["scored"]:
        return "nothing scored yet: a forecast's first step is scored when the next bar closes"
    verdict = _who_won(whole, buckets)
    scored = whole["scored"]
    if scored < FEW:
        verdict += f" (so far: {_count(scored, 'step')} scored, too few to judge)"
    return verdict


def _who_won(whole: dict[str, Any], buckets: list[dict[str, Any]]) -> str:
    ratio = whole["model_vs_random_walk"]
    wins = [
        b["steps"]
        for b in buckets
        if b["model_vs_random_walk"] is not None and b["model_vs_random_walk"] < 1 - TIE
    ]
    if ratio is None:  # the random walk was exact on every scored step: a market that stood
        return "the random walk was exact on every scored step (the price did not move)"
    if ratio > 1 + TIE:
        said = f"the random walk beats the model overall (model MAE {ratio:.2f}x the random walk's)"
        return said + (f"; the model is ahead at steps {', '.join(wins)}" if wins else "")
    if ratio < 1 - TIE:
        return f"the model beats the random walk overall (MAE {ratio:.2f}x the random walk's)"
    return f"the model is within 1% of (no better than) the random walk (MAE {ratio:.2f}x)"


def _per_forecaster(values: np.ndarray) -> dict[str, float | None]:
    return dict(zip(FORECASTERS, _floats(values), strict=True))


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _ratio(model: float, random_walk: float) -> float | None:
    if not (math.isfinite(model) and math.isfinite(random_walk)) or random_walk == 0:
        return None
    return round(float(model / random_walk), 4)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
