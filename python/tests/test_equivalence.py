"""For every crontab entry the exporter writes from the fixture app, belfry's next 50
occurrences (`belfry preview`, the time engine the servers run) equal those Celery's own
schedule object yields in the app's zone, except on the dates the exporter reported; a solar
entry's agree within the minute the exporter reports."""

from __future__ import annotations

import subprocess
import tomllib
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import belfry_bin, run_cli

COUNT = 50


def celery_occurrences(sched, app, after: datetime, count: int):
    """Celery's next runs: with the clock pinned at each previous run, the next instant at which
    `remaining_estimate` reaches zero."""
    sched.app = app
    own = sched.nowfun
    out = []
    at = after
    for _ in range(count):
        pinned = at
        zone = own().tzinfo if own else timezone.utc
        sched.nowfun = lambda: pinned.astimezone(zone)
        nxt = (pinned + sched.remaining_estimate(pinned)).astimezone(timezone.utc)
        out.append(nxt)
        at = nxt
    sched.nowfun = own
    return out


def belfry_occurrences(entry: dict, after: datetime, count: int):
    if "solar" in entry:
        spec = ["--solar", entry["solar"], "--lat", str(entry["latitude"]),
                "--lon", str(entry["longitude"])]
    else:
        spec = ["--crontab", entry["crontab"], "--tz", entry["tz"]]
    text = subprocess.run(
        [str(belfry_bin()), "preview", *spec,
         "--after", after.strftime("%Y-%m-%dT%H:%M:%SZ"), "-n", str(count)],
        check=True, capture_output=True, text=True).stdout
    return [datetime.fromisoformat(line.replace("Z", "+00:00")) for line in text.split()]


def noted_dates(stderr: str, name: str):
    for line in stderr.splitlines():
        if line.startswith(f"note {name!r}: daylight saving in "):
            dates = line.split(" on ", 1)[1].split(":", 1)[0]
            return {d.strip() for d in dates.replace(" and later", "").split(",")}
    return set()


@pytest.mark.parametrize("after", [
    datetime.now(timezone.utc).replace(second=0, microsecond=0),
    # Across Paris' spring-forward and fall-back days.
    datetime(2027, 3, 27, 12, 0, tzinfo=timezone.utc),
    datetime(2027, 10, 30, 12, 0, tzinfo=timezone.utc),
], ids=["now", "spring-2027", "autumn-2027"])
def test_crontabs_match_celery(tmp_path, after):
    from belfry.celery_export.beat_app import beat_entries, load_app

    app = load_app("beat_fixture:app")
    out = tmp_path / "schedules.toml"
    proc = run_cli("export", "--app", "beat_fixture:app", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    entries = {s["name"]: s for s in tomllib.loads(out.read_text())["schedule"]}
    beat = beat_entries(app)
    compared = 0
    for name, entry in entries.items():
        if "crontab" not in entry or name not in beat:
            continue
        zone = ZoneInfo(entry["tz"])
        skip = noted_dates(proc.stderr, name)
        ours = belfry_occurrences(entry, after, COUNT)
        theirs = celery_occurrences(beat[name]["schedule"], app, after, COUNT)
        if skip:
            last = min(ours[-1], theirs[-1])
            ours = [t for t in ours if t <= last and t.astimezone(zone).date().isoformat() not in skip
                    and (t - timedelta(hours=3)).astimezone(zone).date().isoformat() not in skip]
            theirs = [t for t in theirs if t <= last and t.astimezone(zone).date().isoformat() not in skip
                      and (t - timedelta(hours=3)).astimezone(zone).date().isoformat() not in skip]
        assert ours == theirs, f"{name} ({entry['crontab']} in {entry['tz']}) after {after}"
        compared += 1
    assert compared == 7


def test_solar_matches_celery_within_the_reported_minute(tmp_path):
    from belfry.celery_export.beat_app import beat_entries, load_app

    app = load_app("beat_fixture:app")
    out = tmp_path / "schedules.toml"
    proc = run_cli("export", "--app", "beat_fixture:app", "-o", str(out))
    assert "note 'sunrise-paris': solar sunrise: " in proc.stderr
    entry = {s["name"]: s for s in tomllib.loads(out.read_text())["schedule"]}["sunrise-paris"]
    after = datetime(2027, 1, 1, tzinfo=timezone.utc)
    ours = belfry_occurrences(entry, after, COUNT)
    theirs = celery_occurrences(beat_entries(app)["sunrise-paris"]["schedule"], app, after, COUNT)
    assert len(ours) == len(theirs) == COUNT
    worst = max(abs((a - b).total_seconds()) for a, b in zip(ours, theirs))
    assert worst <= 60, f"sunrise in Paris differs by {worst:.1f}s from Celery's"
