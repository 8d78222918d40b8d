"""The recording: durable, deduplicated, exact, and readable after a crash mid-run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal as D

import pytest

from ovcast.errors import DataError
from ovcast.market.aggregator import Bar
from ovcast.market.coinbase import Trade
from ovcast.market.recording import Recording


def test_trades_are_stored_once_and_exactly(tmp_path):
    with Recording(tmp_path / "r.db") as rec:
        trade = Trade("BTC-USD", "10", 1.5, D("43000.123456789"), D("0.00000001"), "buy")
        assert rec.add_trade(trade) is True
        assert rec.add_trade(trade) is False  # a resubscribe repeat
        rec.add_bar("BTC-USD", Bar(60, D("1.1"), D("2.2"), D("0.9"), D("2.0"), D("3.3"), 4))
        rec.add_bar("BTC-USD", Bar(0, D("1"), D("1"), D("1"), D("1"), filled=True))
        rec.set_meta("scaler:BTC-USD", {"channels": []})
    with Recording(tmp_path / "r.db") as rec:
        assert list(rec.trades("BTC-USD")) == [trade]
        assert [b.start_s for b in rec.bars("BTC-USD")] == [0, 60]
        assert rec.bars("BTC-USD")[0].filled and rec.bars("BTC-USD")[1].volume == D("3.3")
        assert rec.meta("scaler:BTC-USD") == {"channels": []} and rec.products() == ["BTC-USD"]


def test_a_killed_writer_leaves_a_readable_recording(tmp_path):
    path = tmp_path / "crash.db"
    code = textwrap.dedent(f"""
        import os
        from decimal import Decimal as D
        from ovcast.market.coinbase import Trade
        from ovcast.market.recording import Recording
        rec = Recording({str(path)!r})
        for i in range(500):
            rec.add_trade(Trade("BTC-USD", str(i), float(i), D("1"), D("1")))
        os._exit(9)  # no close, no cleanup: as if killed
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with Recording(path) as rec:
        assert len(list(rec.trades("BTC-USD"))) == 500  # every acknowledged trade is there


