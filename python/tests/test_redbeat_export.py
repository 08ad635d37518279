"""`belfry-celery export-redbeat` on the keys celery-redbeat 2.4 itself writes to a real
`redis-server` (conftest's `redbeat_app`): definitions, last runs from `meta`, and a refused
rrule."""

from __future__ import annotations

import tomllib
from datetime import timezone

from conftest import run_cli


def test_redbeat_entries_and_last_runs(tmp_path, redis_server, redbeat_app):
    from redbeat import RedBeatSchedulerEntry

    out = tmp_path / "schedules.toml"
    proc = run_cli("export-redbeat", "--redis-url", redis_server.url(), "--key-prefix", "rb:",
                   "--skip-refused", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "refused 'rrule': custom schedule class redbeat.schedules.rrule" in proc.stderr
    got = {s["name"]: s for s in tomllib.loads(out.read_text())["schedule"]}
    assert set(got) == {"every-20s", "nightly"}
    e = got["every-20s"]
    assert (e["every"], e["anchor"], e["last_run_at"]) == (
        "20s", "2026-02-03T04:05:06Z", "2026-02-03T04:05:06Z")
    assert (e["args"], e["kwargs"], e["options"]) == ([7], {"a": 1},
                                                      {"queue": "pings", "priority": 2})
    # Without --app the zone is Celery's default, UTC.
    assert (got["nightly"]["crontab"], got["nightly"]["tz"]) == ("15 2 * * *", "UTC")
    # RedBeat stores a new entry's creation instant as its last run, and counts from it.
    stored = RedBeatSchedulerEntry.from_key("rb:nightly", app=redbeat_app).last_run_at
    assert got["nightly"]["last_run_at"] == stored.astimezone(timezone.utc).isoformat().replace(
        "+00:00", "Z")
