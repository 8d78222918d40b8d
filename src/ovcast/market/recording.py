"""The recording: every trade and bar, on disk before it counts as processed.

SQLite in WAL mode: a crash mid-write loses at most the transaction being written, readers
never block the writer, and a recording reads back fast by (product, time). Trades are
keyed by (product, trade_id), so a trade seen twice (resubscribe, REST repair, restart)
is stored once. Prices stay exact (stored as decimal text). The recording is also the
fine-tuning data set (``ovcast finetune`` reads ``read_bars``) and what ``ovcast replay``
runs.

Bars carry two marks: ``filled`` (no trades in the interval: flat at the previous close)
and ``partial`` (trades may be missing: a start-up minute that could not be proven
complete, a hole REST could not repair, a late trade it missed). Partial bars must never
be scored or trained on; ``read_bars`` returns both marks.

One connection, used by one thread at a time (the live pipeline's writer thread); batches
of writes go in one transaction (``transaction()``) so a crash loses at most that batch,
which the next start repairs over REST.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from .aggregator import Bar
from .bars import Bars
from .coinbase import Trade

SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    product_id TEXT NOT NULL, trade_id TEXT NOT NULL, time_s REAL NOT NULL,
    price TEXT NOT NULL, size TEXT NOT NULL, side TEXT NOT NULL,
    PRIMARY KEY (product_id, trade_id)
);
CREATE INDEX IF NOT EXISTS trades_by_time ON trades (product_id, time_s);
CREATE TABLE IF NOT EXISTS bars (
    product_id TEXT NOT NULL, start_s INTEGER NOT NULL, open TEXT NOT NULL, high TEXT NOT NULL,
    low TEXT NOT NULL, close TEXT NOT NULL, volume TEXT NOT NULL, trades INTEGER NOT NULL,
    filled INTEGER NOT NULL, partial INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (product_id, start_s)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Recording:
    """Append-only store of trades, bars and run metadata (scalers, settings)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; no torn DB
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(bars)")}
        if "partial" not in columns:  # a recording made before bars had the partial mark
            self._db.execute("ALTER TABLE bars ADD COLUMN partial INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside is committed together (or not at all)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_trade(self, trade: Trade) -> bool:
        """Store a trade; False if it was already recorded."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO trades VALUES (?, ?, ?, ?, ?, ?)",
            (
                trade.product_id,
                trade.trade_id,
                trade.time_s,
                str(trade.price),
                str(trade.size),
                trade.side,
            ),
        )
        return cursor.rowcount == 1

    def add_trades(self, trades: Iterable[Trade]) -> int:
        """Store trades; returns how many were new."""
        return sum(self.add_trade(t) for t in trades)

    def add_bar(self, product_id: str, bar: Bar) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                product_id,
                bar.start_s,
                str(bar.open),
                str(bar.high),
                str(bar.low),
                str(bar.close),
                str(bar.volume),
                bar.trades,
                int(bar.filled),
                int(bar.partial),
            ),
        )

    def mark_partial(self, product_id: str, start_s: int) -> None:
        """A recorded bar turned out to lack trades (a late trade, an unrepaired hole)."""
        self._db.execute(
            "UPDATE bars SET partial = 1 WHERE product_id = ? AND start_s = ?",
            (product_id, start_s),
        )

    def bars(self, product_id: str) -> list[Bar]:
        rows = self._db.execute(
            "SELECT start_s, open, high, low, close, volume, trades, filled, partial FROM bars "
            "WHERE product_id = ? ORDER BY start_s",
            (product_id,),
        )
        return [
            Bar(s, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v), n, bool(f), bool(p))
            for s, o, h, lo, c, v, n, f, p in rows
        ]

    def read_bars(self, product_id: str) -> Bars:
        """One product's bars as arrays, with the ``filled`` and ``partial`` masks (for
        fine-tuning: exclude both from scored targets)."""
        bars = self.bars(product_id)
        o, h, lo, c, v = np.array([b.as_floats() for b in bars], dtype=np.float64).reshape(-1, 5).T
        return Bars(
            np.array([b.start_s for b in bars], dtype=np.int64),
            o,
            h,
            lo,
            c,
            v,
            np.array([b.filled for b in bars], dtype=bool),
            np.array([b.partial for b in bars], dtype=bool),
        )

    def trades(self, product_id: str, since_s: float | None = None) -> Iterator[Trade]:
        """Trades of one product in time order (from ``since_s`` on, if given)."""
        rows = self._db.execute(
            "SELECT trade_id, time_s, price, size, side FROM trades "
            "WHERE product_id = ? AND time_s >= ? ORDER BY time_s, CAST(trade_id AS INTEGER)",
            (product_id, float("-inf") if since_s is None else since_s),
        )
        for trade_id, time_s, price, size, side in rows:
            yield Trade(product_id, trade_id, time_s, Decimal(price), Decimal(size), side)

    def has_trade(self, product_id: str, trade_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM trades WHERE product_id = ? AND trade_id = ?", (product_id, trade_id)
        ).fetchone()
        return row is not None

    def last_trade(self, product_id: str) -> Trade | None:
        """The recorded trade with the highest numeric id (None if none is numeric)."""
        row = self._db.execute(
            "SELECT trade_id, time_s, price, size, side FROM trades "
            "WHERE product_id = ? AND trade_id GLOB '[0-9]*' AND NOT trade_id GLOB '*[^0-9]*' "
            "ORDER BY CAST(trade_id AS INTEGER) DESC LIMIT 1",
            (product_id,),
        ).fetchone()
        if row is None:
            return None
        trade_id, time_s, price, size, side = row
        return Trade(product_id, trade_id, time_s, Decimal(price), Decimal(size), side)

    def products(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT product_id FROM bars UNION SELECT DISTINCT product_id FROM trades"
        )
        return sorted(r[0] for r in rows)

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
