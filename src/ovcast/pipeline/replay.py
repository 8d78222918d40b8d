"""Replay: the bars of a recording through the live pipeline's per-product code.

    replay(recording, engine, sink=print, products=["BTC-USD"], pace=Pace(60, 60))

Products are interleaved in bar-time order, as they happened. The scaler stored in the
recording is used; a recording without one gets scalers fitted on its first ``fit_bars``
bars (the same every time), and says so; the recording is only read, never changed. With a
``pace``, bars after the warm-up come at ``speed`` times real time, so a dashboard can be
watched; warm-up is instant. Holes in the recorded bars are never run over as if the bars
were consecutive (``ProductStream``): each is logged and counted in ``ReplayProgress``.
Every stream keeps a scorecard of the forecasts it made (``streams[p].scorecard``), so a
recorded day is scored offline.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from ..market.aggregator import Bar
from ..market.recording import Recording
from ..runtime.engine import Engine
from ..scaling import Scaler
from .scorecard import Scorecard
from .stream import ProductStream, fit_market_scaler, usable

log = logging.getLogger(__name__)


@dataclass
class Pace:
    interval_s: int
    speed: float  # times real time; one bar every interval_s / speed seconds

    def wait(self, stop: threading.Event) -> bool:
        """Sleep one bar's worth; False when ``stop`` is set meanwhile."""
        return not stop.wait(self.interval_s / self.speed)


@dataclass
class ReplayProgress:
    """How far a replay is, for the dashboard's feed panel (it has no connection to show)."""

    source: str
    total_bars: int = 0
    replayed_bars: int = 0
    finished: bool = False
    streams: dict[str, ProductStream] | None = None

    def summary(self) -> dict[str, Any]:
        streams = (self.streams or {}).values()
        return {
            "source": f"replay of {self.source}",
            "state": "finished" if self.finished else "replaying",
            "replayed_bars": self.replayed_bars,
            "total_bars": self.total_bars,
            "holes": sum(s.holes for s in streams),
            "missing_bars": sum(s.hole_bars for s in streams),
        }


def stored_or_fitted_scaler(recording: Recording, product: str, fit_bars: int) -> Scaler:
    stored = recording.meta(f"scaler:{product}")
    if stored is not None:
        return Scaler.from_dict(stored)
    bars = recording.bars(product)[:fit_bars]
    scaler = fit_market_scaler(bars)
    log.warning("%s: no stored scaler; fitted on the first %d bars", product, len(bars))
    return scaler


def replay(
    recording: Recording,
    engine: Engine,
    *,
    sink: Callable[[dict[str, Any]], None],
    products: list[str] | None = None,
    interval_s: int = 60,
    fit_bars: int = 1000,
    on_bar: Callable[[str, Bar], None] | None = None,
    pace: Pace | None = None,
    stop: threading.Event | None = None,
    progress: ReplayProgress | None = None,
) -> dict[str, ProductStream]:
    """Run the recording's bars (until ``stop`` is set); every forecast record goes to
    ``sink``. Returns the streams."""
    stop = stop or threading.Event()
    products = products or recording.products()
    if not products:
        raise DataError(f"{recording.path} holds no bars")
    streams: dict[str, ProductStream] = {}
    series: list[list[tuple[str, Bar]]] = []
    for product in products:
        bars = recording.bars(product)
        if not bars:
            raise DataError(f"{recording.path} holds no bars of {product}")
        scaler = stored_or_fitted_scaler(recording, product, fit_bars)
        streams[product] = ProductStream(
            product, engine, scaler, interval_s=interval_s, scorecard=Scorecard(product, interval_s)
        )
        series.append([(product, bar) for bar in bars])
    progress = progress or ReplayProgress(str(recording.path))
    progress.total_bars = sum(len(bars) for bars in series)
    progress.streams = streams
    last_time, forecasting = None, False
    for product, bar in heapq.merge(*series, key=lambda item: item[1].start_s):
        if stop.is_set():
            break
        if pace is not None and forecasting and bar.start_s != last_time and not pace.wait(stop):
            break
        last_time = bar.start_s
        progress.replayed_bars += 1
        if on_bar is not None and usable(bar):  # an out-of-range bar never reaches the page
            on_bar(product, bar)
        record = streams[product].on_bar(bar)
        if record is not None:
            forecasting = True
            sink(record)
    progress.finished = not stop.is_set()
    for product, stream in streams.items():
        holes = f"; {stream.holes} holes ({stream.hole_bars} bars missing)" if stream.holes else ""
        log.info("%s: %d bars, %d forecasts%s", product, stream.bars, stream.forecasts, holes)
    return streams
