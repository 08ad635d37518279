"""`belfry-celery export-django` on django-celery-beat 2.9's real tables (SQLite, migrated with
its own migrations): every schedule kind, the row options, and the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib

from conftest import HERE, run_cli

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
    sunset = SolarSchedule.objects.create(event="sunset", latitude=52.52, longitude=13.405)
    clock = ClockedSchedule.objects.create(clocked_time=datetime(2030, 5, 1, 6, 0, tzinfo=utc))
    PeriodicTask.objects.create(name="heartbeat", task="app.ping", interval=every30,
        args=json.dumps([1, "x"]), kwargs=json.dumps({"k": True}),
        last_run_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc))
    PeriodicTask.objects.create(name="tokyo morning", task="app.report", crontab=tokyo,
        queue="reports", priority=5, headers=json.dumps({"team": "jp"}), expire_seconds=120,
        description="weekday report", start_time=datetime(2026, 6, 1, tzinfo=utc),
        expires=None)
    PeriodicTask.objects.create(name="sunset", task="app.lights", solar=sunset,
        expires=datetime(2031, 1, 1, tzinfo=utc))
    PeriodicTask.objects.create(name="launch", task="app.launch", clocked=clock, one_off=True)
    PeriodicTask.objects.create(name="paused", task="app.ping", interval=every30, enabled=False)
    PeriodicTask.objects.create(name="once-recurring", task="app.ping", interval=every30,
        one_off=True)
    PeriodicTask.objects.create(name="exchanged", task="app.ping", interval=every30,
        exchange="events", routing_key="audit")
''')


def test_every_row_kind_exports(tmp_path):
    env = dict(os.environ, BELFRY_TEST_DJANGO_DB=str(tmp_path / "db.sqlite3"),
               DJANGO_SETTINGS_MODULE="dj_settings", PYTHONPATH=str(HERE / "apps"))
    subprocess.run([sys.executable, "-c", POPULATE], check=True, env=env)
    out = tmp_path / "schedules.toml"
    proc = run_cli("export-django", "--settings", "dj_settings", "--app", "dj_celery:app",
                   "-o", str(out), env={"BELFRY_TEST_DJANGO_DB": env["BELFRY_TEST_DJANGO_DB"]})
    assert proc.returncode == 2
    refused = sorted(line.split("'")[1] for line in proc.stderr.splitlines()
                     if line.startswith("refused "))
    assert refused == ["exchanged", "once-recurring"], proc.stderr
    assert "one_off with a recurring schedule" in proc.stderr
    assert "exchange events (direct) with routing key audit" in proc.stderr

    proc = run_cli("export-django", "--settings", "dj_settings", "--app", "dj_celery:app",
                   "--skip-refused", "-o", str(out),
                   env={"BELFRY_TEST_DJANGO_DB": env["BELFRY_TEST_DJANGO_DB"]})
    assert proc.returncode == 0, proc.stderr
    got = {s["name"]: s for s in tomllib.loads(out.read_text())["schedule"]}
    beat = got["heartbeat"]
    assert (beat["every"], beat["anchor"], beat["last_run_at"]) == (
        "30s", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z")
    assert (beat["args"], beat["kwargs"]) == ([1, "x"], {"k": True})
    assert beat["options"] == {"headers": {"periodic_task_name": "heartbeat"}}
    # A name with a space becomes a belfry name; the original stays in the description.
    tokyo = got["tokyo-morning"]
    assert (tokyo["crontab"], tokyo["tz"]) == ("0 9 * * 1-5", "Asia/Tokyo")
    assert tokyo["start_at"] == "2026-06-01T00:00:00Z"
    assert tokyo["options"] == {"queue": "reports", "priority": 5, "expires": 120,
                                "headers": {"team": "jp", "periodic_task_name": "tokyo morning"}}
    assert tokyo["description"] == "weekday report\ndjango-celery-beat 'tokyo morning'"
    sunset = got["sunset"]
    assert (sunset["solar"], sunset["latitude"], sunset["longitude"]) == ("sunset", 52.52, 13.405)
    assert sunset["end_at"] == "2031-01-01T00:00:00Z"
    assert sunset["options"]["expires"] == "2031-01-01T00:00:00Z"
    assert got["launch"]["once"] == "2030-05-01T06:00:00Z"
    assert got["launch"].get("enabled", True) is True
    assert got["paused"]["enabled"] is False
