"""Real parts for the exporter tests: a `redis-server` on a free loopback port and a one-node
belfry server built from this checkout (`target/debug/belfry`, or `BELFRY_BIN`), each stopped
at the end of its test; and the exporters' inputs: django-celery-beat's tables and RedBeat's
keys, written by those packages themselves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
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


# django-celery-beat's tables (SQLite, migrated with its own migrations), one row of each kind.
POPULATE = textwrap.dedent('''
    import json
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django_celery_beat.models import (ClockedSchedule, CrontabSchedule, IntervalSchedule,
                                           PeriodicTask, SolarSchedule)
    utc = timezone.utc
    every30 = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    tokyo = CrontabSchedule.objects.create(minute="0", hour="9", day_of_week="1-5",
                                           timezone=ZoneInfo("Asia/Tokyo"))
    # In the hour Paris skips or repeats at a daylight-saving change (the app's zone: New York).
    paris = CrontabSchedule.objects.create(minute="30", hour="2",
                                           timezone=ZoneInfo("Europe/Paris"))
    sunset = SolarSchedule.objects.create(event="sunset", latitude=52.52, longitude=13.405)
    clock = ClockedSchedule.objects.create(clocked_time=datetime(2030, 5, 1, 6, 0, tzinfo=utc))
    PeriodicTask.objects.create(name="heartbeat", task="app.ping", interval=every30,
        args=json.dumps([1, "x"]), kwargs=json.dumps({"k": True}),
        last_run_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc))
    PeriodicTask.objects.create(name="tokyo morning", task="app.report", crontab=tokyo,
        queue="reports", priority=5, headers=json.dumps({"team": "jp"}), expire_seconds=120,
        description="weekday report", start_time=datetime(2026, 6, 1, tzinfo=utc),
        expires=None)
    PeriodicTask.objects.create(name="paris-night", task="app.report", crontab=paris)
    PeriodicTask.objects.create(name="sunset", task="app.lights", solar=sunset,
        expires=datetime(2031, 1, 1, tzinfo=utc))
    PeriodicTask.objects.create(name="launch", task="app.launch", clocked=clock, one_off=True)
    PeriodicTask.objects.create(name="paused", task="app.ping", interval=every30, enabled=False)
    PeriodicTask.objects.create(name="once-recurring", task="app.ping", interval=every30,
        one_off=True)
    PeriodicTask.objects.create(name="exchanged", task="app.ping", interval=every30,
        exchange="events", routing_key="audit")
''')


@pytest.fixture(scope="session")
def django_db(tmp_path_factory) -> str:
    """The path of a database holding the POPULATE rows (`BELFRY_TEST_DJANGO_DB` for dj_settings);
    the exporter only reads it, so the session shares one."""
    path = str(tmp_path_factory.mktemp("django") / "db.sqlite3")
    env = dict(os.environ, BELFRY_TEST_DJANGO_DB=path, DJANGO_SETTINGS_MODULE="dj_settings",
               PYTHONPATH=str(HERE / "apps"))
    subprocess.run([sys.executable, "-c", POPULATE], check=True, env=env)
    return path


REDBEAT_LAST_RUN = datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


@pytest.fixture
def redbeat_app(redis_server: Redis):
    """A Celery app whose RedBeat entries (prefix `rb:`) celery-redbeat itself saved: an interval
    with a last run, a crontab, and an rrule (a schedule class belfry refuses)."""
    from celery import Celery
    from celery.schedules import crontab, schedule
    from redbeat import RedBeatSchedulerEntry
    from redbeat.schedules import rrule

    app = Celery("redbeat_fixture")
    app.conf.redbeat_redis_url = redis_server.url()
    app.conf.redbeat_key_prefix = "rb:"
    every = RedBeatSchedulerEntry("every-20s", "app.ping", schedule(timedelta(seconds=20)),
                                  args=[7], kwargs={"a": 1}, options={"queue": "pings",
                                                                      "priority": 2}, app=app)
    every.save()
    every.reschedule(last_run_at=REDBEAT_LAST_RUN)
    RedBeatSchedulerEntry("nightly", "app.report", crontab(minute=15, hour=2), app=app).save()
    RedBeatSchedulerEntry("rrule", "app.ping", rrule("MINUTELY", interval=5), app=app).save()
    assert redis_server.client.zcard("rb::schedule") == 3
    return app
