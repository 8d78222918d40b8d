"""What the dashboard shows, kept up to date by the pipeline and read by the page's streams.

    state = DashboardState(model=lambda: {...}, feed=pipeline.feed_summary)
    state.add_bar("BTC-USD", bar)          # every closed bar (history included)
    state.add_forecast(record)             # every forecast record, as the sink gets it
    state.status(); state.scorecard()      # the panels, and each product's forecast scorecard
    cursor, events = state.wait(cursor)    # a page's stream: new events, or None to resync

Writers (the live pipeline's event loop, or replay's thread) and readers (one HTTP thread
per open page) meet under one lock. Events are serialised once, kept in a bounded ring and
numbered; a page that falls further behind than the ring gets a fresh snapshot instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from ..market.aggregator import Bar
from ..pipeline.scorecard import RULES
from ..serve.metrics import LATENCY_BUCKETS_S

MAX_BARS = 300  # per product: five hours of minute bars, plenty for a glance
LATENCY_SAMPLES = 1000  # the latest forecasts' inference times behind p50/p99 and the histogram
LATENCY_BUCKETS_MS = tuple(round(b * 1e3, 3) for b in LATENCY_BUCKETS_S)
EVENT_RING = 2048

Event = tuple[int, str, bytes]  # (sequence number, event name, JSON payload)


def bar_point(bar: Bar) -> dict[str, Any]:
    """A bar as the chart wants it: UTC seconds and floats."""
    _open, high, low, close, volume = bar.as_floats()
    return {
        "time": bar.start_s,
        "open": _open,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "filled": bar.filled,
        "partial": bar.partial,
    }


def forecast_line(record: dict[str, Any]) -> dict[str, Any]:
    """A forecast record as a line that starts at the bar it was made from."""
    return {
        "bar_time": record["bar_time_s"],
        "time": [record["bar_time_s"], *record["forecast_time_s"]],
        "value": [record["bar_close"], *record["forecast_close"]],
        "model": record["model"],
        "inference_ms": record["inference_ms"],
    }


def latency_summary(samples_ms: list[float]) -> dict[str, Any]:
    """p50/p99 and a histogram (counts per LATENCY_BUCKETS_MS upper bound, then overflow)."""
    if not samples_ms:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "buckets_ms": LATENCY_BUCKETS_MS,
                "counts": [0] * (len(LATENCY_BUCKETS_MS) + 1)}  # fmt: skip
    values = np.asarray(samples_ms)
    counts = np.bincount(
        np.searchsorted(LATENCY_BUCKETS_MS, values, side="left"),
        minlength=len(LATENCY_BUCKETS_MS) + 1,
    )
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "buckets_ms": LATENCY_BUCKETS_MS,
        "counts": counts.tolist(),
    }


class _Product:
    def __init__(self) -> None:
        self.bars: deque[dict[str, Any]] = deque(maxlen=MAX_BARS)
        self.forecast: dict[str, Any] | None = None
        self.bar_count = 0
        self.forecast_count = 0


class DashboardState:
    def __init__(
        self,
        *,
        model: Callable[[], dict[str, Any]],
        feed: Callable[[], dict[str, Any]],
        scorecards: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``model`` and ``feed`` describe the model in use and the data source, when asked;
        ``scorecards`` gives each product's scorecard summary (``pipeline.scorecard``)."""
        self._model = model
        self._feed = feed
        self._scorecards = scorecards or dict
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._products: dict[str, _Product] = {}
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._events: deque[Event] = deque(maxlen=EVENT_RING)
        self._seq = 0
        self.closed = False

    # -- writers ---------------------------------------------------------------------------
    def add_bar(self, product: str, bar: Bar) -> None:
        point = bar_point(bar)
        with self._lock:
            entry = self._products.setdefault(product, _Product())
            if entry.bars and entry.bars[-1]["time"] >= point["time"]:
                return  # already shown (e.g. a recorded bar that the backfill also returned)
            entry.bars.append(point)
            entry.bar_count += 1
            self._publish("bar", {"product": product, "bar": point})

    def add_forecast(self, record: dict[str, Any]) -> None:
        line = forecast_line(record)
        with self._lock:
            entry = self._products.setdefault(record["product"], _Product())
            entry.forecast = line
            entry.forecast_count += 1
            self._latencies_ms.append(float(record["inference_ms"]))
            self._publish("forecast", {"product": record["product"], "forecast": line})

    def close(self) -> None:
        """Wake every waiting stream so that the server can stop."""
        with self._lock:
            self.closed = True
            self._changed.notify_all()

    def _publish(self, name: str, payload: dict[str, Any]) -> None:  # lock held
        self._seq += 1
        self._events.append((self._seq, name, orjson.dumps(payload)))
        self._changed.notify_all()

    # -- readers ---------------------------------------------------------------------------
    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """(cursor, everything a page needs to draw itself from scratch)."""
        with self._lock:
            products = {
                name: {"bars": list(p.bars), "forecast": p.forecast}
                for name, p in self._products.items()
            }
            cursor = self._seq
        return cursor, {"products": products, "status": self.status()}

    def status(self) -> dict[str, Any]:
        """The health panel: data source, inference latency, model, per-product counts."""
        with self._lock:
            samples = list(self._latencies_ms)
            counts = {
                name: {"bars": p.bar_count, "forecasts": p.forecast_count}
                for name, p in self._products.items()
            }
        return {
            "time": time.time(),
            "feed": self._feed(),
            "latency": latency_summary(samples),
            "model": self._model(),
            "products": counts,
            "scorecard": self._scorecards(),
        }

    def scorecard(self) -> dict[str, Any]:
        """``/api/scorecard``: how each product's forecasts fared, and the rules they were
        scored by."""
        return {"time": time.time(), "rules": RULES, "products": self._scorecards()}

    def wait(self, cursor: int, timeout_s: float = 1.0) -> tuple[int, list[Event] | None]:
        """Events after ``cursor`` (waiting up to ``timeout_s`` for one); None: resync."""
        with self._lock:
            if self._seq == cursor and not self.closed:
                self._changed.wait(timeout_s)
            if self._seq == cursor:
                return cursor, []
            if not self._events or self._events[0][0] > cursor + 1:
                return self._seq, None  # fell behind the ring
            new = [e for e in self._events if e[0] > cursor]
            return self._seq, new
