"""Scaling out on a real two-node Ray cluster on this machine (``ray start`` processes, loopback).

One cluster for the module (starting Ray costs seconds): the batch test runs first, while
both nodes' CPUs are free; then ``ovcast serve --mode ray`` deploys a replica on each node,
and the last test kills a node under load.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import random_windows
from serving import http_server, infer_body

pytest.importorskip("ray.serve", reason="Ray is not installed: pip install 'ovcast[ray]'")
pytest.importorskip("ray.data", reason="Ray is not installed: pip install 'ovcast[ray]'")

from ray_cluster import LocalRayCluster, free_port  # noqa: E402

from ovcast import Engine  # noqa: E402
from ovcast.serve.ray.deployment import REPLICA_HEADER  # noqa: E402

SERVE_TIMEOUT_S = 240
SERVE_PORT = free_port()  # Serve's HTTP options are the cluster's: one port for all tests


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster() as cluster:
        cluster.add_node()
        yield cluster
    assert not cluster.processes(), "Ray processes outlived the cluster"


def ovcast(cluster, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ovcast", *args],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ovcast", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_S,
    )


# -- batch forecasting on Ray Data -------------------------------------------------------------


def test_forecast_batch_on_two_nodes_equals_the_local_run(cluster, tmp_path, small_package):
    """100 series x 2,000 windows: the same forecasts with and without Ray."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    series, windows, context = 100, 2000, 64
    rows = windows + context - 1
    values = random_windows(series, rows, 3, seed=7)
    start = np.datetime64("2024-01-01T00:00:00")
    table = pa.table(
        {
            "series_id": np.repeat([f"s{k:03d}" for k in range(series)], rows),
            "date": np.tile(start + np.arange(rows) * np.timedelta64(1, "h"), series),
            **{
                name: values[..., c].reshape(-1)
                for c, name in enumerate(("close", "volume", "rsi"))
            },
        }
    )
    # In no order (rows of every series shuffled together): both paths put them in time order.
    table = table.take(np.random.default_rng(1).permutation(table.num_rows))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=50_000)
    common = [str(tmp_path / "in.parquet"), "--model", str(small_package), "--batch-size", "500"]
    local = run(cluster, "forecast-batch", *common, "--out", str(tmp_path / "local.parquet"))
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = run(
        cluster, "forecast-batch", *common, "--out", str(tmp_path / "ray.parquet"),
        "--ray", "--address", cluster.address, "--workers", "2",
    )  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "200000 windows of" in local.stderr and "200000 windows" in on_ray.stderr

    order = [("series_id", "ascending"), ("origin", "ascending"), ("step", "ascending")]
    want = pq.read_table(tmp_path / "local.parquet").sort_by(order)
    got = pq.read_table(tmp_path / "ray.parquet").sort_by(order)
    assert got.num_rows == want.num_rows == series * windows * 16
    assert got.column_names == want.column_names
    for name in want.column_names:
        np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy(), err_msg=name)

    # A bad cell in one series: the worker's error, in the local path's one line, no file.
    close = table["close"].to_numpy().copy()
    close[np.flatnonzero(table["series_id"].to_numpy() == "s042")[0]] = np.nan
    pq.write_table(table.set_column(2, "close", pa.array(close)), tmp_path / "bad.parquet")
    bad = run(
        cluster, "forecast-batch", str(tmp_path / "bad.parquet"), "--model", str(small_package),
        "--out", str(tmp_path / "bad-out.parquet"), "--ray", "--address", cluster.address,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stderr[-3000:]
    assert "error: series 's042': row" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not list(tmp_path.glob("*bad-out*"))


# -- serving on Ray Serve ----------------------------------------------------------------------


def test_a_port_in_use_is_one_clear_error_and_leaves_serve_stopped(cluster, small_package):
    """Before any Serve runs on the cluster: the proxy cannot bind; ovcast says so in a line
    and stops the Serve it started, so the next start is free to pick its address."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            cluster, "serve", "--mode", "ray", "--address", cluster.address,
            "--model", str(small_package), "--host", "127.0.0.2", "--port", str(port),
        )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-3000:]
    assert f"127.0.0.2:{port}" in errors[0], errors


def test_a_serve_config_file_runs_with_serve_run(cluster, tmp_path, small_package):
    """What users with a Ray cluster do: ``serve run`` (or ``serve deploy``) a config file whose
    application is ovcast's builder, with ``ovcast serve`` options as its args."""
    import tritonclient.http as httpclient

    config = tmp_path / "serve.yaml"
    config.write_text(
        f"""
proxy_location: HeadOnly
http_options: {{host: 127.0.0.2, port: {SERVE_PORT}}}
applications:
  - name: ovcast
    route_prefix: /
    import_path: ovcast.serve.ray.deployment:build_app
    args:
      model: ["small={small_package}"]
      host: 127.0.0.2  # the proxy's host, for the Host header check
      replicas: 1
      max_batch_size: 4
"""
    )
    serve = str(sys.executable).replace("/python", "/serve")
    started = subprocess.run(
        [serve, "run", str(config), "--address", cluster.address, "--non-blocking"],
        env=cluster.env, capture_output=True, text=True, timeout=SERVE_TIMEOUT_S,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        windows = random_windows(2, 64, 3, seed=3)
        client = httpclient.InferenceServerClient(f"127.0.0.2:{SERVE_PORT}", network_timeout=120)
        # --non-blocking returns once the app is submitted: its route exists only once the
        # replica is up (until then Ray's proxy answers 404), so wait for the model's readiness.
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not _model_ready(client, "small"):
            assert time.monotonic() < deadline, "serve run's app never became ready"
            time.sleep(0.2)
        x = httpclient.InferInput("past_values", list(windows.shape), "FP32")
        x.set_data_from_numpy(windows, binary_data=True)
        got = client.infer("small", [x]).as_numpy("prediction_outputs")
        np.testing.assert_array_equal(got, Engine(small_package, threads=1).predict(windows))
    finally:
        script = "import ray; from ray import serve; ray.init(); serve.delete('ovcast')"
        subprocess.run([sys.executable, "-c", script], env=cluster.env, timeout=120, check=True)


def _model_ready(client, name: str) -> bool:
    try:
        return client.is_model_ready(name)
    except Exception:  # the proxy's 404 page before the route exists, a refused connection
        return False


@pytest.fixture(scope="module")
def swap_dir(tmp_path_factory, small_package):
    """A model folder whose package the hot-swap test replaces."""
    folder = tmp_path_factory.mktemp("swap") / "pkg"
    shutil.copytree(small_package, folder)
    return folder


@pytest.fixture(scope="module")
def ray_server(cluster, small_package, other_package, swap_dir):
    """``ovcast serve --mode ray`` joined to the cluster: two replicas, three models."""
    port = SERVE_PORT
    proc = ovcast(
        cluster, "serve", "--mode", "ray", "--address", cluster.address,
        "--model", f"small={small_package}", "--model", f"other={other_package}",
        "--model", f"swap={swap_dir}", "--replicas", "2", "--host", "127.0.0.2",
        "--port", str(port),
    )  # fmt: skip
    log: list[str] = []
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        log.append(line)
        if "ready model=" in line:
            break
        if not line and proc.poll() is not None:
            break
    else:
        proc.kill()
    if proc.poll() is not None or "ready model=" not in log[-1]:
        proc.kill()
        raise AssertionError("ovcast serve --mode ray did not get ready:\n" + "".join(log)[-4000:])
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    proc.port, proc.log = port, log  # type: ignore[attr-defined]
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(log)[-3000:]


def post(port: int, path: str, body: bytes, headers=None, host="127.0.0.2"):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def test_tritonclient_gets_engine_predict_exactly(ray_server, small_package, other_package):
    import tritonclient.http as httpclient

    windows = random_windows(3, 64, 3, seed=11)
    client = httpclient.InferenceServerClient(f"127.0.0.2:{ray_server.port}", network_timeout=120)
    assert client.is_server_ready()
    for name, package in (("small", small_package), ("other", other_package)):
        reference = Engine(package, threads=1)
        for binary in (True, False):
            x = httpclient.InferInput("past_values", list(windows.shape), "FP32")
            x.set_data_from_numpy(windows, binary_data=binary)
            out = httpclient.InferRequestedOutput("prediction_outputs", binary_data=binary)
            got = client.infer(name, [x], outputs=[out]).as_numpy("prediction_outputs")
            np.testing.assert_array_equal(got, reference.predict(windows))
        reference.close()
    index = {(m["name"], m["state"]) for m in client.get_model_repository_index()}
    assert index == {("small", "READY"), ("other", "READY"), ("swap", "READY")}


def test_replicas_on_both_nodes_answer(cluster, ray_server):
    body = infer_body([64, 3], random_windows(1, 64, 3)[0].tolist())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: post(ray_server.port, "/v2/models/small/infer", body), range(40))
        )
    assert all(status == 200 for status, _, _ in answers)
    nodes = {response.getheader(REPLICA_HEADER).split("/")[0] for _, _, response in answers}
    script = "import ray; ray.init(); print(*(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    listed = subprocess.run(
        [sys.executable, "-c", script], env=cluster.env, capture_output=True, text=True, timeout=120
    )
    assert nodes == set(listed.stdout.split()) and len(nodes) == 2, listed.stderr[-2000:]


