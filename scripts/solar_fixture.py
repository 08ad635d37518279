#!/usr/bin/env python3
"""Writes tests/fixtures/solar/celery.json: the next solar event after given instants, as
Celery's own `celery.schedules.solar` computes it (with `ephem`).

Usage: python scripts/solar_fixture.py > tests/fixtures/solar/celery.json
       python scripts/solar_fixture.py --cases FILE   (read cases, print Celery's answers)

The case list is deterministic: every event at latitudes from -66 to 66, longitudes across
the globe and start instants in every season of 2026 and 2027.
"""
import json
import sys
from datetime import datetime, timedelta, timezone

import celery
import ephem
from celery import Celery
from celery.schedules import solar

EVENTS = [
    "dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon",
    "sunset", "dusk_civil", "dusk_nautical", "dusk_astronomical",
]
LATITUDES = [-66.0, -51.7, -33.87, -12.05, 0.0, 1.35, 19.43, 35.68, 40.71, 51.5, 59.33, 64.1, 66.0]
LONGITUDES = [-179.5, -122.42, -74.0, -46.63, -0.12, 2.35, 18.07, 77.21, 116.4, 139.69, 151.21, 180.0]
STARTS = [
    "2026-01-05T03:17:00Z", "2026-02-14T12:00:00Z", "2026-03-20T23:45:10Z",
    "2026-04-30T06:30:00Z", "2026-06-21T00:00:00Z", "2026-07-15T18:20:00Z",
    "2026-08-28T09:05:00Z", "2026-09-23T14:59:59Z", "2026-11-11T11:11:11Z",
    "2026-12-21T21:00:00Z", "2027-03-01T00:00:00Z", "2027-06-30T16:40:00Z",
    "2027-10-10T02:00:00Z",
]

APP = Celery("solar_fixture", set_as_current=True)
APP.conf.timezone = "UTC"
APP.conf.enable_utc = True


def parse(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def celery_next(event, lat, lon, after):
    """Celery beat's next run for a schedule last run at `after`."""
    start = parse(after)
    sched = solar(event, lat, lon, nowfun=lambda: start, app=APP)
    remaining = sched.remaining_estimate(start)
    when = start + remaining
    # ephem's answer has sub-second digits: keep milliseconds.
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (when.microsecond // 1000)


def cases():
    out = []
    n = 0
    for e, event in enumerate(EVENTS):
        for i in range(len(LATITUDES) * 2 + 1):
            lat = LATITUDES[(i + e) % len(LATITUDES)]
            lon = LONGITUDES[(i * 5 + e * 7) % len(LONGITUDES)]
            after = STARTS[(i * 3 + e) % len(STARTS)]
            out.append({"event": event, "lat": lat, "lon": lon, "after": after})
            n += 1
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--cases":
        todo = json.load(open(sys.argv[2]))
        for case in todo:
            case["celery"] = celery_next(case["event"], case["lat"], case["lon"], case["after"])
        json.dump(todo, sys.stdout, indent=1)
        return
    todo = cases()
    for case in todo:
        case["celery"] = celery_next(case["event"], case["lat"], case["lon"], case["after"])
    json.dump(
        {
            "generator": "scripts/solar_fixture.py",
            "celery": celery.__version__,
            "ephem": ephem.__version__,
            "cases": todo,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
