"""Translates Celery schedule objects and `apply_async` options into belfry's terms.

Invariant: a translation either keeps Celery's meaning, listing in `notes` each place where
belfry's behaviour differs (drift, daylight saving), or raises `Untranslatable` naming what it
could not keep. It must not read any beat state (last runs come from the callers).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Dict, List, Optional, Tuple

SOLAR_EVENTS = ("dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon",
                "sunset", "dusk_civil", "dusk_nautical", "dusk_astronomical")
# Options belfry carries, and those that only matter to AMQP brokers and change nothing on Redis.
NO_EFFECT_ON_REDIS = ("delivery_mode", "mandatory", "immediate", "exchange_type")
# The slack allowed between a crontab's `nowfun` and the real clock.
NOWFUN_SLACK = timedelta(seconds=60)

Spec = Dict[str, Any]


class Untranslatable(Exception):
    """Why a schedule or an option cannot be carried over faithfully."""


def zone_name(tz: Optional[tzinfo]) -> str:
    """The IANA name of a time zone object (zoneinfo, pytz, dateutil or UTC)."""
    if tz is None or tz is timezone.utc:
        return "UTC"
    for attr in ("key", "zone"):
        name = getattr(tz, attr, None)
        if isinstance(name, str) and name:
            return name
    if type(tz).__name__ == "LocalTimezone":
        return local_zone_name()
    if isinstance(tz, timezone) and tz.utcoffset(None) == timedelta(0):
        return "UTC"
    raise Untranslatable(f"time zone {tz!r} has no IANA name: set Celery's `timezone` setting")


def local_zone_name() -> str:
    """The machine's IANA zone (Celery's zone when `enable_utc` is off and `timezone` unset)."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env and "/" in env or env == "UTC":
        return env
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    raise Untranslatable("Celery uses this machine's local time zone, whose IANA name is "
                         "unknown: set Celery's `timezone` setting or TZ")


def transitions(name: str, years: int = 10) -> List[Tuple[datetime, datetime]]:
    """The zone's offset changes in the coming years, as (instant, local wall time before it)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(name)
    found = []
    at = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    end = at + timedelta(days=366 * years)
    step = timedelta(days=1)
    while at < end:
        nxt = at + step
        if at.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = at, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append((hi, hi.astimezone(zone)))
        at = nxt
    return found


def dst_dates(sched: Any, name: str) -> List[str]:
    """Local dates of coming transitions whose skipped or repeated wall times the crontab hits."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(name)
    dates = []
    for instant, after in transitions(name):
        before = (instant - timedelta(minutes=1)).astimezone(zone)
        shift = after.utcoffset() - before.utcoffset()
        # The wall times that are skipped (spring) or repeated (autumn) around the change.
        wall = after.replace(tzinfo=None)
        lo, hi = (wall - shift, wall) if shift > timedelta(0) else (wall, wall - shift)
        t = lo
        while t < hi:
            dow = t.isoweekday() % 7
            if (t.minute in sched.minute and t.hour in sched.hour and t.day in sched.day_of_month
                    and t.month in sched.month_of_year and dow in sched.day_of_week):
                dates.append(t.date().isoformat())
                break
            t += timedelta(minutes=1)
    return dates


