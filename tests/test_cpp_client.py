"""The C++ client (clients/cpp), built with the system g++ and run against real server children.

The example is built as the README builds it (-O2, warnings as errors) and run as a user runs
it. The fault drill (clients/cpp/fault_drill.cpp) is built once, with AddressSanitizer and
UBSan, and drives the client through injected faults: SIGSTOP/SIGCONT, a SIGKILL storm, a
server that never becomes ready, stray lines and an endless line on stdout. Every scenario is
bounded in time, and the assertions are on the client's answers (against the Python engine's
forecasts), its counters, and that no call outlived its deadline by more than MARGIN_MS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import random_windows
from cpp_relay import GARBAGE

ROOT = Path(__file__).resolve().parents[1]
CLIENT_DIR = ROOT / "clients" / "cpp"
RELAY = Path(__file__).resolve().parent / "cpp_relay.py"
GXX = shutil.which("g++")

# How long after its deadline a call may return: acting on a deadline takes a moment (and
# more under the sanitizers on a loaded machine); a call that blocks takes seconds or forever.
MARGIN_MS = 300
BACKOFF_MAX_MS = 400  # fault_drill.cpp's Drill::options
WARNINGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
SANITIZE += ["-fno-sanitize-recover=all"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory) -> dict[str, Path]:
    """The example (-O2) and the fault drill (sanitized), compiled side by side, once."""
    if GXX is None:
        pytest.skip("g++ is not installed (apt-get install g++)")
    out = tmp_path_factory.mktemp("cpp")
    builds = {
        "example": [*WARNINGS, "-O2", "-o", str(out / "example"), str(CLIENT_DIR / "example.cpp")],
        "drill": [*WARNINGS, *SANITIZE, "-pthread", "-o", str(out / "fault_drill")]
        + [str(CLIENT_DIR / "fault_drill.cpp")],
    }

    def build(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([GXX, *args], capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(builds, pool.map(build, builds.values()), strict=True))
    for name, result in done.items():
        assert result.returncode == 0, f"{name} did not build:\n{result.stderr}"
    return {"example": out / "example", "drill": out / "fault_drill"}


def run(args: list, *, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# --------------------------------------------------------------------------- the example


def example_values(line: str) -> np.ndarray:
    return np.array([float(v) for v in line.split("first=")[1].split()])


@pytest.fixture(scope="module")
def window_csv(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A series as users hold it, which `ovcast predict` takes: a timestamp column, a header
    naming the model's channels in another order, more rows than the context. Returns the
    path and the window the model must get (the last 64 rows, columns in model order)."""
    series = random_windows(1, 80, 3, seed=11)[0]  # close, volume, rsi
    path = tmp_path_factory.mktemp("csv") / "window.csv"
    rows = ["time,rsi,close,volume"]
    for i, (close, volume, rsi) in enumerate(series):
        rows.append(f"2024-01-19 {i // 60:02d}:{i % 60:02d}:00,{rsi:.9g},{close:.9g},{volume:.9g}")
    path.write_text("\n".join(rows) + "\n")
    return path, series[-64:]