def test_partial_marks_are_stored_read_back_as_masks_and_old_recordings_migrate(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a recording from before bars had the partial mark
        db.executescript(
            "CREATE TABLE bars (product_id TEXT NOT NULL, start_s INTEGER NOT NULL, open TEXT "
            "NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL, close TEXT NOT NULL, volume TEXT "
            "NOT NULL, trades INTEGER NOT NULL, filled INTEGER NOT NULL, "
            "PRIMARY KEY (product_id, start_s));"
            "INSERT INTO bars VALUES ('BTC-USD', 0, '1', '1', '1', '1', '2', 3, 0);"
        )
    with Recording(path) as rec:
        rec.add_bar("BTC-USD", Bar(60, D("1"), D("1"), D("1"), D("1"), filled=True))
        rec.add_bar("BTC-USD", Bar(120, D("2"), D("3"), D("1"), D("2.5"), D("4"), 2, partial=True))
        rec.add_bar("BTC-USD", Bar(180, D("2"), D("3"), D("1"), D("2.5"), D("4"), 2))
        rec.mark_partial("BTC-USD", 180)  # a late trade it missed
        bars = rec.read_bars("BTC-USD")
        assert bars.time_s.tolist() == [0, 60, 120, 180]
        assert bars.filled.tolist() == [False, True, False, False]
        assert bars.partial.tolist() == [False, False, True, True]
        assert bars.close.tolist() == [1.0, 1.0, 2.5, 2.5] and bars.volume[0] == 2.0
        assert len(rec.read_bars("ETH-USD")) == 0
        with pytest.raises(RuntimeError):  # a failed batch leaves nothing behind
            with rec.transaction():
                rec.add_trade(Trade("BTC-USD", "1", 1.0, D("1"), D("1")))
                raise RuntimeError("crash mid-batch")
        assert list(rec.trades("BTC-USD")) == [] and rec.last_trade("BTC-USD") is None
        rec.add_trades([Trade("BTC-USD", str(i), float(i), D("1"), D("1")) for i in (9, 10, 8)])
        assert rec.last_trade("BTC-USD").trade_id == "10"  # numerically, not as text
        assert [t.trade_id for t in rec.trades("BTC-USD", since_s=9.0)] == ["9", "10"]


def test_export_bars_and_trades_exactly_to_csv_and_parquet(tmp_path):
    import csv

    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet export needs pyarrow")
    path = tmp_path / "r.db"
    with Recording(path) as rec:
        rec.add_trade(Trade("BTC-USD", "7", 60.25, D("43000.123456789"), D("0.00000001"), "buy"))
        rec.add_bar("BTC-USD", Bar(60, D("43000.123456789"), D("43000.2"), D("42999.9"),
                                   D("43000.1"), D("0.00000001"), 1, partial=True))  # fmt: skip
        rec.add_bar("BTC-USD", Bar(120, *[D("43000.1")] * 4, filled=True))
    out = subprocess.run(
        [sys.executable, "-m", "ovcast", "export", str(path), "--what", "bars",
         "--out", str(tmp_path / "bars.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "bars.csv")))
    assert rows[0]["time"] == "1970-01-01T00:01:00Z" and rows[0]["open"] == "43000.123456789"
    assert (rows[0]["partial"], rows[0]["filled"], rows[1]["filled"]) == ("1", "0", "1")
    from ovcast.market.export import export

    with Recording(path) as rec:
        assert export(rec, "BTC-USD", what="trades", out=tmp_path / "t.parquet") == 1
        with pytest.raises(DataError, match="no data of ETH-USD"):
            export(rec, "ETH-USD", what="bars", out=tmp_path / "e.csv")
        with pytest.raises(DataError, match=r"\.csv or \.parquet"):
            export(rec, "BTC-USD", what="bars", out=tmp_path / "x.txt")
    table = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert table == [{"time": "1970-01-01T00:01:00.250000Z", "time_s": "60.250000",
                      "trade_id": "7", "price": "43000.123456789", "size": "0.00000001",
                      "side": "buy"}]  # fmt: skip
    bad = subprocess.run(
        [sys.executable, "-m", "ovcast", "export", str(tmp_path / "none.db"), "--out", "x.csv"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1 and "no recording at" in bad.stderr


# -- attack report 12, and the reader that wrote --------------------------------------------


def test_one_writer_per_recording_and_a_crash_releases_the_lock(tmp_path):
    """Two writers on one recording overwrote each other's bars. The second is refused with a
    clear error while the first lives; `kill -9` of the first frees the recording."""
    path = tmp_path / "r.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from ovcast.market.recording import Recording
            rec = Recording({str(path)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match="being recorded by another process"):
            Recording(path)
        with Recording(path, readonly=True) as reader:  # readers take no lock
            assert reader.products() == []
    finally:
        holder.kill()
        holder.wait(10)
    with Recording(path) as rec:  # the crash released it
        rec.add_bar("BTC-USD", Bar(0, D(1), D(1), D(1), D(1)))


def test_readers_never_write_and_refuse_what_is_not_a_recording(tmp_path, capsys):
    """Any SQLite file given as a recording (export, replay, finetune, features) got tables
    added and WAL mode switched on, then "a recording without bars yet". Readers now open
    read-only and say what the file is."""
    import sqlite3

    from ovcast.cli import main
    from ovcast.train.data import load_bars

    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    before = foreign.read_bytes()
    with pytest.raises(DataError, match="not an ovcast recording: a SQLite file with tables"):
        Recording(foreign, readonly=True)
    with pytest.raises(DataError, match="not an ovcast recording"):
        load_bars(foreign)  # fine-tuning and `ovcast features` read through here
    with pytest.raises(DataError, match="not an ovcast recording"):
        Recording(foreign)  # nor does a writer take it over
    assert main(["export", str(foreign), "--out", str(tmp_path / "x.csv")]) == 1
    assert "not an ovcast recording" in capsys.readouterr().err
    assert foreign.read_bytes() == before and not (tmp_path / "app.db-wal").exists()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for path, expected in (
        (garbage, r"is not a recording \(a SQLite file\)"),
        (empty, "is an empty file"),
        (tmp_path, "is a directory"),
        (tmp_path / "typo.db", "no recording at"),
    ):
        with pytest.raises(DataError, match=expected):
            Recording(path, readonly=True)
    assert not (tmp_path / "typo.db").exists()  # looking did not create it
    with pytest.raises(DataError, match="is not a recording"):
        Recording(garbage)  # a writer refuses it too

    old = tmp_path / "old.db"  # made before bars had the partial mark: read as it is
    with sqlite3.connect(old) as db:
        db.execute(
            "CREATE TABLE bars (product_id TEXT, start_s INTEGER, open TEXT, high TEXT, "
            "low TEXT, close TEXT, volume TEXT, trades INTEGER, filled INTEGER)"
        )
        db.execute("INSERT INTO bars VALUES ('BTC-USD', 60, '1', '1', '1', '1', '2', 3, 0)")
    before = old.read_bytes()
    with Recording(old, readonly=True) as rec:
        assert rec.products() == ["BTC-USD"] and rec.read_bars("BTC-USD").partial.tolist() == [0]
        assert list(rec.trades("BTC-USD")) == [] and rec.meta("scaler:BTC-USD") is None
    assert old.read_bytes() == before


def test_cli_file_and_option_problems_are_one_clear_line(tmp_path, capsys, market_package):
    """Each was a traceback, a retry forever, or silently accepted."""
    from ovcast.cli import main

    good = tmp_path / "good.db"
    with Recording(good) as rec:
        rec.add_bar("BTC-USD", Bar(60, D("1"), D("1"), D("1"), D("1"), D("0.00000002"), 1))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    live = ["live", "--product", "BTC-USD", "--model", str(market_package),
            "--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9"]  # fmt: skip
    cases = [
        (["export", str(good), "--out", str(tmp_path / "no" / "x.csv")], "cannot write"),
        (["export", str(good), "--out", "/proc/x.csv"], "cannot write"),
        (["export", str(good), "--out", str(tmp_path)], "it is a directory"),
        (["export", str(good), "--out", str(tmp_path / "x.txt")], "must end in .csv or .parquet"),
        (["export", str(garbage), "--out", str(tmp_path / "g.csv")], "is not a recording"),
        (["export", str(tmp_path), "--out", str(tmp_path / "d.csv")], "is a directory"),
        (["replay", str(tmp_path / "typo.db"), "--model", str(market_package)], "no recording at"),
        (["replay", str(good), "--model", str(market_package), "--speed", "nan"], "--speed"),
        (["replay", str(good), "--model", str(market_package), "--out", str(good)], "--out"),
        ([*live, "--grace", "nan"], "--grace must be"),
        ([*live, "--max-ahead", "nan"], "--max-ahead must be"),
        ([*live, "--backfill-bars", "-5"], "--backfill-bars must be"),
        ([*live, "--product", ""], "--product must name"),
        ([*live, "--ws-url", "http://127.0.0.1:9"], "--ws-url must be a WebSocket URL"),
        ([*live, "--feed", "advanced", "--rest-url", ""], "--rest-url (Exchange REST) is needed"),
        ([*live, "--out", str(tmp_path / "no" / "f.jsonl")], "cannot write"),
        ([*live, "--recording", str(good), "--out", str(good)], "--out must not be"),
        ([*live, "--recording", str(tmp_path)], "is a directory"),
        ([*live, "--recording", str(garbage)], "is not a recording"),
    ]
    for args, expected in cases:
        assert main(args) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1] and "Traceback" not in "".join(err), (args, err)
    assert not (tmp_path / "typo.db").exists()
    assert main(["export", str(good), "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_text().splitlines()[1].split(",")[6] == "0.00000002"