def test_answers_and_errors_are_those_of_ovcast_serve(
    ray_server, small_package, other_package, swap_dir
):
    """The same requests to ``ovcast serve --mode http`` and to the Ray deployment."""
    window = random_windows(1, 64, 3, seed=5)[0]
    cases = [
        ("/v2/models/small/infer", infer_body([64, 3], window.tolist(), parameters={"raw": True, "channels": [0, 2]})),
        ("/v2/models/small/infer", infer_body([64, 4], np.zeros((64, 4)).tolist())),
        ("/v2/models/small/infer", infer_body([64, 3], [[float("nan")] * 3] * 64)),
        ("/v2/models/small/infer", b"{not json"),
        ("/v2/models/nope/infer", infer_body([64, 3])),
        ("/v2/models/small/versions/7/infer", infer_body([64, 3])),
    ]  # fmt: skip
    models = (f"small={small_package}", f"other={other_package}", f"swap={swap_dir}")
    with http_server(*models) as (_, port):
        for path, body in cases:
            want_status, want, _ = post(port, path, body, host="127.0.0.1")
            status, got, _ = post(ray_server.port, path, body)
            assert (status, got) == (want_status, want), path


def test_load_and_unload_are_refused_on_the_cluster(ray_server):
    status, body, _ = post(ray_server.port, "/v2/repository/models/small/unload", b"")
    assert status == 403 and b"model_control_disabled" in body
    conn = http.client.HTTPConnection("127.0.0.2", ray_server.port, timeout=120)
    conn.request("GET", "/v2")
    metadata = json.loads(conn.getresponse().read())
    conn.close()
    assert metadata["extensions"] == ["binary_tensor_data"]  # not model_repository
    status, _, _ = post(ray_server.port, "/v2/models/small/infer", infer_body([64, 3]))
    assert status == 200  # still served


