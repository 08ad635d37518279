"""`belfry-celery export-django` on django-celery-beat 2.9's real tables (SQLite, migrated with
its own migrations; conftest's `django_db`): every schedule kind, the row options, and the
refusals."""

from __future__ import annotations

import tomllib

from conftest import run_cli


def test_every_row_kind_exports(tmp_path, django_db):
    out = tmp_path / "schedules.toml"
    proc = run_cli("export-django", "--settings", "dj_settings", "--app", "dj_celery:app",
                   "-o", str(out), env={"BELFRY_TEST_DJANGO_DB": django_db})
    assert proc.returncode == 2
    refused = sorted(line.split("'")[1] for line in proc.stderr.splitlines()
                     if line.startswith("refused "))
    assert refused == ["exchanged", "once-recurring"], proc.stderr
    assert "one_off with a recurring schedule" in proc.stderr
    assert "exchange events (direct) with routing key audit" in proc.stderr

    proc = run_cli("export-django", "--settings", "dj_settings", "--app", "dj_celery:app",
                   "--skip-refused", "-o", str(out),
                   env={"BELFRY_TEST_DJANGO_DB": django_db})
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
