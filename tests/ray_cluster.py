"""A real two-node Ray cluster on this machine, for the tests: ``ray start`` processes on loopback.

    with LocalRayCluster(tmp) as cluster:        # head: `ray start --head`, 1 CPU
        cluster.add_node()                       # a second node: `ray start --address`, 1 CPU
        cluster.address                          # "127.0.0.2:PORT" for --address / ray.init
        cluster.kill_node(1)                     # SIGKILL a node's whole process group

Sized for a 2-core box shared with others: 1 CPU per node, an 80 MB object store, no
dashboard, no usage stats, token authentication on. Every node is its own process group
(``start_new_session``) and every process carries a marker in its environment, so teardown
kills exactly this cluster's processes, by their ids, even the workers Ray re-parents, and
never another suite's (``ray stop`` would stop every Ray on the machine).

Loopback: Ray rewrites 127.0.0.1 to the machine's network address (so that other machines
could reach it); 127.0.0.2 is loopback too and left alone, so every node, driver and client
talks over the loopback interface. Ray's daemons still listen on all interfaces (Ray has no
bind-address setting), hence the token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.2"
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 90
OBJECT_STORE_BYTES = 80 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRayCluster:
    def __init__(self) -> None:
        # Short: Ray puts Unix sockets under it (a socket path has at most 107 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ovray-", dir="/tmp"))
        self.marker = secrets.token_hex(8)
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray refuses to spill objects once (total - free) / total passes 0.95; on this
            # shared disk that counts reserved space and ~13 GB free reads as full.
            "RAY_local_fs_capacity_threshold": "0.99",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "OVCAST_TEST_RAY_CLUSTER": self.marker,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        self.port = free_port()
        self.address = f"{HOST}:{self.port}"
        self.env["RAY_ADDRESS"] = self.address
        self.nodes: list[subprocess.Popen] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self._start(
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.temp_dir}",
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_node(self) -> subprocess.Popen:
        return self._start(f"--address={self.address}")

    def _start(self, *args: str) -> subprocess.Popen:
        log = self.temp_dir / f"node{len(self.nodes)}.log"
        node = subprocess.Popen(
            [
                RAY,
                "start",
                "--block",
                f"--node-ip-address={HOST}",
                "--num-cpus=1",
                f"--object-store-memory={OBJECT_STORE_BYTES}",
                f"--dashboard-agent-listen-port={free_port()}",
                "--disable-usage-stats",
                *args,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return node

    def kill_node(self, index: int) -> None:
        """SIGKILL a node at once: its process group (raylet, object store, agents) and its
        workers, which the raylet starts in sessions of their own (replicas among them)."""
        node = self.nodes[index]
        doomed = _descendants(node.pid)
        _kill_group(node)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def processes(self) -> list[int]:
        """Every live process of this cluster (found by the marker in its environment)."""
        needle = f"OVCAST_TEST_RAY_CLUSTER={self.marker}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def close(self) -> None:
        for node in reversed(self.nodes):
            _kill_group(node)
        deadline = time.monotonic() + 20
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid in left:  # re-parented workers and drivers of this cluster only
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        for node in self.nodes:
            node.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