def test_sighup_hot_swaps_every_replica_and_a_broken_package_leaves_the_old_one(
    ray_server, swap_dir, other_package
):
    windows = random_windows(2, 64, 3, seed=9)
    body = infer_body([2, 64, 3], windows.tolist())
    new = Engine(other_package, threads=1).predict(windows)
    shutil.rmtree(swap_dir)
    shutil.copytree(other_package, swap_dir)

    def hot_swap(generation: int) -> None:
        ray_server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not any(f"generation {generation} deployed" in line for line in ray_server.log):
            status, _, _ = post(ray_server.port, "/v2/models/swap/infer", body)
            assert status == 200  # nothing fails during the swap
            assert time.monotonic() < deadline, "".join(ray_server.log)[-3000:]
            time.sleep(0.2)

    def every_replica_answers_new() -> set[str]:
        seen = set()
        for _ in range(20):
            status, payload, response = post(ray_server.port, "/v2/models/swap/infer", body)
            assert status == 200, payload[:300]
            got = np.array(json.loads(payload)["outputs"][0]["data"], np.float32)
            np.testing.assert_array_equal(got.reshape(new.shape), new)
            seen.add(response.getheader(REPLICA_HEADER))
        assert len(seen) == 2
        return seen

    hot_swap(1)
    replicas = every_replica_answers_new()
    (swap_dir / "model.xml").write_text("<net broken")  # as ovcast serve: refused, old serves on
    hot_swap(2)
    assert every_replica_answers_new() == replicas  # reconfigured, not replaced
    assert ray_server.poll() is None
    shutil.rmtree(swap_dir)
    shutil.copytree(other_package, swap_dir)


def test_another_http_address_on_a_running_serve_is_refused(cluster, ray_server, small_package):
    """Serve's proxy keeps the address it has: a second driver asking for another port is
    refused with the real one, and the running application is left alone."""
    result = run(
        cluster, "serve", "--mode", "ray", "--address", cluster.address,
        "--model", str(small_package), "--host", "127.0.0.2", "--port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"already runs on this cluster with its HTTP proxy on 127.0.0.2:{ray_server.port}" in (
        result.stderr
    )
    assert "ready model=" not in result.stderr
    status, _, _ = post(ray_server.port, "/v2/models/small/infer", infer_body([64, 3]))
    assert status == 200