def test_example_forecasts_and_rides_out_the_faults_it_announces(
    binaries, small_package, small_engine, window_csv
):
    path, window = window_csv
    result = run(
        [binaries["example"], "--python", sys.executable, small_package, path], timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    tags = [line.split()[0] for line in lines]
    by_tag = {line.split()[0]: line for line in lines}
    expected = small_engine.predict(window)[0]
    assert by_tag["SERVER"] == "SERVER model=small context=64 horizon=16 channels=3"
    assert "note: channels taken by name; reordered to the model's order" in result.stderr
    assert "note: using the last 64 of 80 rows" in result.stderr
    assert "steps=16 channels=3" in by_tag["FORECAST"]
    np.testing.assert_allclose(example_values(by_tag["FORECAST"]), expected, atol=1e-5)
    # Each injected fault is announced before it happens, and says what to expect.
    demos = [i for i, tag in enumerate(tags) if tag == "DEMO"]
    assert len(demos) == 3 and all("Expect" in lines[i] for i in demos)
    assert demos[0] < tags.index("BAD_INPUT") < demos[1] < tags.index("RESTARTED") < demos[2]
    assert demos[2] < tags.index("TIMEOUT") < tags.index("RECOVERED")
    assert by_tag["BAD_INPUT"].startswith("BAD_INPUT error=server_error code=invalid_input")
    assert "restarted=1" in by_tag["RESTARTED"]
    np.testing.assert_allclose(example_values(by_tag["RESTARTED"]), expected, atol=1e-5)
    timeout = dict(kv.split("=") for kv in by_tag["TIMEOUT"].split()[1:])
    assert timeout["error"] == "timeout"
    assert int(timeout["after_ms"]) <= int(timeout["deadline_ms"]) + MARGIN_MS
    np.testing.assert_allclose(example_values(by_tag["RECOVERED"]), expected, atol=1e-5)
    restarts = [line for line in lines if line.startswith("ON_RESTART")]
    assert "killed by signal 9" in restarts[0] and "killed as hung" in restarts[1]
    assert "restarts=2 (after an exit: 1, after a hang: 1) timeouts=1" in by_tag["SUMMARY"]


def test_example_benchmark_prints_rates_beside_the_machine(binaries, small_package, window_csv):
    path, _ = window_csv
    args = ["--python", sys.executable, "--no-faults", "--bench", "20", "--in-flight", "4"]
    result = run([binaries["example"], *args, small_package, path], timeout=180)
    assert result.returncode == 0, result.stderr
    bench = [line for line in result.stdout.splitlines() if line.startswith("BENCH")]
    assert "DEMO" not in result.stdout
    assert bench[0].startswith("BENCH machine: ") and "CPUs online" in bench[0]
    assert bench[1].startswith("BENCH versions: ovcast ") and "OpenVINO" in bench[1]
    rates = {line.split()[1]: line for line in bench[3:]}
    for depth in ("in_flight=1", "in_flight=4"):
        assert float(rates[depth].split("forecasts_per_s=")[1].split()[0]) > 0


def test_example_reports_a_server_that_cannot_start(binaries, window_csv, tmp_path):
    path, _ = window_csv
    result = run(
        [binaries["example"], "--python", sys.executable, tmp_path / "missing", path], timeout=120
    )
    assert result.returncode == 1
    assert "could not start the ovcast server: server exited with status" in result.stderr
    assert "before it was ready" in result.stderr
    assert "no model package at" in result.stderr  # the server's own reason, on inherited stderr


def test_example_explains_a_bad_csv_and_bad_usage(binaries, small_package, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,oops\n")
    result = run([binaries["example"], small_package, bad], timeout=60)
    assert result.returncode == 1
    assert "bad.csv line 3, column 2: 'oops' is not a number; expected" in result.stderr
    usage = run([binaries["example"], "--bogus"], timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_the_readme_build_folder_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = run(["git", "-C", ROOT, "check-ignore", "-q", "build/cpp/example"], timeout=30)
    assert ignored.returncode == 0, "build/cpp/ (the README's build folder) must be git-ignored"


# --------------------------------------------------------------------------- CSV forms


CSV_FORMS = {
    "plain": "1,2,3\n4,5,6\n",
    "header": "close,volume,rsi\n1,2,3\n4,5,6\n",
    "header_and_timestamps": "time,close,volume,rsi\n2024-01-19T12:00Z,1,2,3\n2024-01-19T12:01Z,4,5,6\n",
    "timestamps_only": "2024-01-19 12:00,1,2,3\n2024-01-19 12:01,4,5,6\n",
    "quoted_crlf_blank_lines": '"t","c"\r\n\r\n"Jan 19, 2024",1.5\r\n"Jan 20, 2024", -2e3 \r\n\n',
    "epoch_column_is_a_channel": "1705678900000,1,2\n1705678960000,3,4\n",
    "signs_and_exponents": "+1.5,-.5,1e-3\n2.,3E2,-0\n",
}


def client_reads(binaries, path: Path, *window_for: str) -> subprocess.CompletedProcess:
    """`fault_drill csv`: the series the C++ client reads, and with CONTEXT CHANNEL... the
    window it makes of it (clients/cpp/series_csv.h)."""
    return run([binaries["drill"], "csv", path, *window_for], timeout=60, env=SANITIZER_ENV)


@pytest.mark.parametrize("form", sorted(CSV_FORMS))
def test_client_reads_the_csv_forms_ovcast_predict_reads(binaries, tmp_path, form):
    from ovcast.runtime.inputs import read_array

    path = tmp_path / f"{form}.csv"
    path.write_bytes(CSV_FORMS[form].encode())
    result = client_reads(binaries, path)
    assert result.returncode == 0, result.stderr
    values = np.array(json.loads(result.stdout)["values"], dtype=np.float32)
    np.testing.assert_array_equal(values, read_array(path))


CHANNELS = ["close", "volume", "rsi"]


def write_rows(path: Path, header: list[str] | None, rows: np.ndarray, stamps=None) -> Path:
    """A CSV of ``rows`` (%.9g: float32 exactly), with ``stamps`` as a last column if given."""
    lines = [",".join(header)] if header else []
    for i, row in enumerate(rows):
        lines.append(",".join([f"{v:.9g}" for v in row] + ([str(stamps[i])] if stamps else [])))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_client_makes_the_window_as_ovcast_predict_does(binaries, tmp_path):
    """The rules of `ovcast predict` (ovcast.runtime.series): a numeric column named ts is a
    timestamp, channels by name in any order (extra columns ignored) or else by position, a
    longer series gives its last CONTEXT rows; each choice said in a note."""
    series = random_windows(1, 80, 3, seed=3)[0]
    stamps = [1705678900000 + 60_000 * i for i in range(80)]  # epoch ms: numbers, by name
    mixed = np.column_stack([series[:, 2], np.zeros(80), series[:, 0], series[:, 1]])
    header = ["rsi", "extra", "close", "volume", "ts"]
    path = write_rows(tmp_path / "mixed.csv", header, mixed, stamps)
    result = client_reads(binaries, path, "64", *CHANNELS)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read["columns"] == ["rsi", "extra", "close", "volume"]
    assert read["timestamp_name"] == "ts" and read["timestamps"][0] == "1705678900000"
    np.testing.assert_array_equal(np.array(read["window"], dtype=np.float32), series[-64:])
    assert read["notes"] == [
        "channels taken by name; ignored column(s) ['extra']",
        "using the last 64 of 80 rows",
    ]
    plain = json.loads(
        client_reads(
            binaries, write_rows(tmp_path / "p.csv", None, series[:64]), "64", *CHANNELS
        ).stdout
    )
    np.testing.assert_array_equal(np.array(plain["window"], dtype=np.float32), series[:64])
    assert plain["notes"] == [] and plain["columns"] == []
    named = write_rows(tmp_path / "n.csv", ["a", "b", "c"], series[:64])
    assert json.loads(client_reads(binaries, named, "64", *CHANNELS).stdout)["notes"] == [
        "columns ['a', 'b', 'c'] taken in order as the model's ['close', 'volume', 'rsi']"
    ]


@pytest.mark.parametrize(
    ("text", "window_for", "message"),
    [
        ("a,b\n1,2\n3,x\n", [], "line 3, column 2: 'x' is not a number; expected a row per"),
        ("1,2\n3\n", [], "line 2 has 1 fields; expected 2"),
        ("close,volume\n", [], "has a header but no data rows"),
        ("", [], "is empty; expected a row per time step"),
        ("a,b,c\n1,2\n", [], "has 3 names in its header and 2 fields in its first data row"),
        ("1,2\n3,4\n", ["2", *CHANNELS], "the input has 2 columns; the model takes 3 channels"),
        ("1,2,3\n4,5,6\n", ["64", *CHANNELS], "the input has 2 rows; the model needs 64"),
    ],
)
def test_client_names_what_is_wrong_with_a_csv(binaries, tmp_path, text, window_for, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = client_reads(binaries, path, *window_for)
    assert result.returncode == 2 and message in result.stderr


def test_client_logic_backoff_json_and_encoding(binaries):
    result = run([binaries["drill"], "units"], timeout=60, env=SANITIZER_ENV)
    assert result.returncode == 0, result.stderr
    checks = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(checks) >= 10
    assert [c for c in checks if not c["passed"]] == []


# --------------------------------------------------------------------------- the fault drill


@pytest.fixture(scope="module")
def drill_files(tmp_path_factory, market_package) -> dict[str, Path]:
    """Windows and their forecasts from the Python engine; a server wrapper with a mode file.

    The wrapper execs the server the mode file names (so the client's child is the server):
    real, hang (never ready), garbage and slow (the server behind tests/cpp_relay.py).
    """
    from ovcast import Engine

    folder = tmp_path_factory.mktemp("drill")
    windows = random_windows(8, 64, 7, seed=5)  # ~5 KB a request: more than PIPE_BUF, so
    forecasts = Engine(market_package).predict(windows)  # writes into a full pipe split
    np.savetxt(folder / "windows.csv", windows.reshape(-1, 7), delimiter=",", fmt="%.9g")
    np.savetxt(folder / "expected.csv", forecasts.reshape(-1, 7), delimiter=",", fmt="%.9g")
    mode_file = folder / "mode"
    wrapper = folder / "server.sh"
    serve = f'"{sys.executable}" -m ovcast serve'
    relay = f'"{sys.executable}" "{RELAY}"'
    wrapper.write_text(
        "#!/bin/sh\n"
        "# The server the fault drill asked for: the mode file says which (read at each start).\n"
        f'mode=$(cat "{mode_file}")\n'
        'case "$mode" in\n'
        f'  real) exec {serve} "$@" ;;\n'
        "  hang) exec sleep 60 ;;  # never writes its ready line\n"
        "  # one-shot modes: the server after this one is a plain one again\n"
        f'  garbage) echo real > "{mode_file}"; exec {relay} garbage 6 {serve} "$@" ;;\n'
        f'  slow) echo real > "{mode_file}"; exec {relay} slow 700 {serve} "$@" ;;\n'
        "esac\n"
        'echo "fault drill: unknown mode $mode" >&2; exit 2\n'
    )
    return {"windows": folder / "windows.csv", "expected": folder / "expected.csv"} | {
        "mode": mode_file,
        "wrapper": wrapper,
        "package": market_package,
    }


def drill(binaries, files, scenario: str, *, timeout: float = 120) -> list[dict]:
    files["mode"].write_text("real\n")
    command = ["sh", files["wrapper"], "--mode", "jsonl", "--model", files["package"]]
    args = [binaries["drill"], scenario, files["windows"], files["expected"]]
    args += ["--mode-file", files["mode"], "--", *command]
    result = run(args, timeout=timeout, env=SANITIZER_ENV)
    assert result.returncode == 0, (
        f"rc={result.returncode}\n{result.stdout}\n{result.stderr[-6000:]}"
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    late = [
        e for e in events if "elapsed_ms" in e and e["elapsed_ms"] > e["deadline_ms"] + MARGIN_MS
    ]
    assert late == [], "calls outlived their deadline"
    assert not [e for e in events if e["event"] == "error"]
    return events


def results(events: list[dict], phase: str) -> list[dict]:
    return [e for e in events if e["event"] == "result" and e["phase"] == phase]


def final_stats(events: list[dict], phase: str = "end") -> dict:
    return next(e for e in events if e["event"] == "stats" and e["phase"] == phase)


def restart_causes(events: list[dict]) -> list[str]:
    return [e["cause"] for e in events if e["event"] == "restart"]


def faults(stats: dict) -> int:
    return sum(stats[k] for k in ("start_failures", "exits", "hung_kills", "protocol_kills"))


def assert_correct(rows: list[dict]) -> None:
    assert rows and all(r["error"] == "none" and r["correct"] for r in rows), rows


def test_pipelined_requests_come_back_in_order_without_deadlock(binaries, drill_files):
    events = drill(binaries, drill_files, "pipeline")
    for phase in ("sequential", "pipelined", "burst", "after_bad"):
        assert_correct(results(events, phase))
    assert len(results(events, "burst")) == 300  # more than both pipes hold, in flight at once
    for phase in ("empty", "ragged", "nan"):
        assert results(events, phase)[0]["error"] == "invalid_input"  # refused before sending
    short = results(events, "short")[0]
    assert (short["error"], short["code"]) == ("server_error", "invalid_input")
    stats = final_stats(events)
    assert stats["ok"] == 10 + 60 + 300 + 1 and stats["restarts"] == 0
    assert stats["garbage_lines"] == 0 and stats["in_flight"] == 0


def test_a_frozen_server_costs_one_timeout_then_is_replaced(binaries, drill_files):
    events = drill(binaries, drill_files, "stop")
    assert next(e for e in events if e.get("what") == "stopped")["value"]
    assert_correct(results(events, "warm"))
    frozen = results(events, "frozen")[0]
    assert frozen["error"] == "timeout" and frozen["elapsed_ms"] >= frozen["deadline_ms"] - 1
    # The replacement may still be starting for the next call; it never blocks past the deadline.
    after = results(events, "after")[0]
    assert after["error"] == "unavailable" or after["correct"]
    assert_correct(results(events, "recovered"))
    assert next(e for e in events if e.get("what") == "frozen_server_gone")["value"]
    stats = final_stats(events)
    assert (stats["timeouts"], stats["hung_kills"], stats["restarts"]) == (1, 1, 1)
    assert "no answer within 1000 ms: killed as hung" in restart_causes(events)[0]


def test_a_full_pipe_to_a_frozen_server_never_blocks_a_call(binaries, drill_files):
    events = drill(binaries, drill_files, "stop-keep")
    burst, blocked = results(events, "burst"), results(events, "blocked")
    assert len(burst) == 100 and all(r["error"] == "timeout" for r in burst + blocked)
    # The stdin pipe is full: these never got into it, and still returned on time.
    assert all("did not read the request" in r["message"] for r in blocked)
    assert next(e for e in events if e.get("what") == "continued")["value"]
    assert_correct(results(events, "resumed"))  # late answers to timed-out requests skipped
    stats = final_stats(events)
    assert stats["restarts"] == 0 and stats["hung_kills"] == 0 and stats["timeouts"] == 103
    assert 0 < stats["late_answers"] < 100


def test_a_sigkill_storm_never_makes_the_client_give_up(binaries, drill_files):
    events = drill(binaries, drill_files, "storm")
    storm = next(e for e in events if e["event"] == "storm")
    stats = final_stats(events)
    restarts = [e for e in events if e["event"] == "restart"]
    assert storm["kills"] >= 5
    assert storm["most_consecutive_failures"] > 3  # the old client gave up for good at 3
    # Every fault was followed by a restart, each reported with its cause.
    assert stats["restarts"] == len(restarts) == faults(stats) >= 3
    assert stats["exits"] + stats["start_failures"] <= storm["kills"]
    during = results(events, "storm")
    assert {r["error"] for r in during} <= {"none", "unavailable", "child_died", "timeout"}
    assert all(r["correct"] for r in during if r["error"] == "none")
    # After the storm: a new start within one backoff period, then correct answers again.
    after = [e["t_ms"] for e in restarts if e["t_ms"] > storm["stopped_ms"]]
    assert not after or after[0] <= storm["stopped_ms"] + BACKOFF_MAX_MS + MARGIN_MS
    recovery = results(events, "recovery")
    assert_correct(recovery[-5:])
    assert {r["error"] for r in recovery} <= {"none", "unavailable"}


def test_a_server_that_never_becomes_ready_is_given_up_on_time_and_retried(binaries, drill_files):
    events = drill(binaries, drill_files, "never-ready")
    constructor = next(e for e in events if e["event"] == "constructor")
    assert "could not start the ovcast server: not ready within 1000 ms" in constructor["error"]
    assert constructor["elapsed_ms"] <= constructor["deadline_ms"] + MARGIN_MS
    hanging = results(events, "hanging")
    assert len(hanging) >= 5 and {r["error"] for r in hanging} == {"unavailable"}
    stats = final_stats(events, "hanging")
    assert stats["exits"] == 1 and stats["start_failures"] >= 2  # killed, then never ready
    assert stats["consecutive_failures"] == faults(stats)  # no answer since: backing off
    # The fault stops: the next start comes within one startup_timeout plus one backoff.
    stopped = [e["t_ms"] for e in events if e.get("event") == "mode"][-1]
    restarts = [e for e in events if e["event"] == "restart"]
    first_after = next(e["t_ms"] for e in restarts if e["t_ms"] >= stopped)
    assert first_after <= stopped + 1000 + BACKOFF_MAX_MS + MARGIN_MS
    assert_correct(results(events, "recovery")[-3:])
    recovered = final_stats(events, "recovered")
    assert recovered["restarts"] == faults(recovered)
    assert recovered["consecutive_failures"] == 0  # answered: the backoff starts over
    # With max_restarts = 1: the second fault in a row gives up, at once and for every call,
    # until reset().
    giving_up = results(events, "giving_up")
    assert {r["error"] for r in giving_up[:-1]} <= {"unavailable"}
    assert giving_up[-1]["error"] == "child_died"
    gave_up = results(events, "gave_up")[0]
    assert gave_up["error"] == "child_died" and "gave up after 2 consecutive" in gave_up["message"]
    assert gave_up["elapsed_ms"] < gave_up["deadline_ms"]  # refused at once, not timed out
    assert final_stats(events, "gave_up")["consecutive_failures"] == 2
    assert_correct(results(events, "reset"))


def test_stray_stdout_lines_are_skipped_and_an_endless_line_replaces_the_server(
    binaries, drill_files
):
    events = drill(binaries, drill_files, "garbage")
    assert_correct(results(events, "garbage"))
    assert len(results(events, "garbage")) == 5
    bad = results(events, "garbage_bad")[0]
    assert (bad["error"], bad["code"]) == ("server_error", "invalid_input")
    before = final_stats(events, "garbage")
    assert before["garbage_lines"] == len(GARBAGE) * (1 + 6)  # around the ready line and 6 answers
    assert before["restarts"] == 0
    flood = results(events, "flood")[0]
    assert flood["correct"] and flood["restarted"]  # answered by the replacement
    assert_correct(results(events, "after"))
    end = final_stats(events)
    assert (end["protocol_kills"], end["restarts"], end["resent"]) == (1, 1, 1)
    assert "line longer than 1048576 bytes" in restart_causes(events)[0]


def test_a_slow_server_is_kept_and_a_silent_one_replaced(binaries, drill_files):
    events = drill(binaries, drill_files, "slow")
    first, second = results(events, "slow")
    assert first["correct"] and second["error"] == "timeout"
    kept = final_stats(events, "slow")  # it answered 300 ms before the timeout: slow, not hung
    assert (kept["hung_kills"], kept["restarts"]) == (0, 0)
    assert_correct(results(events, "drained"))  # the late answer before it was dropped
    silent = results(events, "silent")[0]
    assert silent["error"] == "timeout"
    assert_correct(results(events, "replaced"))
    end = final_stats(events)
    assert (end["late_answers"], end["hung_kills"], end["restarts"]) == (1, 1, 1)
