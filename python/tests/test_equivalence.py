"""For every entry each exporter writes from its fixture (the Celery app, the django-celery-beat
rows, the RedBeat keys), belfry's next 50 occurrences (`belfry preview`, the time engine the
servers run) equal those of the schedule object Celery itself runs for that entry, evaluated by
Celery's code: except on the dates of a daylight-saving difference the exporter reported, and a
solar entry's, which agree within the minute the exporter reports. An interval is compared from
its anchor (the last run Celery counts from) with every run on time; the drift late runs cause
in Celery is the difference its note reports. Every entry an exporter does not write, it refused."""

from __future__ import annotations

import subprocess
import tomllib
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import belfry_bin, run_cli

COUNT = 50
AFTERS = pytest.mark.parametrize("after", [
    datetime.now(timezone.utc).replace(second=0, microsecond=0),
    # Across Paris' spring-forward and fall-back days.
    datetime(2027, 3, 27, 12, 0, tzinfo=timezone.utc),
    datetime(2027, 10, 30, 12, 0, tzinfo=timezone.utc),
], ids=["now", "spring-2027", "autumn-2027"])


def celery_occurrences(sched, app, after: datetime, count: int):
    """Celery's next runs: with the clock pinned at each previous run, the next instant at which
    `remaining_estimate` reaches zero (to the second, as `belfry preview` prints them)."""
    sched.app = app
    own = sched.nowfun
    out = []
    at = after
    for _ in range(count):
        pinned = at
        zone = own().tzinfo if own else timezone.utc
        sched.nowfun = lambda: pinned.astimezone(zone)
        nxt = (pinned + sched.remaining_estimate(pinned)).astimezone(timezone.utc)
        out.append(nxt.replace(microsecond=0))
        at = nxt
    sched.nowfun = own
    return out


def belfry_occurrences(entry: dict, after: datetime, count: int):
    if "solar" in entry:
        spec = ["--solar", entry["solar"], "--lat", str(entry["latitude"]),
                "--lon", str(entry["longitude"])]
    elif "crontab" in entry:
        spec = ["--crontab", entry["crontab"], "--tz", entry["tz"]]
    elif "every" in entry:
        spec = ["--every", entry["every"], "--anchor", entry.get("anchor", utc_text(after))]
    else:
        spec = ["--once", entry["once"]]
    for bound in ("start_at", "end_at"):
        if bound in entry:
            spec += [f"--{bound.replace('_', '-')}", entry[bound]]
    text = subprocess.run(
        [str(belfry_bin()), "preview", *spec, "--after", utc_text(after), "-n", str(count)],
        check=True, capture_output=True, text=True).stdout
    return [parse_utc(line) for line in text.split()]


