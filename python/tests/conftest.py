"""Real parts for the exporter tests: a `redis-server` on a free loopback port and a one-node
belfry server built from this checkout (`target/debug/belfry`, or `BELFRY_BIN`), each stopped
at the end of its test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE / "apps"))
T = TypeVar("T")


def wait_for(what: str, timeout: float, check: Callable[[], Optional[T]]) -> T:
    """Polls `check` until it returns a value other than None, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def belfry_bin() -> Path:
    path = Path(os.environ.get("BELFRY_BIN", REPO / "target" / "debug" / "belfry"))
    if not path.exists():
        pytest.skip(f"{path} is not built (cargo build)")
    return path


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="belfry-py-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        wait_for("redis-server", 10, lambda: self._ping())

    def _ping(self) -> Optional[bool]:
        try:
            return True if self.client.ping() else None
        except Exception:
            return None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.dir.cleanup()


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    server = Redis()
    yield server
    server.stop()


class BelfryNode:
    """One belfry server forming a one-node cluster, serving its API without tokens."""

    def __init__(self, redis_url: str, schedules: str = "") -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="belfry-py-node-")
        self.schedules = Path(self.dir.name) / "schedules.toml"
        self.schedules.write_text(schedules)
        self.addr = f"127.0.0.1:{free_port()}"
        self.log = Path(self.dir.name) / "node.log"
        self.proc = subprocess.Popen(
            [str(belfry_bin()), "server", "--node-id", "1", "--listen", self.addr,
             "--peers", f"1={self.addr}", "--data-dir", str(Path(self.dir.name) / "data"),
             "--redis-url", redis_url, "--schedules", str(self.schedules),
             "--metrics-listen", f"127.0.0.1:{free_port()}", "--insecure-no-auth",
             "--insecure-no-tls", "--insecure-no-peer-auth"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        from belfry import Client

        self.client = Client(self.addr, timeout=5)
        wait_for("a leader", 30, self._leader)

    def _leader(self) -> Optional[int]:
        try:
            status = self.client.cluster_status()
        except Exception:
            if self.proc.poll() is not None:
                pytest.fail(f"belfry exited: {self.log.read_text()}")
            return None
        return status.leader_id or None

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


@pytest.fixture
def belfry_node(redis_server: Redis) -> Iterator[BelfryNode]:
    node = BelfryNode(redis_server.url())
    yield node
    node.stop()


def run_cli(*args: str, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Runs the `belfry-celery` console script of the installed package."""
    exe = Path(sys.executable).with_name("belfry-celery")
    full_env = dict(os.environ, PYTHONPATH=str(HERE / "apps"), **(env or {}))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env,
                          timeout=120)