def test_killing_a_node_loses_no_accepted_request(cluster, ray_server, small_package):
    """Kill the worker node under load: requests in flight on its replica are sent again to
    the other one, and every request is answered with the exact forecast."""
    windows = random_windows(8, 64, 3, seed=13)
    engine = Engine(small_package, threads=1)
    # One window per request, so one per reference call: main's Engine runs batch 1 on its
    # static fast path, whose kernels may differ from a batch of 8 in the last bit.
    reference = np.concatenate([engine.predict(windows[k : k + 1]) for k in range(8)])
    answered: list[tuple[int, int, bytes, str]] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        body = infer_body([64, 3], windows[k % 8].tolist())
        status, payload, response = post(ray_server.port, "/v2/models/small/infer", body)
        with lock:
            answered.append((k, status, payload, response.getheader(REPLICA_HEADER) or ""))
            if len(answered) == 40:  # seven more are in flight, about half on the worker node
                cluster.kill_node(1)  # its raylet, object store and replica, at once

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(one, k) for k in range(200)]:
            future.result()
    assert len(answered) == 200
    for k, status, payload, _ in answered:
        assert status == 200, payload[:300]
        got = np.array(json.loads(payload)["outputs"][0]["data"], np.float32)
        np.testing.assert_array_equal(got.reshape(16, 3), reference[k % 8])
    before = {replica.split("/")[0] for *_, replica in answered[:40]}
    after = {replica.split("/")[0] for *_, replica in answered[-100:]}
    assert len(before) == 2 and len(after) == 1  # both answered; then the survivor alone
    # The proof that requests were in flight there: the ingress's router saw them fail (and
    # Ray sent them again), or ovcast's ingress sent them again itself. With 7 requests in
    # flight at the kill, none on the worker node would happen about once in 2**7 runs.
    text = "".join(
        path.read_text()
        for path in cluster.temp_dir.glob("session_latest/logs/serve/replica_*KServeIngress*.log")
    )
    in_flight = text.count("Request failed because") + text.count("sending it again")
    assert in_flight >= 1, text[-3000:]


def test_the_ray_paths_import_no_torch():
    """Serving and batch forecasting on Ray stay on the runtime path: no torch, no transformers."""
    code = (
        "import sys; import ovcast.serve.ray.deployment, ovcast.serve.ray.cluster, "
        "ovcast.batch.ray_data, ovcast.cli.forecast_batch_cmd; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"


def test_an_address_where_nothing_listens_fails_at_once(tmp_path, small_package, capsys):
    from ovcast.cli import main

    nowhere = f"127.0.0.2:{free_port()}"
    assert (
        main(["serve", "--mode", "ray", "--model", str(small_package), "--address", nowhere]) == 1
    )
    assert f"cannot join the Ray cluster at {nowhere}: nothing answers" in capsys.readouterr().err
    table = tmp_path / "in.csv"
    table.write_text("series_id,date,close,volume,rsi\na,2024-01-01,1,2,3\n")
    code = main(["forecast-batch", str(table), "--model", str(small_package),
                 "--out", str(tmp_path / "o.csv"), "--ray", "--address", nowhere])  # fmt: skip
    assert code == 1
    assert "nothing answers" in capsys.readouterr().err


def test_the_config_file_builder_refuses_bad_settings_before_any_replica(tmp_path, small_package):
    """What ``serve run`` / ``serve deploy`` build in Ray's controller: a misspelt option or a
    missing package fails the build with ovcast's message (no replica is retried)."""
    from ovcast.errors import OvcastError
    from ovcast.serve.ray.deployment import build_app

    with pytest.raises(OvcastError, match=r"unknown settings \['max_batch_sise'\]"):
        build_app({"model": [str(small_package)], "max_batch_sise": 8})
    with pytest.raises(OvcastError, match="nope"):
        build_app({"model": [f"m={tmp_path / 'nope'}"]})


def test_ray_mode_refuses_port_0_before_touching_a_cluster(small_package, capsys):
    from ovcast.cli import main

    assert main(["serve", "--mode", "ray", "--model", str(small_package), "--port", "0"]) == 1
    assert "needs a port number" in capsys.readouterr().err
