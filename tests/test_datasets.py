"""Fetching ETTh1 (and any public data set) into the cache: from a local HTTP server on
127.0.0.1 (never the internet), a truncated or altered download refused by its checksum,
and offline, one line saying which file to put where."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest
from conftest import SHARED_DATA

from ovcast import datasets
from ovcast.datasets import ETTH1, Dataset, dataset_file, fetch, resolve_data
from ovcast.errors import DataError

ETTH1_FILE = SHARED_DATA / "etth1" / "ETTh1.csv"
SMALL = b"date,OT\n2016-07-01 00:00:00,30.5\n2016-07-01 01:00:00,27.8\n" * 40


class Files(http.server.BaseHTTPRequestHandler):
    """/good the file; /truncated promises it all and stops halfway; /altered the right
    length, one byte changed; /longer the file and more; anything else 404."""

    served: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        name, _, kind = self.path.strip("/").partition("/")
        body = self.served.get(name)
        if body is None:
            self.send_error(404)
            return
        if kind == "altered":
            body = body[:-2] + b"9" + body[-1:]
        elif kind == "longer":
            body = body + b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "truncated" else body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    """A data set server on 127.0.0.1 (port 0): base URL."""
    Files.served = {"small": SMALL}
    if ETTH1_FILE.is_file():
        Files.served["etth1"] = ETTH1_FILE.read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def small(url: str) -> Dataset:
    return Dataset(
        name="small",
        file="small.csv",
        url=url,
        sha256=hashlib.sha256(SMALL).hexdigest(),
        size=len(SMALL),
        licence="test licence",
        source="the test",
        url_variable="OVCAST_TEST_SMALL_URL",
    )


def test_a_download_is_kept_once_checked_and_not_fetched_again(server, tmp_path, monkeypatch):
    dataset = small(f"{server}/small")
    monkeypatch.setitem(datasets.DATASETS, "small", dataset)
    Files.requests.clear()
    path = dataset_file("small", tmp_path)
    assert path == tmp_path / "small.csv" and path.read_bytes() == SMALL
    assert dataset_file("small", tmp_path) == path and Files.requests == ["/small"]  # cached
    path.write_bytes(SMALL[:-1] + b"!")  # damaged in the cache: fetched again
    assert dataset_file("small", tmp_path).read_bytes() == SMALL
    assert Files.requests == ["/small", "/small"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv"]  # no leftovers


@pytest.mark.parametrize(
    "kind, said",
    [
        ("truncated", "the download was cut short"),
        ("altered", "not the published file"),
        ("longer", f"more than {len(SMALL):,} bytes"),
        ("gone", "404"),
    ],
)
def test_a_download_that_is_not_the_file_is_refused_and_nothing_kept(server, tmp_path, kind, said):
    url = f"{server}/small/{kind}" if kind != "gone" else f"{server}/nothing-here"
    dataset = small(url)
    with pytest.raises(DataError) as caught:
        fetch(dataset, tmp_path / "small.csv")
    message = str(caught.value)
    assert said in message and url in message
    assert f"save it as {tmp_path / 'small.csv'}" in message  # what to do by hand
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary one


def test_offline_evaluate_etth1_says_which_file_to_put_where(tmp_path):
    """No network (the URL points at a closed port): one line, the file, its source and
    licence, where it goes, and exit 1, before any model is loaded."""
    env = {
        **os.environ,
        "OVCAST_HOME": str(tmp_path / "home"),
        "OVCAST_ETTH1_URL": "http://127.0.0.1:9/ETTh1.csv",  # discard port: refused
    }
    done = subprocess.run(
        [sys.executable, "-m", "ovcast", "-q", "evaluate", "default", "etth1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    target = tmp_path / "home" / "datasets" / "ETTh1.csv"
    assert line.startswith("ovcast evaluate: error: ETTh1.csv is not in the cache")
    assert f"save it as {target}" in line and ETTH1.url in line and ETTH1.sha256 in line
    assert "CC BY-ND 4.0" in line and "Zhou et al." in line
    assert not (tmp_path / "home" / "datasets").exists() or not any(target.parent.iterdir())


def test_a_file_of_that_name_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etth1").write_text("date,OT\n")
    assert resolve_data("etth1") == "etth1"  # a user's own file wins over the data set
    assert resolve_data("other.csv") == "other.csv"


@pytest.mark.skipif(not ETTH1_FILE.is_file(), reason="needs ../shared/data/etth1/ETTh1.csv")
def test_evaluate_default_etth1_fetches_caches_and_scores(server, tmp_path):
    """The README's table from a clone: `ovcast evaluate default etth1`, the data set
    fetched (here from 127.0.0.1) into the cache, checked, then scored (8 windows here)."""
    env = {
        **os.environ,
        "OVCAST_HOME": str(tmp_path / "home"),
        "OVCAST_ETTH1_URL": f"{server}/etth1",
    }
    args = [sys.executable, "-m", "ovcast", "evaluate", "default", "etth1", "--max-windows", "8"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cached = tmp_path / "home" / "datasets" / "ETTh1.csv"
    assert cached.read_bytes() == ETTH1_FILE.read_bytes()
    assert "licence CC BY-ND 4.0" in done.stderr and str(cached) in done.stdout
    assert "seasonal naive (24 steps)" in done.stdout
    offline = {**env, "OVCAST_ETTH1_URL": "http://127.0.0.1:9/x"}  # the cache needs no network
    again = subprocess.run(args, capture_output=True, text=True, env=offline, timeout=300)
    assert again.returncode == 0 and again.stdout == done.stdout


def test_the_etth1_record_names_the_published_file():
    assert ETTH1.url.endswith("/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/ETTh1.csv")
    if ETTH1_FILE.is_file():  # the copy beside the project is the same file
        assert hashlib.sha256(ETTH1_FILE.read_bytes()).hexdigest() == ETTH1.sha256
        assert ETTH1_FILE.stat().st_size == ETTH1.size