def every_text(delta: timedelta) -> str:
    """A timedelta as belfry's `every` (whole seconds, e.g. `1h30m`)."""
    total = delta.total_seconds()
    if total <= 0 or total != int(total):
        raise Untranslatable(f"interval {delta} is not a positive whole number of seconds")
    seconds = int(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def translate_schedule(sched: Any, tz_name: str, last_run_at: Optional[datetime],
                       allow_subclass: Tuple[type, ...] = ()) -> Tuple[Spec, List[str]]:
    """A Celery schedule (`schedule`, `crontab`, `solar`, a timedelta or seconds) as belfry spec
    keys, with the differences to report."""
    from celery import schedules

    if isinstance(sched, (int, float)) and not isinstance(sched, bool):
        sched = timedelta(seconds=sched)
    if isinstance(sched, timedelta):
        sched = schedules.schedule(sched)
    kind = type(sched)
    if kind is schedules.schedule:
        return interval_spec(sched, tz_name, last_run_at)
    if kind is schedules.crontab or kind in allow_subclass:
        return crontab_spec(sched, tz_name)
    if kind is schedules.solar:
        return solar_spec(sched)
    raise Untranslatable(f"custom schedule class {kind.__module__}.{kind.__qualname__}: belfry "
                         "knows interval, crontab, solar and one-off schedules only")


def interval_spec(sched: Any, tz_name: str,
                  last_run_at: Optional[datetime]) -> Tuple[Spec, List[str]]:
    """`schedule(run_every)`: anchored at the last run, so the next one is Celery's next."""
    every = every_text(sched.run_every)
    spec: Spec = {"every": every}
    notes = [f"Celery runs every {every} counted from the previous run, so its runs drift by "
             "each run's lateness; belfry's are anchored (anchor + k x every) and never drift"]
    if sched.relative:
        spec, notes = relative_spec(sched.run_every, every, tz_name, last_run_at)
    elif last_run_at is not None:
        spec["anchor"] = last_run_at
    return spec, notes


def relative_spec(run_every: timedelta, every: str, tz_name: str,
                  last_run_at: Optional[datetime]) -> Tuple[Spec, List[str]]:
    """`relative=True` rounds runs to the interval's resolution (day, hour, minute) in local time."""
    from zoneinfo import ZoneInfo

    if run_every >= timedelta(days=1):
        if run_every != timedelta(days=1):
            raise Untranslatable(f"relative interval of {every}: Celery counts local calendar days "
                                 "from the last run, which belfry cannot anchor across DST")
        return {"crontab": "0 0 * * *", "tz": tz_name}, [
            f"relative 1d: Celery runs at local midnight in {tz_name}; so does this crontab"]
    unit = timedelta(hours=1) if run_every >= timedelta(hours=1) else timedelta(minutes=1)
    if run_every % unit:
        raise Untranslatable(f"relative interval of {every} is not a whole number of its "
                             f"rounding unit ({unit})")
    base = last_run_at or datetime.now(timezone.utc)
    local = base.astimezone(ZoneInfo(tz_name))
    floor = local.replace(second=0, microsecond=0)
    if unit == timedelta(hours=1):
        floor = floor.replace(minute=0)
    notes = [f"relative {every}: runs on {unit} boundaries of {tz_name} from "
             f"{floor.isoformat()}; belfry's interval is anchored in real time, so it differs "
             "from Celery's local rounding across a daylight-saving change"]
    return {"every": every, "anchor": floor.astimezone(timezone.utc)}, notes


def crontab_field(orig: Any) -> str:
    if isinstance(orig, str):
        return orig.strip()
    if isinstance(orig, int):
        return str(orig)
    return ",".join(str(v) for v in sorted(orig))


def crontab_spec(sched: Any, tz_name: str) -> Tuple[Spec, List[str]]:
    """`crontab(...)`: the same five fields, evaluated in the schedule's zone."""
    from celery.schedules import crontab

    fields = [crontab_field(getattr(sched, f"_orig_{name}")) for name in
              ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")]
    # The text must expand to the very sets Celery uses (belfry reads Celery's syntax).
    again = crontab(minute=fields[0], hour=fields[1], day_of_month=fields[2],
                    month_of_year=fields[3], day_of_week=fields[4])
    for attr in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"):
        if getattr(again, attr) != getattr(sched, attr):
            raise Untranslatable(f"crontab field {attr} does not read back the same")
    check_nowfun(sched)
    notes: List[str] = []
    dates = dst_dates(sched, tz_name)
    if dates:
        notes.append(f"daylight saving in {tz_name} on {', '.join(dates[:4])}"
                     f"{' and later' if len(dates) > 4 else ''}: this crontab has times in the "
                     "skipped or repeated hour; belfry follows Vixie cron's rule (README, "
                     "Time semantics), Celery's runs there may differ")
    return {"crontab": " ".join(fields), "tz": tz_name}, notes


def check_nowfun(sched: Any) -> None:
    """A `nowfun` may only tell the current time (in any zone): a shifted clock is refused."""
    if sched.nowfun is None:
        return
    now = sched.maybe_make_aware(sched.now())
    real = datetime.now(timezone.utc)
    if abs(now.astimezone(timezone.utc) - real) > NOWFUN_SLACK:
        raise Untranslatable(f"crontab nowfun returns {now.isoformat()}, not the current time: "
                             "belfry evaluates schedules on the real clock")


def solar_spec(sched: Any) -> Tuple[Spec, List[str]]:
    if sched.event not in SOLAR_EVENTS:
        raise Untranslatable(f"solar event {sched.event!r} is not one of Celery's")
    return {"solar": sched.event, "latitude": float(sched.lat),
            "longitude": float(sched.lon)}, [
        f"solar {sched.event}: belfry computes the sun's position itself (Meeus), Celery with "
        "ephem; the instants agree within a minute"]
