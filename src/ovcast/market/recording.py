"""The recording: every trade and bar, on disk before it counts as processed.

SQLite in WAL mode: a crash mid-write loses at most the transaction being written, readers
never block the writer, and a recording reads back fast by (product, time). Trades are
keyed by (product, trade_id), so a trade seen twice (resubscribe, REST repair, restart)
is stored once. Prices stay exact (stored as decimal text). The recording is also the
fine-tuning data set (``ovcast finetune`` reads its bars) and what ``ovcast replay`` runs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from .aggregator import Bar
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
    filled INTEGER NOT NULL, PRIMARY KEY (product_id, start_s)
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

    def add_bar(self, product_id: str, bar: Bar) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )

    def bars(self, product_id: str) -> list[Bar]:
        rows = self._db.execute(
            "SELECT start_s, open, high, low, close, volume, trades, filled FROM bars "
            "WHERE product_id = ? ORDER BY start_s",
            (product_id,),
        )
        return [
            Bar(s, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v), n, bool(f))
            for s, o, h, lo, c, v, n, f in rows
        ]

    def trades(self, product_id: str) -> Iterator[Trade]:
        rows = self._db.execute(
            "SELECT trade_id, time_s, price, size, side FROM trades WHERE product_id = ? ORDER BY time_s",
            (product_id,),
        )
        for trade_id, time_s, price, size, side in rows:
            yield Trade(product_id, trade_id, time_s, Decimal(price), Decimal(size), side)

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
