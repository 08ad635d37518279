"""`belfry-celery export` on real Celery apps: what it writes, what it refuses, the last runs it
reads from beat's own schedule file, and a belfry server accepting the result."""

from __future__ import annotations

import shelve
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import BelfryNode, run_cli, wait_for


def export(tmp_path: Path, *args: str, env=None):
    out = tmp_path / "schedules.toml"
    proc = run_cli("export", *args, "-o", str(out), env=env)
    return proc, out


def by_name(path: Path) -> dict:
    return {s["name"]: s for s in tomllib.loads(path.read_text())["schedule"]}


def test_every_entry_translates_with_its_options(tmp_path):
    proc, out = export(tmp_path, "--app", "beat_fixture:app")
    assert proc.returncode == 0, proc.stderr
    got = by_name(out)
    # add_periodic_task entries registered on configure and on finalize are found.
    assert got["added-on-configure"]["every"] == "30s"
    assert got["added-on-configure"]["args"] == ["configured"]
    assert got["added-on-finalize"]["crontab"] == "0 3 * * *"
    assert got["every-10s"] == {
        "name": "every-10s", "task": "fixture.ping", "every": "10s", "args": [1, "two"],
        "kwargs": {}, "labels": {"migrated-from": "celery-beat"}}
    assert got["every-90-min"]["every"] == "1h30m"
    assert got["every-90-min"]["kwargs"] == {"region": "eu"}
    morning = got["weekday-mornings"]
    assert (morning["crontab"], morning["tz"]) == ("30 7 * * mon-fri", "Europe/Paris")
    assert morning["options"] == {"queue": "reports", "priority": 3, "expires": 600,
                                  "headers": {"team": "data"}, "time_limit": 30,
                                  "soft_time_limit": 20, "ignore_result": True}
    assert got["first-of-month"]["crontab"] == "0 6,18 1 * *"
    # task_routes decide the queue when the entry names none.
    assert got["routed"]["options"] == {"queue": "reports"}
    # A crontab whose nowfun only reads the clock in another zone runs in the app's zone.
    assert got["paris-clock"]["tz"] == "Europe/Paris"
    assert got["expires-at"]["options"] == {"expires": "2030-01-01T00:00:00Z"}
    assert (got["sunrise-paris"]["solar"], got["sunrise-paris"]["latitude"],
            got["sunrise-paris"]["longitude"]) == ("sunrise", 48.85, 2.35)
    # Relative intervals run on the hour: an hourly interval anchored on a local hour.
    anchor = datetime.fromisoformat(got["hourly-relative"]["anchor"].replace("Z", "+00:00"))
    assert got["hourly-relative"]["every"] == "1h" and anchor.minute == anchor.second == 0
    # The app has a result expiry and no auto-expiring backend: beat adds its cleanup entry.
    assert got["celery.backend_cleanup"]["crontab"] == "0 4 * * *"


def test_differences_are_reported_per_entry(tmp_path):
    proc, out = export(tmp_path, "--app", "beat_fixture:app")
    text = out.read_text()
    drift = "counted from the previous run, so its runs drift"
    assert f"note 'every-10s': Celery runs every 10s {drift}" in proc.stderr
    assert f"# Celery runs every 10s {drift}" in text
    # "*/15" has times in the hours Paris skips and repeats; "30 7" does not.
    assert "note 'quarter-hours': daylight saving in Europe/Paris on 2027-03-28" in proc.stderr
    assert "note 'weekday-mornings'" not in proc.stderr


def test_untranslatable_entries_are_refused_by_name(tmp_path):
    proc, out = export(tmp_path, "--app", "refused_fixture:app")
    assert proc.returncode == 2
    assert not out.exists(), "nothing is written while an entry is refused"
    refused = {line.split("'")[1]: line for line in proc.stderr.splitlines()
               if line.startswith("refused ")}
    assert set(refused) == {"custom-class", "named-exchange", "fanout-queue", "pickle",
                            "countdown", "fraction", "shifted-clock"}
    assert "custom schedule class refused_fixture.EveryOtherDay" in refused["custom-class"]
    assert "exchange events (direct) with routing key audit" in refused["named-exchange"]
    assert "(fanout)" in refused["fanout-queue"]
    assert "serializer 'pickle'" in refused["pickle"]
    assert "countdown" in refused["countdown"]
    assert "not the current time" in refused["shifted-clock"]

    proc, out = export(tmp_path, "--app", "refused_fixture:app", "--skip-refused")
    assert proc.returncode == 0, proc.stderr
    assert list(by_name(out)) == ["celery.backend_cleanup", "kept"]


def beat_schedule_file(tmp_path: Path, last: datetime) -> str:
    """Beat's own persistent schedule file, written by Celery's PersistentScheduler."""
    import beat_fixture
    from celery.beat import PersistentScheduler

    path = str(tmp_path / "celerybeat-schedule")
    scheduler = PersistentScheduler(app=beat_fixture.app, schedule_filename=path, lazy=False)
    scheduler.schedule["every-10s"].last_run_at = last
    scheduler.schedule["weekday-mornings"].last_run_at = last
    scheduler.sync()
    scheduler.close()
    with shelve.open(path, flag="r") as db:
        assert db["entries"]["every-10s"].last_run_at == last
    return path


def test_last_runs_come_from_beats_schedule_file(tmp_path):
    last = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=timezone.utc)
    path = beat_schedule_file(tmp_path, last)
    proc, out = export(tmp_path, "--app", "beat_fixture:app", "-s", path)
    assert proc.returncode == 0, proc.stderr
    got = by_name(out)
    assert got["every-10s"]["last_run_at"] == "2026-03-01T12:00:05.250000Z"
    # Celery's next run is the last run plus the interval: belfry anchors there.
    assert got["every-10s"]["anchor"] == "2026-03-01T12:00:05.250000Z"
    assert got["weekday-mornings"]["last_run_at"] == "2026-03-01T12:00:05.250000Z"


def test_a_belfry_server_accepts_the_exported_file_and_the_apply(tmp_path, redis_server):
    last = datetime.now(timezone.utc) - timedelta(minutes=5)
    path = beat_schedule_file(tmp_path, last)
    proc, out = export(tmp_path, "--app", "beat_fixture:app", "-s", path)
    assert proc.returncode == 0, proc.stderr
    exported = by_name(out)
    assert "solar" in exported["sunrise-paris"] and "last_run_at" in exported["every-10s"]
    node = BelfryNode(redis_server.url(), schedules=out.read_text())
    try:
        names = wait_for("the file's schedules", 30, lambda: (
            {s.definition.name for s in node.client.list()} or None))
        assert names == set(exported), node.log.read_text()
        stored = node.client.get("weekday-mornings").definition
        assert (stored.spec.crontab, stored.spec.timezone) == ("30 7 * * mon-fri", "Europe/Paris")
        assert (stored.options.queue, stored.options.priority) == ("reports", 3)
        sun = node.client.get("sunrise-paris").definition.spec
        assert (sun.solar, sun.latitude, sun.longitude) == ("sunrise", 48.85, 2.35)

        proc = run_cli("export", "--app", "beat_fixture:app", "-s", path, "--apply",
                       "--endpoint", node.addr)
        assert proc.returncode == 0, proc.stderr
        assert "applied 13 schedule(s): 0 created, 13 updated" in proc.stderr
    finally:
        node.stop()
