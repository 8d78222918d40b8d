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

One writer per recording: a writer holds an exclusive lock (``flock``) on the file for as
long as it is open; a second one is refused with a clear error, and a crash releases the
lock with the process. Readers (``Recording(path, readonly=True)``: replay, export,
finetune, features) open it read-only, so reading never changes a file, and take no lock
(SQLite's WAL lets them read while live writes). Both refuse, in one line, what is not an
ovcast recording: a missing file (readers), a directory, a file that is not SQLite, a
SQLite database without a recording's tables.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .aggregator import Bar
from .bars import Bars
from .coinbase import Trade

try:
    import fcntl
except ImportError:  # not POSIX: no lock (ovcast live targets Linux)
    fcntl = None  # type: ignore[assignment]

TABLES = {
    "trades": """CREATE TABLE IF NOT EXISTS trades (
    product_id TEXT NOT NULL, trade_id TEXT NOT NULL, time_s REAL NOT NULL,
    price TEXT NOT NULL, size TEXT NOT NULL, side TEXT NOT NULL,
    PRIMARY KEY (product_id, trade_id)
)""",
    "bars": """CREATE TABLE IF NOT EXISTS bars (
    product_id TEXT NOT NULL, start_s INTEGER NOT NULL, open TEXT NOT NULL, high TEXT NOT NULL,
    low TEXT NOT NULL, close TEXT NOT NULL, volume TEXT NOT NULL, trades INTEGER NOT NULL,
    filled INTEGER NOT NULL, partial INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (product_id, start_s)
)""",
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
}
INDEXES = "CREATE INDEX IF NOT EXISTS trades_by_time ON trades (product_id, time_s)"
REQUIRED_COLUMNS = {
    "trades": {"product_id", "trade_id", "time_s", "price", "size", "side"},
    "bars": {"product_id", "start_s", "open", "high", "low", "close", "volume", "trades", "filled"},
}


class Recording:
    """Append-only store of trades, bars and run metadata (scalers, settings)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open (a writer: create if absent, and lock) or, ``readonly``, read an existing
        recording; ``DataError`` naming the problem if it is not one."""
        self.path = Path(path)
        self.readonly = readonly
        self._lock: int | None = None
        if self.path.is_dir():
            raise DataError(f"{self.path} is a directory, not a recording (a SQLite file)")
        if readonly:
            if not self.path.exists():
                raise DataError(f"no recording at {self.path}")
            self._db = self._connect_readonly()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock = _lock(self.path)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            except OSError as exc:
                self._unlock()
                raise DataError(f"cannot open the recording {self.path}: {exc.strerror}") from None
        try:
            tables = self._check()
            if readonly:  # a table it never had reads as empty (the file is not touched)
                for name in TABLES.keys() - tables.keys():
                    self._db.execute(TABLES[name].replace("CREATE TABLE", "CREATE TEMP TABLE"))
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                # durable at each WAL checkpoint; never a torn database
                self._db.execute("PRAGMA synchronous=NORMAL")
                for ddl in (*TABLES.values(), INDEXES):
                    self._db.execute(ddl)
        except sqlite3.Error as exc:
            self.close()
            raise DataError(f"{self.path} is not a usable recording: {exc}") from None
        except DataError:
            self.close()
            raise
        columns = tables.get("bars", set())
        self._partial_column = "partial" in columns or not columns
        if not readonly and not self._partial_column:  # recorded before the partial mark
            self._db.execute("ALTER TABLE bars ADD COLUMN partial INTEGER NOT NULL DEFAULT 0")
            self._partial_column = True

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc):
                raise DataError(f"cannot read the recording {self.path}: {exc}") from None
            # A WAL recording in a folder we cannot write (no -shm can be made): no writer
            # can be at work there either, so it is read as it stands.
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a recording (a SQLite file): {exc}") from None

    def _check(self) -> dict[str, set[str]]:
        """The recording's tables and columns; ``DataError`` if it is some other database."""
        try:
            names = [r[0] for r in self._db.execute("SELECT name FROM sqlite_master")]
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a recording (a SQLite file): {exc}") from None
        tables = {
            name: {row[1] for row in self._db.execute(f"PRAGMA table_info({name!r})")}
            for name in names
            if name in TABLES
        }
        if not names and not self.readonly:
            return tables  # a new (or empty) file: this writer makes it a recording
        found = [name for name in REQUIRED_COLUMNS if name in tables]
        wrong = [
            f"{name} lacks {', '.join(sorted(REQUIRED_COLUMNS[name] - tables[name]))}"
            for name in found
            if REQUIRED_COLUMNS[name] - tables[name]
        ]
        if not names and self.path.stat().st_size == 0:
            raise DataError(f"{self.path} is an empty file, not an ovcast recording")
        if not found or wrong:
            held = f"tables {sorted(names)}" if names else "no tables"
            raise DataError(
                f"{self.path} is not an ovcast recording: a SQLite file with {held}"
                + (f" ({'; '.join(wrong)})" if wrong else "")
                + "; 'ovcast live --recording' writes recordings"
            )
        return tables

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

    def mark_partial(self, product_id: str, start_s: int) -> bool:
        """A recorded bar turned out to lack trades (a late trade, an unrepaired hole).
        True if that changed it (it was recorded and not yet marked)."""
        cursor = self._db.execute(
            "UPDATE bars SET partial = 1 WHERE product_id = ? AND start_s = ? AND partial = 0",
            (product_id, start_s),
        )
        return cursor.rowcount == 1

    def bars(self, product_id: str) -> list[Bar]:
        partial = "partial" if self._partial_column else "0"
        rows = self._db.execute(
            f"SELECT start_s, open, high, low, close, volume, trades, filled, {partial} FROM bars "
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
        if getattr(self, "_db", None) is not None:
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # after the connection: SQLite's own locks are gone by then
            self._lock = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(path: Path) -> int | None:
    """An exclusive lock on the recording for this writer's lifetime (the descriptor)."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataError(
            f"{path} is being recorded by another process (one 'ovcast live' per "
            "recording): stop that one first, or give this one another --recording"
        ) from None
    return fd
