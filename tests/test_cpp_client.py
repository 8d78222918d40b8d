"""The C++ client (clients/cpp), built with the system g++ and run against real server children.

The example is built as the README builds it (-O2, warnings as errors) and run as a user runs
it. The fault drill (clients/cpp/fault_drill.cpp and protocol_drill.cpp) is built once, with
AddressSanitizer and UBSan, and drives the client through injected faults: against real
servers (SIGSTOP/SIGCONT, a SIGKILL storm, servers that never become ready, stray and endless
lines, late and tight deadlines) and against tests/cpp_fake_server.py, a server that misbehaves
on cue (wrong shapes, NaN, foreign ids, crashes, hangs, forks, closed pipes, huge lines).
Every scenario is bounded in time, and the assertions are on the client's answers, its
counters, and that no call outlived its deadline by more than MARGIN_MS. Every program is
built with tests/cpp_kill_guard.h, which ends it (status 97) rather than signal a pid <= 0.
"""

from __future__ import annotations

import json
import os
import re
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
TESTS = Path(__file__).resolve().parent
RELAY = TESTS / "cpp_relay.py"
FAKE = TESTS / "cpp_fake_server.py"
KILL_GUARD = ["-include", str(TESTS / "cpp_kill_guard.h")]
GXX = shutil.which("g++")

# How long after its deadline a call may return: acting on a deadline takes a moment (and
# more under the sanitizers on a loaded machine); a call that blocks takes seconds or forever.
MARGIN_MS = 300
BACKOFF_MAX_MS = 400  # the drills' options
WARNINGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
SANITIZE += ["-fno-sanitize-recover=all"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory) -> dict[str, Path]:
    """The example (-O2) and the fault drill (sanitized, two sources), compiled side by side,
    once."""
    if GXX is None:
        pytest.skip("g++ is not installed (apt-get install g++)")
    out = tmp_path_factory.mktemp("cpp")
    drill_flags = [*WARNINGS, *KILL_GUARD, *SANITIZE, "-pthread"]
    builds = {
        "example": [*WARNINGS, *KILL_GUARD, "-O2", "-o", str(out / "example")]
        + [str(CLIENT_DIR / "example.cpp")],
        **{
            part: [
                *drill_flags,
                "-c",
                "-o",
                str(out / f"{part}.o"),
                str(CLIENT_DIR / f"{part}.cpp"),
            ]
            for part in ("fault_drill", "protocol_drill")
        },
    }

    def build(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([GXX, *args], capture_output=True, text=True)

    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(builds, pool.map(build, builds.values()), strict=True))
    objects = [str(out / "fault_drill.o"), str(out / "protocol_drill.o")]
    done["link"] = build([*drill_flags, "-o", str(out / "fault_drill"), *objects])
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
    assert by_tag["BAD_INPUT"].startswith("BAD_INPUT error=invalid_input message=window is [3][3]")
    assert "restarted=1" in by_tag["RESTARTED"]
    np.testing.assert_allclose(example_values(by_tag["RESTARTED"]), expected, atol=1e-5)
    timeout = dict(kv.split("=") for kv in by_tag["TIMEOUT"].split()[1:])
    assert timeout["error"] == "timeout"
    assert int(timeout["after_ms"]) <= int(timeout["deadline_ms"]) + MARGIN_MS
    np.testing.assert_allclose(example_values(by_tag["RECOVERED"]), expected, atol=1e-5)
    restarts = [line for line in lines if line.startswith("ON_RESTART")]
    assert "killed by signal 9" in restarts[0] and "killed as hung" in restarts[1]
    assert "restarts=2 (after an exit: 1, after a hang: 1) timeouts=1" in by_tag["SUMMARY"]
    assert "GUARD" not in result.stderr and "SKIPPED" not in tags


