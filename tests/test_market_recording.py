"""The recording: durable, deduplicated, exact, and readable after a crash mid-run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal as D

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
