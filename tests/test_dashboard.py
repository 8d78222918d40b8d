"""The dashboard without a browser: its state, its HTTP server and event stream, its CLI."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

from ovcast.dashboard import DashboardServer, DashboardState, tee
from ovcast.dashboard import server as server_module
from ovcast.dashboard.server import STATIC, parse_address
from ovcast.dashboard.state import EVENT_RING, LATENCY_BUCKETS_MS, MAX_BARS, latency_summary
from ovcast.errors import ServerStartError
from ovcast.market.aggregator import Bar

ROOT = Path(__file__).resolve().parent.parent


def bar(t: int, close: str = "100", filled: bool = False) -> Bar:
    c = D(close)
    return Bar(t, c, c + 1, c - 1, c, D("2.5"), 3, filled)


def record(product: str, t: int, close: float = 100.0, ms: float = 3.0) -> dict:
    return {
        "product": product,
        "bar_time_s": t,
        "bar_close": close,
        "forecast_time_s": [t + 60, t + 120],
        "forecast_close": [close + 1, close + 2],
        "model": "m",
        "inference_ms": ms,
    }


def new_state(feed=None) -> DashboardState:
    return DashboardState(model=lambda: {"name": "m"}, feed=feed or (lambda: {"connected": True}))


# -- state ----------------------------------------------------------------------------------
def test_state_keeps_recent_bars_once_and_the_latest_forecast_from_the_last_close():
    state = new_state()
    for k in range(MAX_BARS + 5):
        state.add_bar("BTC-USD", bar(60 * k, "100.5", filled=k == 3))
    state.add_bar("BTC-USD", bar(60 * 7))  # older than the last: already shown, ignored
    state.add_forecast(record("BTC-USD", 60 * (MAX_BARS + 4), 101.0))
    _, snap = state.snapshot()
    bars = snap["products"]["BTC-USD"]["bars"]
    assert len(bars) == MAX_BARS and bars[-1]["time"] == 60 * (MAX_BARS + 4)
    assert bars[0] == {"time": 300, "open": 100.5, "high": 101.5, "low": 99.5, "close": 100.5,
                       "volume": 2.5, "filled": False, "partial": False}  # fmt: skip
    line = snap["products"]["BTC-USD"]["forecast"]
    assert line["time"] == [60 * (MAX_BARS + 4), 60 * (MAX_BARS + 5), 60 * (MAX_BARS + 6)]
    assert line["value"] == [101.0, 102.0, 103.0]  # starts at the bar's close
    assert snap["status"]["products"]["BTC-USD"] == {"bars": MAX_BARS + 5, "forecasts": 1}


def test_latency_summary_percentiles_and_histogram():
    samples = [0.3] * 50 + [3.0] * 49 + [3000.0]
    summary = latency_summary(samples)
    assert summary["count"] == 100 and summary["p50_ms"] == pytest.approx(1.65)
    assert summary["p99_ms"] == pytest.approx(3.0 + 0.01 * (3000 - 3), rel=1e-3)
    counts = summary["counts"]
    assert len(counts) == len(LATENCY_BUCKETS_MS) + 1 and sum(counts) == 100
    assert counts[0] == 50  # <= 0.5 ms
    assert counts[LATENCY_BUCKETS_MS.index(4.0)] == 49  # (2, 4] ms
    assert counts[-1] == 1  # beyond the last bound
    assert latency_summary([])["p50_ms"] is None and sum(latency_summary([])["counts"]) == 0


def test_wait_returns_new_events_in_order_then_resyncs_a_reader_that_fell_behind():
    state = new_state()
    cursor, _ = state.snapshot()
    state.add_bar("A", bar(0))
    state.add_forecast(record("A", 0))
    cursor, events = state.wait(cursor, 0.01)
    assert [name for _, name, _ in events] == ["bar", "forecast"]
    assert json.loads(events[1][2])["forecast"]["bar_time"] == 0
    assert state.wait(cursor, 0.01) == (cursor, [])  # nothing new: an empty wait, not an error
    for k in range(1, EVENT_RING + 2):
        state.add_bar("A", bar(60 * k))
    cursor, events = state.wait(cursor, 0.01)
    assert events is None  # the ring moved past this reader: it must take a snapshot


def test_a_waiting_reader_wakes_on_a_new_bar_and_on_close():
    state = new_state()
    cursor, _ = state.snapshot()
    got = []
    reader = threading.Thread(target=lambda: got.append(state.wait(cursor, 10.0)))
    reader.start()
    time.sleep(0.05)
    state.add_bar("A", bar(0))
    reader.join(5)
    assert got and [name for _, name, _ in got[0][1]] == ["bar"]
    reader = threading.Thread(target=lambda: got.append(state.wait(got[0][0], 10.0)))
    reader.start()
    state.close()
    reader.join(5)
    assert not reader.is_alive() and got[1][1] == []


def test_tee_hands_every_record_to_each_sink():
    seen: list = []
    sink = tee(lambda r: seen.append(("a", r["bar_time_s"])), lambda r: seen.append(("b", 1)))
    sink(record("A", 5))
    assert seen == [("a", 5), ("b", 1)]


# -- server ---------------------------------------------------------------------------------
@pytest.fixture
def served():
    state = new_state(feed=lambda: {"connected": False, "reconnects": 2})
    server = DashboardServer(state, "127.0.0.1", 0)
    server.start()
    yield server
    server.close()


def get(server: DashboardServer, path: str, method: str = "GET"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    return response, response.read()


def read_events(response, count: int) -> list[tuple[str, dict]]:
    """Parse ``count`` server-sent events (name, data) off an open /events response."""
    events, name, data = [], None, None
    while len(events) < count:
        line = response.readline().decode()  # chunked: through the decoder
        assert line, "the event stream ended"
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "\n" and name:
            events.append((name, data))
            name = None
    return events


def test_page_and_assets_are_served_from_the_package_with_a_self_only_policy(served):
    response, body = get(served, "/")
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/html")
    policy = response.getheader("Content-Security-Policy")
    assert "default-src 'self'" in policy  # a CDN reference could not load even if one crept in
    assert b'src="/static/dashboard.js"' in body
    response, body = get(served, "/static/vendor/lightweight-charts.mjs")
    assert response.status == 200 and response.getheader("Content-Type").startswith(
        "text/javascript"
    )
    assert b"createChart" in body
    response, body = get(served, "/static/dashboard.js", "HEAD")
    assert response.status == 200 and body == b"" and int(response.getheader("Content-Length")) > 0


def test_unknown_paths_and_writes_get_clear_errors(served):
    for path in ("/nope", "/static/../server.py", "/static/%2e%2e/state.py", "/static/"):
        response, body = get(served, path)
        assert response.status == 404 and "the dashboard is at /" in json.loads(body)["error"]
    response, body = get(served, "/", "POST")
    assert response.status == 405 and "read-only" in json.loads(body)["error"]
    response, _ = get(served, "/")
    assert response.status == 200  # still serving


def test_event_stream_starts_with_a_snapshot_then_streams_bars_forecasts_and_status(served):
    served.state.add_bar("BTC-USD", bar(0, "99"))
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("GET", "/events")
    response = conn.getresponse()
    assert response.getheader("Content-Type").startswith("text/event-stream")
    (name, snap), = read_events(response, 1)  # fmt: skip
    assert name == "snapshot" and snap["products"]["BTC-USD"]["bars"][0]["close"] == 99.0
    assert snap["status"]["feed"] == {"connected": False, "reconnects": 2}
    assert snap["status"]["model"] == {"name": "m"}
    served.state.add_bar("BTC-USD", bar(60, "101"))
    served.state.add_forecast(record("BTC-USD", 60, 101.0, ms=4.5))
    order, latest = [], {}
    while latest.get("status", {}).get("latency", {}).get("count") != 1:
        (name, data), = read_events(response, 1)  # fmt: skip
        order.append(name)
        latest[name] = data
    assert [n for n in order if n != "status"] == ["bar", "forecast"]
    assert latest["bar"]["bar"]["time"] == 60 and latest["forecast"]["forecast"]["time"][0] == 60
    assert latest["status"]["latency"]["p50_ms"] == 4.5
    conn.close()
    response, body = get(served, "/api/snapshot")  # the same data for scripts
    assert json.loads(body)["products"]["BTC-USD"]["forecast"]["bar_time"] == 60


def test_close_ends_open_event_streams(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("GET", "/events")
    response = conn.getresponse()
    read_events(response, 1)
    served.close()
    rest = response.read()  # returns once the server ended the stream
    assert b"event: bar" not in rest


def test_a_busy_port_and_a_bad_address_say_what_was_expected():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            DashboardServer(new_state(), "127.0.0.1", port)
    assert parse_address("127.0.0.1:8050") == ("127.0.0.1", 8050)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:8050") == ("::1", 8050)
    for bad in ("8050", "localhost:http", "127.0.0.1:70000", ""):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_address(bad)


def test_a_build_without_the_chart_library_refuses_to_start_and_says_how_to_fix(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(server_module, "CHART_LIBRARY", tmp_path / "missing.mjs")
    with pytest.raises(ServerStartError, match="vendored from the npm registry"):
        DashboardServer(new_state(), "127.0.0.1", 0)


def test_the_page_loads_nothing_from_outside_the_package():
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "dashboard.js").read_text()
    loads = re.findall(r'(?:src|href)="([^"]+)"', page)
    external = [u for u in loads if "://" in u and "tradingview.com" not in u]  # a link, not a load
    assert loads and not external
    assert all(u.startswith(("/static/", "data:", "https://www.tradingview.com")) for u in loads)
    imports = re.findall(r'from "([^"]+)"', script)
    assert imports == ["./vendor/lightweight-charts.mjs"]


def test_the_vendored_library_is_the_one_the_lockfile_pins():
    stamp = json.loads((STATIC / "vendor" / "vendor.json").read_text())
    for name, sha in stamp["files"].items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == sha
    lockfile = ROOT / "frontend" / "package-lock.json"
    if lockfile.is_file():  # a source checkout (an installed wheel has no frontend/)
        entry = json.loads(lockfile.read_text())["packages"]["node_modules/lightweight-charts"]
        assert stamp["packages"]["lightweight-charts"] == f"{entry['version']}@{entry['integrity']}"


# -- CLI ------------------------------------------------------------------------------------
def ovcast(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ovcast", *args], capture_output=True, text=True, timeout=120,
        **kwargs,
    )  # fmt: skip


def test_cli_rejects_a_bad_dashboard_address_and_a_missing_recording(tmp_path):
    result = ovcast("replay", "--demo", "--dashboard", "localhost")
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr
    result = ovcast("live", "--product", "BTC-USD", "--model", "m", "--dashboard", "x:y")
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr
    result = ovcast("replay", "--model", str(tmp_path))
    assert result.returncode == 1 and "give a RECORDING to replay, or --demo" in result.stderr
    result = ovcast("replay", str(tmp_path / "r.db"))
    assert result.returncode == 1 and "--model DIR is required" in result.stderr


def start_dashboard_process(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start an ovcast command with --dashboard 127.0.0.1:0: (process, page URL, stdout lines).

    Both pipes are drained in the background: a full pipe would stall the forecasts."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", *args, "--dashboard", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if match := re.search(r"dashboard at (http://\S+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            out: list[str] = []
            proc.reader = threading.Thread(target=out.extend, args=(proc.stdout,), daemon=True)
            proc.reader.start()
            return proc, match.group(1), out
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("".join(seen)[-3000:])


def test_replay_demo_plays_a_synthetic_market_to_the_page_and_stays_up_until_sigterm(
    market_package, tmp_path
):
    records = tmp_path / "forecasts.jsonl"
    proc, url, out = start_dashboard_process(
        "replay", "--demo", "--model", str(market_package), "--speed", "6000", "--out", str(records)
    )
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/events")
        response = conn.getresponse()
        events = read_events(response, 1)
        forecasts = []
        while len(forecasts) < 3:
            events += read_events(response, 1)
            if events[-1][0] == "forecast":
                forecasts.append(events[-1][1])
        times = [f["forecast"]["bar_time"] for f in forecasts]
        assert times == sorted(times) and len(set(times)) == 3  # it moves at every bar close
        assert all(f["product"] == "DEMO-USD" for f in forecasts)
        deadline = time.monotonic() + 60
        while True:  # runs to the end, then keeps serving
            status = json.loads(get_json(port, "/api/status"))
            if status["feed"]["state"] == "finished" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["feed"]["state"] == "finished"
        assert status["feed"]["replayed_bars"] == status["feed"]["total_bars"] > 600
        assert status["model"]["name"] == "market" and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    proc.reader.join(10)  # the last lines
    assert out == []  # with a dashboard the terminal gets no forecast records...
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) >= 600 and lines[0]["product"] == "DEMO-USD"  # ...--out gets them all


def get_json(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    return conn.getresponse().read()