def test_example_never_signals_a_pid_it_does_not_have(binaries, tmp_path):
    """pid() is -1 while the client has no server (here: the first one answers and exits, the
    next cannot be run): the demonstrations skip their signal instead of kill(-1, ...)."""
    rows = ["close,volume,rsi"] + [f"{i},2,3" for i in range(8)] + ["1013,2,3"]
    (tmp_path / "w.csv").write_text("\n".join(rows) + "\n")  # 1013: answer, then exit
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nrm -f -- "$0"\nexec "{sys.executable}" -S "{FAKE}"\n')
    python.chmod(0o755)
    result = run([binaries["example"], "--python", python, "m", tmp_path / "w.csv"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GUARD" not in result.stderr
    lines = result.stdout.splitlines()
    assert next(x for x in lines if x.startswith("FORECAST")).endswith("first=1013 1013 1013 ")
    skipped = [x for x in lines if x.startswith("SKIPPED")]
    assert len(skipped) == 2 and all("no server is running" in x for x in skipped)


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
    assert "bad.csv: line 3, column 'b': non-numeric value 'oops'. Expected" in result.stderr
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
    # What the attack on issue 14 found read differently from Python (attack14.md, 19):
    "cr_line_ends": "a,b\r1.5,2.5\r3,4\r",
    "quoted_newline_in_header": '"a\nx",b\n1,2\n3,4\n',
    "underscores": "a,b\n1_000,2\n3,4_0.5_0\n",
    "nbsp_and_vtab_around": "a,b\n\u00a01.5\u2007,\x0b2\n3,4\n",
    "fullwidth_and_arabic_digits": "a,b\n\uff11\uff12,\u0663\n3,4\n",
    "quotes_inside_cells": 'a,b\n"1"5,2\n3,"4"\n',
    "beyond_float32": "a,b\n1e39,-2\n3,1e-400\n",  # finite: +-inf in float32, as numpy casts
    # main's reading rules (ovcast._csv, shared with training):
    "names_any_case_and_spaced": " Date ,CLOSE, Volume \n2024-01-19,1,2\n2024-01-20,3,4\n",
    "names_casefolded": "stra\u00dfe,STRASSE2,T\u017f\n1,2,1705678900\n3,4,1705678960\n",
    "time_column_named_open_time": "close,Open_Time\n1,1705678900000000\n2,1705678960000000\n",
    "time_column_by_name_not_first": "close,TS\n1,1705678900\n2,1705678960\n",
    "first_time_name_wins": "ts,date,a\n1705678900,3,1\n1705678960,2,2\n",
    "headerless_with_a_time_column": "2024-01-19T12:00,1,2\n2024-01-19T13:00,3,4\n",
    "headerless_one_column": "1\n2\n",
    "bom": "\ufeffclose,volume\n1,2\n3,4\n",
    "bom_headerless": "\ufeff1,2\n3,4\n",
    "blank_cell_lines_skipped": "a,b\n , \n1,2\n,\n3,4\n",
    "times_increase_across_offsets": "time,a\n2024-01-19T12:00+01:00,1\n2024-01-19T11:30Z,2\n",
    "iso_week_and_basic_forms": "time,a\n2024-W03,1\n2024-W03-2,2\n20240119T1200,3\n",
    "times_neither_iso_nor_epoch_kept": "date,a\n19/01/2024,1\n18/01/2024,2\n",
    "only_a_time_column": "time\n2024-01-01\n2024-01-02\n",
}
CSV_REFUSED = {  # Python refuses these too: both must say the file is unusable
    "plus_minus": "a,b\n1,+-5\n3,4\n",
    "double_underscore": "a,b\n1,1__0\n3,4\n",
    "trailing_underscore": "a,b\n1,1_\n3,4\n",
    "hex": "a,b\n1,0x1p3\n3,4\n",
    "nul": "a,b\n1,1\x00\n3,4\n",
    "letters": "a,b\n1,1e\n3,4\n",
    "a_row_too_short": "a,b\n1,2\n3\n",
    "inf_nan_words": "a,b\n-Infinity,nan\n3,+inf\n",
    "beyond_float64": "a,b\n1,-1e400\n3,4\n",
    "empty_cell": "a,b\n1,\n3,4\n",
    "header_wider_than_rows": "a,b,c\n1,2\n3,4\n",
    # main's reading rules:
    "repeated_name_any_case": "OT,ot\n1,2\n",
    "repeated_name_spaced": "a, b ,B\n1,2,3\n",
    "repeated_name_folded": "\u00df,SS\n1,2\n",
    "semicolon_separated": "a;b\n1;2\n",
    "semicolon_decimal_commas": "1;2\n3;4\n",
    "tab_separated": "a\tb\n1\t2\n",
    "only_a_header": "close,volume\n",
    "no_rows": " , \n\n",
    "times_out_of_order": "time,a\n2024-01-19T12:01Z,1\n2024-01-19T12:00Z,2\n",
    "time_repeated": "ts,a\n1705678900,1\n1705678900,2\n",
    "times_out_of_order_headerless": "2024-01-19 12:00,1\n2024-01-19 11:00,2\n",
    "times_out_of_order_by_offset": "time,a\n2024-01-19T12:00+01:00,1\n2024-01-19T11:30+01:00,2\n",
    "epoch_units_mixed": "open_time,a\n1705678900000,1\n1705678960,2\n",
    "time_not_finite": "ts,a\nnan,1\n2,2\n",
    "time_beyond_2261": "ts,a\n9.3e9,1\n9.4e9,2\n",
}


def client_reads(binaries, path: Path, *window_for: str) -> subprocess.CompletedProcess:
    """`fault_drill csv`: the series the C++ client reads, and with CONTEXT CHANNEL... the
    window it makes of it (clients/cpp/series_csv.h)."""
    return run([binaries["drill"], "csv", path, *window_for], timeout=60, env=SANITIZER_ENV)


@pytest.mark.parametrize("form", sorted(CSV_FORMS))
def test_client_reads_the_csv_forms_ovcast_predict_reads(binaries, tmp_path, form):
    from ovcast.runtime.series import read_series

    path = tmp_path / f"{form}.csv"
    path.write_bytes(CSV_FORMS[form].encode())
    result = client_reads(binaries, path)
    assert result.returncode == 0, result.stderr
    read, series = json.loads(result.stdout), read_series(path)
    with np.errstate(over="ignore"):
        expected = np.asarray(series.values, dtype=np.float32)
    values = np.array(read["values"], dtype=np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(values, expected)
    assert read["columns"] == (series.columns or [])
    if read["timestamp_name"]:  # a time column, dropped from the values (shapes agree)
        assert read["timestamp_name"] == series.timestamp_name


@pytest.mark.parametrize("form", sorted(CSV_REFUSED))
def test_client_refuses_the_csv_forms_ovcast_predict_refuses(binaries, tmp_path, form):
    from ovcast.errors import DataError
    from ovcast.runtime.inputs import read_array

    path = tmp_path / f"{form}.csv"
    path.write_bytes(CSV_REFUSED[form].encode())
    with pytest.raises(DataError) as refused:
        read_array(path)
    result = client_reads(binaries, path)
    assert result.returncode == 2 and str(path) in result.stderr
    first_line = re.findall(r"line \d+\b", str(refused.value))[:1]
    assert re.findall(r"line \d+\b", result.stderr)[:1] == first_line  # the same line named


@pytest.mark.parametrize(
    "data", [b"\xe9,b\n1,2\n", "a,b\n1,2\n".encode("utf-16"), b"a,b\n1,\xed\xa0\x80\n"]
)
def test_client_refuses_a_csv_that_is_not_utf8_as_ovcast_predict_does(binaries, tmp_path, data):
    from ovcast.errors import DataError
    from ovcast.runtime.inputs import read_array

    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    with pytest.raises(DataError):
        read_array(path)
    result = client_reads(binaries, path)
    assert result.returncode == 2 and "is not UTF-8 text (byte 0x" in result.stderr


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
    "header",
    [
        ["Close", "VOLUME", " rsi "],  # the model's names in another case: as they are
        ["RSI", "close", "Volume"],  # reordered by name
        [" rsi ", "Extra", "CLOSE", "volume"],  # by name, an extra column ignored
        ["a", "b", "c"],  # other names: by position
    ],
)
def test_client_takes_channels_by_name_as_ovcast_predict_does(binaries, tmp_path, header):
    """Names matched trimmed and ignoring case: the same window as Series.window_for, and the
    same notes (Python logs the by-position choice as a warning; the client notes it)."""
    from ovcast.runtime.series import read_series

    series = random_windows(1, 70, len(header), seed=5)[0]
    path = write_rows(tmp_path / "w.csv", header, series)
    result = client_reads(binaries, path, "64", *CHANNELS)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    window, notes = read_series(path).window_for(64, CHANNELS)
    np.testing.assert_array_equal(
        np.array(read["window"], dtype=np.float32), window.astype(np.float32)
    )
    by_position = [n for n in read["notes"] if "taken in order" in n]
    assert [n for n in read["notes"] if n not in by_position] == notes
    assert bool(by_position) == (header == ["a", "b", "c"])


@pytest.mark.parametrize(
    ("text", "window_for", "message"),
    [
        ("a,b\n1,2\n3,x\n", [], ": line 3, column 'b': non-numeric value 'x'. Expected a row per"),
        ("1,2\n3\n", [], "line 2 has 1 fields; expected 2"),
        ("close,volume\n", [], "has no data rows; expected a row per"),
        ("", [], "has no data rows; expected a row per time step"),
        ("a,b,c\n1,2\n", [], "line 2 has 2 fields; expected 3"),
        ("a,b\n1,\n,x\n", [], "line 2, column 'b': empty; line 3, column 'a': empty; line 3"),
        ("1\n2\nnan\n", [], "line 3, column '1': nan is not a finite number"),
        ("A;B\n", [], "looks ';'-separated (its first line is 'A;B'); ovcast reads comma-"),
        ("Close, close \n1,2\n", [], "names column 1 ('Close') and column 2 ('close') alike"),
        ("ts,a\n5,1\n5,2\n", [], "line 3 (5) repeats the time of line 2 (5). Times must"),
        ("1,2\n3,4\n", ["2", *CHANNELS], "the input has 2 columns; the model takes 3 channels"),
        ("1,2,3\n4,5,6\n", ["64", *CHANNELS], "the input has 2 rows; the model needs 64"),
    ],
)
def test_client_names_what_is_wrong_with_a_csv(binaries, tmp_path, text, window_for, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = client_reads(binaries, path, *window_for)
    assert result.returncode == 2 and message in result.stderr


def test_client_logic_backoff_deadlines_json_and_the_wire_format(binaries):
    result = run([binaries["drill"], "units"], timeout=60, env=SANITIZER_ENV)
    assert result.returncode == 0, result.stderr
    checks = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(checks) >= 30
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


def checked_events(args: list, timeout: float) -> list[dict]:
    """Runs a drill; its events, after checking it ended well and no call outlived its
    deadline (the one the client applied) by more than MARGIN_MS."""
    result = run(args, timeout=timeout, env=SANITIZER_ENV)
    assert result.returncode == 0, (
        f"rc={result.returncode}\n{result.stdout}\n{result.stderr[-6000:]}"
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    late = [
        e for e in events if "elapsed_ms" in e and e["elapsed_ms"] > e["deadline_ms"] + MARGIN_MS
    ]
    assert late == [], f"calls outlived their deadline: {late}"
    assert not [e for e in events if e["event"] in ("error", "threw")]
    return events


def drill(binaries, files, scenario: str, *, timeout: float = 120) -> list[dict]:
    files["mode"].write_text("real\n")
    command = ["sh", files["wrapper"], "--mode", "jsonl", "--model", files["package"]]
    args = [binaries["drill"], scenario, files["windows"], files["expected"]]
    return checked_events([*args, "--mode-file", files["mode"], "--", *command], timeout)


def fake_drill(binaries, tmp_path: Path, scenario: str, *, timeout: float = 60) -> list[dict]:
    """A protocol_drill.cpp scenario against tests/cpp_fake_server.py (mode file: ok)."""
    mode = tmp_path / "mode"
    mode.write_text("ok\n")
    command = [sys.executable, "-S", FAKE, "--mode-file", mode]
    args = [binaries["drill"], "fake", scenario, "--mode-file", mode, "--", *command]
    return checked_events(args, timeout)


def results(events: list[dict], phase: str) -> list[dict]:
    return [e for e in events if e["event"] == "result" and e["phase"] == phase]


def event(events: list[dict], name: str, **match) -> dict:
    return next(e for e in events if e["event"] == name and match.items() <= e.items())


def final_stats(events: list[dict], phase: str = "end") -> dict:
    return event(events, "stats", phase=phase)


def restart_causes(events: list[dict]) -> list[str]:
    return [e["cause"] for e in events if e["event"] == "restart"]


def faults(stats: dict) -> int:
    return sum(stats[k] for k in ("start_failures", "exits", "hung_kills", "protocol_kills"))


def assert_correct(rows: list[dict]) -> None:
    assert rows and all(r["error"] == "none" and r["correct"] for r in rows), rows


# Real servers -----------------------------------------------------------------------


def test_pipelined_requests_come_back_in_order_without_deadlock(binaries, drill_files):
    events = drill(binaries, drill_files, "pipeline")
    for phase in ("sequential", "pipelined", "burst", "after_bad"):
        assert_correct(results(events, phase))
    assert len(results(events, "burst")) == 300  # more than both pipes hold, in flight at once
    for phase in ("empty", "ragged", "nan", "short", "ragged_row"):
        assert results(events, phase)[0]["error"] == "invalid_input"  # refused before sending
    assert "window is [3][7]; expected [64][7]" in results(events, "short")[0]["message"]
    # A finite window whose forecast is not: the server's error, with its code.
    not_finite = results(events, "not_finite")[0]
    assert (not_finite["error"], not_finite["code"]) == ("server_error", "model_output_not_finite")
    stats = final_stats(events)
    assert stats["ok"] == 10 + 60 + 300 + 1 and stats["restarts"] == 0
    assert stats["garbage_lines"] == 0 and stats["in_flight"] == 0


def test_a_frozen_server_costs_one_timeout_then_is_replaced(binaries, drill_files):
    events = drill(binaries, drill_files, "stop")
    assert event(events, "note", what="stopped")["value"]
    assert_correct(results(events, "warm"))
    frozen = results(events, "frozen")[0]
    assert frozen["error"] == "timeout" and frozen["elapsed_ms"] >= frozen["deadline_ms"] - 1
    # The replacement may still be starting for the next call; it never blocks past the deadline.
    after = results(events, "after")[0]
    assert after["error"] == "unavailable" or after["correct"]
    assert_correct(results(events, "recovered"))
    assert event(events, "note", what="frozen_server_gone")["value"]
    stats = final_stats(events)
    assert (stats["timeouts"], stats["hung_kills"], stats["restarts"]) == (1, 1, 1)
    assert (
        "no answer for 1000 ms while it had a request to answer: killed as hung"
        in (restart_causes(events)[0])
    )


def test_a_full_pipe_to_a_frozen_server_never_blocks_a_call(binaries, drill_files):
    events = drill(binaries, drill_files, "stop-keep")
    burst, blocked = results(events, "burst"), results(events, "blocked")
    assert len(burst) == 100 and all(r["error"] == "timeout" for r in burst + blocked)
    # The stdin pipe is full: these never got into it, and still returned on time.
    assert all("did not read the request" in r["message"] for r in blocked)
    assert event(events, "note", what="continued")["value"]
    assert_correct(results(events, "resumed"))  # late answers to timed-out requests skipped
    stats = final_stats(events)
    assert stats["restarts"] == 0 and stats["hung_kills"] == 0 and stats["timeouts"] == 103
    assert 0 < stats["late_answers"] < 100


def test_a_sigkill_storm_never_makes_the_client_give_up(binaries, drill_files):
    events = drill(binaries, drill_files, "storm")
    storm = event(events, "storm")
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
    constructor = event(events, "constructor")
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
    assert len(results(events, "garbage")) == 6
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
    # Every answer 700 ms late, every deadline 300 ms: three timeouts, the server kept.
    assert [r["error"] for r in results(events, "slow")] == ["timeout"] * 3
    assert_correct(results(events, "drained"))  # behind the three late answers, dropped
    kept = final_stats(events, "slow")
    assert (kept["hung_kills"], kept["restarts"], kept["late_answers"]) == (0, 0, 3)
    assert results(events, "silent")[0]["error"] == "timeout"
    assert_correct(results(events, "replaced"))
    assert event(events, "note", what="frozen_server_gone")["value"]
    end = final_stats(events)
    assert (end["hung_kills"], end["restarts"]) == (1, 1)
    assert "no answer for 1500 ms" in restart_causes(events)[0]


def test_answers_that_arrived_in_time_are_not_reported_late(binaries, drill_files):
    """submit(), other work past the deadline, then wait(): the answers were in the pipe."""
    events = drill(binaries, drill_files, "late-wait")
    late = results(events, "late_wait")
    assert len(late) == 4
    assert_correct(late)  # and each wait() returned at once (deadline_ms 0 + MARGIN_MS)
    stats = final_stats(events)
    assert (stats["timeouts"], stats["hung_kills"], stats["late_answers"]) == (0, 0, 0)


def test_tight_deadlines_at_a_bars_cadence_never_kill_a_healthy_server(binaries, drill_files):
    events = drill(binaries, drill_files, "tight")
    tight = results(events, "tight")
    assert len(tight) == 24 and {r["error"] for r in tight} <= {"none", "timeout"}
    assert all(r["correct"] for r in tight if r["error"] == "none")
    assert_correct(results(events, "after"))
    stats = final_stats(events)
    assert (stats["hung_kills"], stats["restarts"], stats["unavailable"]) == (0, 0, 0)


# A server that misbehaves on cue -----------------------------------------------------


def test_answers_are_checked_against_the_ready_line_and_for_finite_values(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "answers")
    refused = {
        "wrong_shape": "'predictions' have 1 rows; expected [4][3] finite float32 numbers",
        "beyond_float32": "non-finite value at [0][0] (NaN, inf or beyond float32)",
        "nan_literals": "non-finite value at [0][0]",
        "nulls": "null at [0][0]",
        "too_many": "'predictions' hold 90301 values; expected [4][3]",
    }
    for phase, message in refused.items():
        r = results(events, phase)[0]
        assert r["error"] == "protocol_error" and message in r["message"], r
    not_finite = results(events, "not_finite")[0]
    assert (not_finite["error"], not_finite["code"]) == ("server_error", "model_output_not_finite")
    assert_correct(results(events, "warm") + results(events, "numeric_id"))
    assert results(events, "foreign_id")[0]["error"] == "timeout"  # id + 1000: not its answer
    assert_correct(results(events, "after"))
    stats = final_stats(events)
    assert (stats["starts"], stats["hung_kills"], stats["garbage_lines"]) == (1, 0, 1)
    assert (stats["protocol_errors"], stats["server_errors"]) == (5, 1)


def test_answers_out_of_order_are_matched_by_request_id(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "ordering")
    ordered = results(events, "ordered")
    assert len(ordered) == 6
    assert_correct(ordered)  # each got its own forecast, numeric ids included
    stats = final_stats(events)
    assert (stats["garbage_lines"], stats["late_answers"], stats["restarts"]) == (0, 0, 0)


def test_only_the_request_a_server_died_on_is_charged(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "poison")
    assert results(events, "poison")[0]["error"] == "child_died"
    good = results(events, "good")
    assert len(good) == 5
    assert_correct(good)
    assert [r["restarted"] for r in good] == [False, True, True, True, True]
    stats = final_stats(events)
    assert (stats["exits"], stats["starts"], stats["child_died"]) == (2, 3, 1)


def test_forever_zero_and_negative_deadlines_neither_overflow_nor_kill(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "deadlines")
    for phase in ("max", "300_years", "after", "default_max", "forever_settings"):
        assert_correct(results(events, phase))
    for phase in ("zero", "negative", "min"):
        r = results(events, phase)[0]
        assert r["error"] == "timeout" and r["deadline_ms"] == 0, r  # at once (MARGIN_MS)
    requests = final_stats(events, "requests")
    assert (requests["starts"], requests["hung_kills"]) == (1, 0)
    # Every setting "forever": it still serves, restarts after a crash, and stops.
    after_crash = results(events, "after_crash")
    assert_correct(after_crash)
    assert after_crash[0]["restarted"]
    assert final_stats(events, "settings")["restarts"] == 1
    assert event(events, "destroy")["took_ms"] < 2000


def test_windows_of_the_wrong_shape_cost_nothing(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "windows")
    for phase in ("rows_1000000", "rows_100000", "rows_3", "channels_2", "channels_7"):
        r = results(events, phase)[0]
        assert r["error"] == "invalid_input" and "expected [8][3]" in r["message"], r
    assert "row 3 has 2 values" in results(events, "ragged")[0]["message"]
    assert results(events, "nan")[0]["error"] == "invalid_input"
    assert_correct(results(events, "after"))
    stats = final_stats(events)
    assert (stats["starts"], stats["invalid_input"], stats["ok"]) == (1, 7, 1)


def test_a_server_later_than_every_deadline_is_kept_and_a_frozen_one_found(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "slow")
    tight = results(events, "tight")
    assert len(tight) == 10 and {r["error"] for r in tight} == {"timeout"}
    assert_correct(results(events, "kept"))
    kept = final_stats(events, "tight")
    assert (kept["hung_kills"], kept["restarts"]) == (0, 0) and kept["late_answers"] >= 5
    # Frozen: replaced hang_timeout (800 ms) after the first request it did not answer.
    frozen_at = event(events, "note", what="frozen")["t_ms"]
    restart = event(events, "restart")
    assert "no answer for 800 ms" in restart["cause"]
    assert 800 - 5 <= restart["t_ms"] - frozen_at <= 800 + MARGIN_MS
    assert_correct(results(events, "recovered"))
    assert final_stats(events)["hung_kills"] == 1


def test_the_server_gets_only_stdin_stdout_and_stderr(binaries, tmp_path):
    fds = event(fake_drill(binaries, tmp_path, "fds"), "fds")
    assert fds["eof_seen"] and not fds["inherited"]
    assert fds["server_fds"] == ["0", "1", "2"]


def test_a_wrapper_that_forks_the_server_leaves_no_server_behind(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "group")
    group = event(events, "group")
    assert group["first"] > 0 and group["second"] > 0 and group["first"] != group["second"]
    assert group["first_gone"] and group["second_gone"]  # killed as hung; at destruction
    after = results(events, "after")[0]
    assert after["correct"] and after["restarted"]
    assert final_stats(events)["hung_kills"] == 1


def test_a_ready_line_with_unusable_numbers_is_a_start_failure(binaries, tmp_path):
    events = [e for e in fake_drill(binaries, tmp_path, "ready") if e["event"] == "constructor"]
    expected = {
        "context_length=1e300": "context_length is 1e+300; expected a whole number in 1..",
        "prediction_length=-1": "prediction_length is -1; expected a whole number",
        "num_channels=2.5": "num_channels is 2.5",
        "context_length=": "context_length is missing",
        'context_length="8"': "context_length is not a number",
        'channel_names=["a"]': "channel_names are not 3 strings",
    }
    assert {e["case"] for e in events} == set(expected)
    for e in events:
        assert e["error"].startswith("could not start the ovcast server: the ready line's")
        assert expected[e["case"]] in e["error"] and e["took_ms"] < 5000


def test_a_closed_pipe_never_raises_sigpipe_in_the_host(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "sigpipe")  # SIGPIPE at its default: rc 0 = alive
    assert event(events, "note", what="stdin_closed")["value"]
    after = results(events, "after")[0]
    assert after["correct"] and after["restarted"]
    sig = event(events, "sigpipe")  # the host's choice of disposition, untouched
    assert (sig["disposition_default"], sig["pending"], sig["blocked"]) == (True, False, False)
    assert "server closed its stdin" in restart_causes(events)[0]
    silent = results(events, "closes_stdin_silently")[0]  # seen at once, not as a hang
    assert silent["error"] == "child_died" and "closed its stdin" in silent["message"]
    assert silent["elapsed_ms"] < 1000 and final_stats(events)["hung_kills"] == 0


def test_throwing_callbacks_are_counted_and_stop_nothing(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "callback")
    assert_correct(results(events, "after_crash"))
    restart = final_stats(events, "restart")
    assert (restart["restarts"], restart["callback_errors"]) == (1, 1)
    assert restart["last_callback_error"] == "log sink full"
    assert_correct(results(events, "captured"))
    stderr = final_stats(events, "stderr")
    assert (stderr["stderr_lines"], stderr["callback_errors"]) == (4, 4)


def test_destroying_the_client_waits_only_its_stop_grace(binaries, tmp_path):
    destroys = [e for e in fake_drill(binaries, tmp_path, "destroy") if e["event"] == "destroy"]
    assert [d["grace_ms"] for d in destroys] == [300, 500]  # set, and the default
    for d in destroys:
        assert d["frozen"] and d["server_gone"]
        assert d["grace_ms"] - 5 <= d["took_ms"] <= d["grace_ms"] + MARGIN_MS


def test_a_restart_stuck_before_ready_costs_a_fitted_startup_timeout(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "stuck-start")
    assert event(events, "note", what="starting_frozen")["value"]
    cause = next(c for c in restart_causes(events) if c.startswith("not ready within"))
    fitted = int(re.match(r"not ready within (\d+) ms", cause).group(1))
    stuck = event(events, "stuck")
    assert 1000 <= fitted <= 15000 < stuck["startup_timeout_ms"]  # 3 x the first start + 1 s
    assert stuck["first_ok_ms"] <= fitted + BACKOFF_MAX_MS + 2000
    assert stuck["frozen_gone"]


def test_a_stalled_host_stderr_cannot_wedge_a_server_that_does_not_inherit_it(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "stderr")
    capture, discard, inherit = (
        event(events, "stderr", case=c) for c in ("capture", "discard", "inherit")
    )
    assert capture["started"] and capture["ok"] and capture["lines"] == 256
    assert discard["started"] and discard["ok"]
    # The default inherits the host's stderr: a stalled one stalls the server (why the option
    # exists), and the client still gives up on time.
    assert not inherit["started"] and "not ready within 3000 ms" in inherit["error"]
    assert (
        "its stderr ended with: fake server: cannot load the model"
        in event(events, "exit")["error"]
    )


def test_huge_stray_lines_cost_bounded_time_and_memory(binaries, tmp_path):
    events = fake_drill(binaries, tmp_path, "huge-line", timeout=120)
    huge = results(events, "huge_stray")
    assert len(huge) == 2
    assert_correct(huge)  # each within its deadline, behind a 16 MB line
    peaks = [e["peak_mb"] for e in events if e["event"] == "heap" and e["phase"] == "huge_stray"]
    assert max(peaks) < 64  # the line itself, not ~100 bytes per value of it
    assert final_stats(events, "huge")["garbage_lines"] == 2
    # The default cap (1 MiB for a small model): a 2 MB line replaces the server.
    default = results(events, "default_cap")[0]
    assert default["correct"] and default["restarted"]
    assert final_stats(events, "default_cap")["protocol_kills"] == 1
    assert "line longer than 1048576 bytes" in restart_causes(events)[0]