def utc_text(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def noted_dates(stderr: str, name: str):
    for line in stderr.splitlines():
        if line.startswith(f"note {name!r}: daylight saving in "):
            dates = line.split(" on ", 1)[1].split(":", 1)[0]
            return {d.strip() for d in dates.replace(" and later", "").split(",")}
    return set()


def export(tmp_path, command: str, *args: str, env=None):
    """The entries `belfry-celery COMMAND` writes (by belfry name), the names it refused, and its
    stderr (one line per refusal and per note)."""
    out = tmp_path / f"{command}.toml"
    proc = run_cli(command, *args, "--skip-refused", "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    entries = {s["name"]: s for s in tomllib.loads(out.read_text())["schedule"]}
    refused = {line.split("'")[1] for line in proc.stderr.splitlines()
               if line.startswith("refused ")}
    return entries, refused, proc.stderr


def assert_equivalent(name: str, entry: dict, sched, app, after: datetime, stderr: str) -> str:
    """Compares one exported entry with Celery's schedule object; returns the kind compared."""
    if "solar" in entry:
        assert f"note {name!r}: solar {entry['solar']}: " in stderr
        ours = belfry_occurrences(entry, after, COUNT)
        theirs = celery_occurrences(sched, app, after, COUNT)
        assert len(ours) == len(theirs) == COUNT, name
        worst = max(abs((a - b).total_seconds()) for a, b in zip(ours, theirs))
        assert worst <= 60, f"{name}: {entry['solar']} differs by {worst:.1f}s from Celery's"
        return "solar"
    if "every" in entry or "once" in entry:
        start = parse_utc(entry["anchor"]) if "anchor" in entry else after
        count = COUNT if "every" in entry else 1
        ours = belfry_occurrences(entry, start, count)
        theirs = celery_occurrences(sched, app, start, count)
        assert ours == theirs, f"{name} ({entry.get('every') or entry['once']}) from {start}"
        return "every" if "every" in entry else "once"
    zone = ZoneInfo(entry["tz"])
    ours = belfry_occurrences(entry, after, COUNT)
    theirs = celery_occurrences(sched, app, after, COUNT)
    skip = noted_dates(stderr, name)
    if skip:
        # Only the reported dates (and the early hours after them) may differ.
        last = min(ours[-1], theirs[-1])

        def kept(times):
            return [t for t in times if t <= last
                    and t.astimezone(zone).date().isoformat() not in skip
                    and (t - timedelta(hours=3)).astimezone(zone).date().isoformat() not in skip]

        ours, theirs = kept(ours), kept(theirs)
    assert ours == theirs, f"{name} ({entry['crontab']} in {entry['tz']}) after {after}"
    return "crontab"


def assert_all_equivalent(entries: dict, refused: set, schedules: dict, app, after, stderr):
    """Every source schedule (by belfry name) was exported and matches, or was refused; returns
    how many of each kind were compared."""
    assert set(entries) | refused == set(schedules) and not set(entries) & refused, stderr
    return Counter(assert_equivalent(name, entry, schedules[name], app, after, stderr)
                   for name, entry in entries.items())


@AFTERS
def test_celery_app_matches_celery(tmp_path, after):
    from celery.beat import ScheduleEntry

    from belfry.celery_export.beat_app import beat_entries, load_app

    app = load_app("beat_fixture:app")
    entries, refused, stderr = export(tmp_path, "export", "--app", "beat_fixture:app")
    # The schedule objects beat builds from `beat_schedule` (seconds and timedeltas included).
    schedules = {name: ScheduleEntry(**dict(raw, name=name, app=app)).schedule
                 for name, raw in beat_entries(app).items()}
    kinds = assert_all_equivalent(entries, refused, schedules, app, after, stderr)
    assert kinds == {"crontab": 7, "every": 5, "solar": 1}
    assert noted_dates(stderr, "quarter-hours") and noted_dates(stderr, "routed")


@pytest.fixture
def django_rows(django_db, monkeypatch):
    """The fixture's `PeriodicTask` rows by belfry name, read in this process (settings and
    database are set once per process: `django_db` is the session's)."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "dj_settings")
    monkeypatch.setenv("BELFRY_TEST_DJANGO_DB", django_db)
    import django

    django.setup()
    from django_celery_beat.models import PeriodicTask

    from belfry.celery_export.model import belfry_name

    return {belfry_name(row.name): row for row in PeriodicTask.objects.all()}


@AFTERS
def test_django_rows_match_celery(tmp_path, django_db, django_rows, after):
    from belfry.celery_export.beat_app import load_app

    app = load_app("dj_celery:app")
    entries, refused, stderr = export(
        tmp_path, "export-django", "--settings", "dj_settings", "--app", "dj_celery:app",
        env={"BELFRY_TEST_DJANGO_DB": django_db})
    # The model's own `schedule`: a crontab in its row's zone, an interval, a solar or clocked.
    schedules = {name: row.schedule for name, row in django_rows.items()}
    kinds = assert_all_equivalent(entries, refused, schedules, app, after, stderr)
    assert kinds == {"crontab": 2, "every": 2, "solar": 1, "once": 1}
    assert noted_dates(stderr, "paris-night")
    assert refused == {"exchanged", "once-recurring"}


@AFTERS
def test_redbeat_entries_match_celery(tmp_path, redis_server, redbeat_app, after):
    from redbeat import RedBeatSchedulerEntry

    entries, refused, stderr = export(tmp_path, "export-redbeat", "--redis-url",
                                      redis_server.url(), "--key-prefix", "rb:")
    # The schedule objects RedBeat loads from its keys.
    keys = [k.decode() for k in redis_server.client.zrange("rb::schedule", 0, -1)]
    schedules = {key[len("rb:"):]: RedBeatSchedulerEntry.from_key(key, app=redbeat_app).schedule
                 for key in keys}
    kinds = assert_all_equivalent(entries, refused, schedules, redbeat_app, after, stderr)
    assert kinds == {"crontab": 1, "every": 1}
    assert refused == {"rrule"}
