#!/usr/bin/env python3
"""Independent reference for cron-schedule evaluation in IANA time zones.

Written from the written rules only (not from the Rust engine); standard library only.
Running it writes tests/fixtures/time_conformance.json; `--check` regenerates the fixture in
memory and exits 1 (printing a unified diff) if the file on disk differs.  `--crosscheck`
additionally re-derives every case with a literal minute-by-minute walk (slow, for humans).

Rules encoded
-------------
Dialects (five fields: minute hour day-of-month month day-of-week):
  * `cron` (Vixie): dow 0-7 (0 and 7 are Sunday), names sun..sat / jan..dec, macros
    @hourly @daily @weekly @monthly @yearly.  If the dom or dow field text begins with `*`
    the day matches when dom AND dow match; otherwise when dom OR dow matches.
  * `crontab` (Celery): dow 0-6 (Sunday = 0), names sun..sat; all fields must match (AND);
    a reversed range such as `fri-mon` wraps around (fri, sat, sun, mon).

Daylight saving:
  * interval-like (minute or hour field contains `*`, `-` or `/`): fire at every instant
    whose local wall-clock time matches (nothing in a gap, both passes of a repeated hour).
  * fixed-time: for each matching wall time w fire once, at the first instant whose wall
    time is >= w (gap times fire at the transition, repeated times only on their first
    pass; several wall times landing on one instant are one occurrence).

Instants are whole UTC minutes.  "wall(i)" is the naive local date-time at instant i.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

GENERATOR = "tests/reference/cron_reference.py"
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "time_conformance.json"

MINUTE = timedelta(minutes=1)
# Every UTC offset in the tz database lies within [-12h, +14h] for the dates used here; the
# search bounds below use a 15 h margin on both sides, which is therefore conservative.
OFFSET_MARGIN = timedelta(hours=15)
DEFAULT_HORIZON_YEARS = 30

# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------

DOW_NAMES = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
MONTH_NAMES = {
    n: i + 1
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


class CronError(ValueError):
    pass


def _atom(text: str, lo: int, hi: int, names: dict[str, int]) -> int:
    t = text.strip().lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        raise CronError(f"bad value {text!r}")
    v = int(t)
    if not lo <= v <= hi:
        raise CronError(f"value {v} outside {lo}-{hi}")
    return v


def parse_field(text: str, lo: int, hi: int, names: dict[str, int], wrap: bool) -> set[int]:
    """Values of one field.  `wrap` lets a reversed range a-b run a..hi, lo..b (Celery)."""
    out: set[int] = set()
    for part in text.split(","):
        if part == "":
            raise CronError(f"empty list element in {text!r}")
        if "/" in part:
            base, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step in {part!r}")
            step = int(step_text)
            if base != "*" and "-" not in base:
                raise CronError(f"step needs `*` or a range: {part!r}")
        else:
            base, step = part, 1
        if base == "*":
            seq = list(range(lo, hi + 1))
        elif "-" in base:
            a_text, b_text = base.split("-", 1)
            a = _atom(a_text, lo, hi, names)
            b = _atom(b_text, lo, hi, names)
            if a <= b:
                seq = list(range(a, b + 1))
            elif wrap:
                seq = list(range(a, hi + 1)) + list(range(lo, b + 1))
            else:
                raise CronError(f"reversed range {base!r}")
        else:
            seq = [_atom(base, lo, hi, names)]
        out.update(seq[::step])
    return out


class Schedule:
    def __init__(self, kind: str, expr: str):
        if kind not in ("cron", "crontab"):
            raise CronError(f"unknown kind {kind!r}")
        self.kind = kind
        text = expr.strip()
        if text.startswith("@"):
            if kind != "cron" or text.lower() not in MACROS:
                raise CronError(f"unsupported macro {expr!r}")
            text = MACROS[text.lower()]
        fields = text.split()
        if len(fields) != 5:
            raise CronError(f"need five fields: {expr!r}")
        f_min, f_hour, f_dom, f_mon, f_dow = fields
        wrap = kind == "crontab"
        self.minutes = parse_field(f_min, 0, 59, {}, wrap)
        self.hours = parse_field(f_hour, 0, 23, {}, wrap)
        self.doms = parse_field(f_dom, 1, 31, {}, wrap)
        self.months = parse_field(f_mon, 1, 12, MONTH_NAMES, wrap)
        if kind == "cron":
            dows = parse_field(f_dow, 0, 7, DOW_NAMES, False)
            self.dows = {d % 7 for d in dows}  # 7 is Sunday too
            self.dom_star = f_dom.startswith("*")
            self.dow_star = f_dow.startswith("*")
        else:
            self.dows = parse_field(f_dow, 0, 6, DOW_NAMES, True)
            self.dom_star = self.dow_star = True  # Celery: always AND
        self.interval_like = any(c in f for f in (f_min, f_hour) for c in "*-/")
        self.times = sorted((h, m) for h in self.hours for m in self.minutes)

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.weekday() + 1) % 7 in self.dows  # Python Monday=0 -> cron Sunday=0
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self.day_matches(wall.date())
        )

    def walls_from(self, start: datetime, limit: datetime):
        """Matching wall minutes >= start (naive, whole minutes), ascending, up to limit.
        Whole days that cannot match are skipped."""
        d = start.date()
        while True:
            if datetime(d.year, d.month, d.day) > limit:
                return
            if self.day_matches(d):
                for h, m in self.times:
                    w = datetime(d.year, d.month, d.day, h, m)
                    if w >= start:
                        if w > limit:
                            return
                        yield w
            d += timedelta(days=1)


# ---------------------------------------------------------------------------------------
# Time helpers.  Instants are aware UTC datetimes at whole minutes.
# ---------------------------------------------------------------------------------------


def wall(i: datetime, tz: ZoneInfo) -> datetime:
    return i.astimezone(tz).replace(tzinfo=None, fold=0)


def as_utc_naive_instant(w: datetime) -> datetime:
    """Read a naive wall time as if it were UTC (used only for conservative bounds)."""
    return w.replace(tzinfo=timezone.utc)


def parse_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def fmt_instant(i: datetime) -> str:
    return i.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_minute(i: datetime) -> datetime:
    return i.replace(second=0, microsecond=0)


# ---------------------------------------------------------------------------------------
# Fast evaluation (exactly equivalent to the minute walk; see the docstrings)
# ---------------------------------------------------------------------------------------


def instants_with_wall(w: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every instant whose wall time is exactly w: the fold=0 and fold=1 readings of w,
    kept only when they round-trip (a gap time round-trips under neither)."""
    found = set()
    for fold in (0, 1):
        i = w.replace(tzinfo=tz, fold=fold).astimezone(timezone.utc)
        if wall(i, tz) == w:
            found.add(i)
    return sorted(found)


def upcoming_interval(s: Schedule, tz: ZoneInfo, after: datetime, n: int, limit: datetime):
    """{i > after : wall(i) matches}, the first n.  Every instant i > after has
    wall(i) > after - 12h, and a wall w's instants lie in [w - 14h, w + 12h], so the walls
    are enumerated from after - 15h and the enumeration stops once w - 15h is past the
    n-th instant collected."""
    first = floor_minute(after.replace(tzinfo=None) - OFFSET_MARGIN)
    got: list[datetime] = []
    for w in s.walls_from(first, limit):
        if len(got) >= n and as_utc_naive_instant(w) - OFFSET_MARGIN > got[n - 1]:
            break
        for i in instants_with_wall(w, tz):
            if i > after:
                got.append(i)
        got.sort()
    return got[:n]


def upcoming_fixed(s: Schedule, tz: ZoneInfo, after: datetime, n: int, limit: datetime):
    """The high-water-mark walk, accelerated.  The walk starts two days before `after`;
    H0 = the largest wall time at any minute from (start - 1 min) to `after` inclusive.
    A minute i > after fires iff some matching wall w lies in (H_i, wall(i)], i.e. iff
    i = first instant > after with wall >= w, for some matching w > H0.  That map
    w -> first instant is monotone, so occurrences are produced in order; equal instants
    (several walls in one gap) collapse into one."""
    after = floor_minute(after)  # instants are whole minutes; "> after" is unchanged
    start = after - timedelta(days=2)
    h0 = wall(start - MINUTE, tz)
    i = start
    while i <= after:
        h0 = max(h0, wall(i, tz))
        i += MINUTE
    got: list[datetime] = []
    cursor = after + MINUTE  # first candidate instant
    for w in s.walls_from(h0 + MINUTE, limit):
        # Instants before w - 15h (read as UTC) all have wall < w: skip them.
        j = max(cursor, as_utc_naive_instant(w) - OFFSET_MARGIN)
        while wall(j, tz) < w:
            j += MINUTE
        if not got or got[-1] != j:
            got.append(j)
            if len(got) == n:
                break
        cursor = j
    return got


def upcoming(kind: str, expr: str, tz_name: str, after: datetime, n: int,
             horizon_years: int = DEFAULT_HORIZON_YEARS) -> list[datetime]:
    s = Schedule(kind, expr)
    tz = ZoneInfo(tz_name)
    limit = after.replace(tzinfo=None) + timedelta(days=366 * horizon_years)
    if s.interval_like:
        return upcoming_interval(s, tz, after, n, limit)
    return upcoming_fixed(s, tz, after, n, limit)


# ---------------------------------------------------------------------------------------
# Literal minute walk (slow; used by --crosscheck only)
# ---------------------------------------------------------------------------------------


def upcoming_bruteforce(kind: str, expr: str, tz_name: str, after: datetime, n: int,
                        until: datetime) -> list[datetime]:
    s = Schedule(kind, expr)
    tz = ZoneInfo(tz_name)
    got: list[datetime] = []
    start = floor_minute(after) - timedelta(days=2)
    h = wall(start - MINUTE, tz)
    i = start
    while i <= until and len(got) < n:
        w = wall(i, tz)
        if s.interval_like:
            fires = s.matches(w)
        else:
            fires = False
            k = h + MINUTE
            while k <= w:
                if s.matches(k):
                    fires = True
                    break
                k += MINUTE
        if fires and i > after:
            got.append(i)
        h = max(h, w)
        i += MINUTE
    return got


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------

NY = "America/New_York"
LHI = "Australia/Lord_Howe"
SCL = "America/Santiago"
APIA = "Pacific/Apia"
BER = "Europe/Berlin"

# (name, kind, expr, tz, after, n)
CASES: list[tuple[str, str, str, str, str, int]] = [
    # 1. New York spring-forward, 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z).
    ("ny_spring_forward_fixed_0230", "cron", "30 2 * * *", NY, "2025-03-08T12:00:00Z", 5),
    ("ny_spring_forward_fixed_0200", "cron", "0 2 * * *", NY, "2025-03-08T12:00:00Z", 5),
    ("ny_spring_forward_fixed_0200_0230", "cron", "0,30 2 * * *", NY, "2025-03-08T12:00:00Z", 8),
    ("ny_spring_forward_every_15_min", "cron", "*/15 * * * *", NY, "2025-03-09T06:00:00Z", 12),
    ("ny_spring_forward_hours_1_to_3", "cron", "0 1-3 * * *", NY, "2025-03-08T12:00:00Z", 8),
    ("ny_spring_forward_crontab_fixed_0230", "crontab", "30 2 * * *", NY, "2025-03-08T12:00:00Z", 4),
    # 2. New York fall-back, 2025-11-02 02:00 EDT -> 01:00 EST (06:00Z).
    ("ny_fall_back_fixed_0130", "cron", "30 1 * * *", NY, "2025-11-01T12:00:00Z", 4),
    ("ny_fall_back_every_15_min", "cron", "*/15 * * * *", NY, "2025-11-02T04:50:00Z", 14),
    ("ny_fall_back_half_past_every_hour", "cron", "30 * * * *", NY, "2025-11-02T03:00:00Z", 6),
    ("ny_fall_back_fixed_0100", "cron", "0 1 * * *", NY, "2025-11-01T12:00:00Z", 4),
    ("ny_fall_back_fixed_0200", "cron", "0 2 * * *", NY, "2025-11-01T12:00:00Z", 4),
    ("ny_fall_back_crontab_hours_1_to_2", "crontab", "0 1-2 * * *", NY, "2025-11-01T12:00:00Z", 6),
    # 3. Lord Howe, 30-minute shifts: 2025-04-06 02:00 (+11) -> 01:30 (+10:30) at 15:00Z;
    #    2025-10-05 02:00 (+10:30) -> 02:30 (+11) at 15:30Z.
    ("lord_howe_april_every_15_min", "cron", "*/15 * * * *", LHI, "2025-04-05T14:00:00Z", 12),
    ("lord_howe_october_every_15_min", "cron", "*/15 * * * *", LHI, "2025-10-04T14:30:00Z", 10),
    ("lord_howe_october_gap_fixed_0215", "cron", "15 2 * * *", LHI, "2025-10-03T00:00:00Z", 4),
    ("lord_howe_april_repeat_fixed_0145", "cron", "45 1 * * *", LHI, "2025-04-04T00:00:00Z", 4),
    ("lord_howe_april_fixed_0200", "cron", "0 2 * * *", LHI, "2025-04-04T00:00:00Z", 4),
    ("lord_howe_october_fixed_0200", "cron", "0 2 * * *", LHI, "2025-10-03T00:00:00Z", 4),
    # 4. Fractional-offset zones without DST.
    ("kolkata_crontab_weekdays_0900", "crontab", "0 9 * * mon-fri", "Asia/Kolkata", "2025-03-07T12:00:00Z", 6),
    ("kolkata_cron_half_past_every_hour", "cron", "30 * * * *", "Asia/Kolkata", "2025-03-07T00:00:00Z", 5),
    ("kathmandu_cron_midnight", "cron", "0 0 * * *", "Asia/Kathmandu", "2025-03-07T00:00:00Z", 3),
    ("kathmandu_crontab_every_20_min_at_6", "crontab", "*/20 6 * * *", "Asia/Kathmandu", "2025-03-07T00:00:00Z", 6),
    # 5. Santiago midnight transitions: 2022-09-11 00:00 (-04) -> 01:00 (-03) at 04:00Z;
    #    2023-04-01 24:00 (-03) -> 2023-04-01 23:00 (-04) at 2023-04-02T03:00Z.
    ("santiago_dst_start_fixed_midnight", "cron", "0 0 * * *", SCL, "2022-09-09T12:00:00Z", 4),
    ("santiago_dst_start_fixed_0030", "cron", "30 0 * * *", SCL, "2022-09-09T12:00:00Z", 4),
    ("santiago_dst_start_fixed_2330", "cron", "30 23 * * *", SCL, "2022-09-09T12:00:00Z", 4),
    ("santiago_dst_start_every_hour", "cron", "0 * * * *", SCL, "2022-09-11T01:30:00Z", 6),
    ("santiago_dst_end_fixed_midnight", "cron", "0 0 * * *", SCL, "2023-03-31T12:00:00Z", 4),
    ("santiago_dst_end_fixed_0030", "cron", "30 0 * * *", SCL, "2023-03-31T12:00:00Z", 4),
    ("santiago_dst_end_fixed_2330", "cron", "30 23 * * *", SCL, "2023-03-31T12:00:00Z", 4),
    ("santiago_dst_end_every_hour", "cron", "0 * * * *", SCL, "2023-04-02T00:30:00Z", 6),
    # 6. Calendar.
    ("utc_feb_29", "cron", "0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 3),
    ("utc_31st_noon", "cron", "0 12 31 * *", "UTC", "2025-01-01T00:00:00Z", 7),
    ("utc_crontab_feb_29", "crontab", "0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 3),
    ("new_york_feb_29_fixed", "cron", "30 9 29 2 *", NY, "2025-01-01T00:00:00Z", 3),
    # 7. Day-of-month / day-of-week combination rules.
    ("utc_cron_13th_or_friday", "cron", "0 0 13 * 5", "UTC", "2025-01-01T00:00:00Z", 12),
    ("utc_crontab_friday_13th", "crontab", "0 0 13 * 5", "UTC", "2025-01-01T00:00:00Z", 4),
    ("utc_cron_star_step_dom_and_monday", "cron", "0 0 */2 * 1", "UTC", "2025-01-01T00:00:00Z", 6),
    ("utc_cron_range_step_dom_or_monday", "cron", "0 0 1-31/2 * 1", "UTC", "2025-01-01T00:00:00Z", 12),
    ("utc_cron_dow_7_is_sunday", "cron", "0 0 * * 7", "UTC", "2025-01-01T00:00:00Z", 3),
    ("utc_cron_star_dow_with_dom", "cron", "0 0 15 * *", "UTC", "2025-01-01T00:00:00Z", 3),
    # 8. Apia skipped 2011-12-30: 2011-12-29 23:59 (-10) -> 2011-12-31 00:00 (+14) at 10:00Z.
    ("apia_missing_day_fixed_noon", "cron", "0 12 * * *", APIA, "2011-12-28T00:00:00Z", 4),
    ("apia_missing_day_every_6_hours", "cron", "0 */6 * * *", APIA, "2011-12-29T00:00:00Z", 8),
    ("apia_missing_day_fixed_dec_30", "cron", "0 0 30 12 *", APIA, "2011-12-01T00:00:00Z", 3),
    # 9. Names and macros.
    ("berlin_hourly_macro_fall_back", "cron", "@hourly", BER, "2025-10-25T22:30:00Z", 6),
    ("berlin_weekly_macro", "cron", "@weekly", BER, "2025-03-20T00:00:00Z", 4),
    ("berlin_month_and_dow_names", "cron", "0 0 * jan,jul sun", BER, "2025-01-01T00:00:00Z", 10),
    ("utc_crontab_fri_to_mon_wraps", "crontab", "0 12 * * fri-mon", "UTC", "2025-01-01T00:00:00Z", 8),
    ("berlin_daily_macro_spring_forward", "cron", "@daily", BER, "2025-03-28T12:00:00Z", 3),
    ("berlin_monthly_macro", "cron", "@monthly", BER, "2025-01-15T00:00:00Z", 4),
    ("berlin_yearly_macro", "cron", "@yearly", BER, "2025-01-15T00:00:00Z", 3),
    ("berlin_upper_case_names", "cron", "0 9 * MAR Mon-Fri", BER, "2025-03-27T00:00:00Z", 5),
    ("berlin_fall_back_fixed_0230", "cron", "30 2 * * *", BER, "2025-10-25T00:00:00Z", 3),
    ("berlin_spring_forward_fixed_0230", "cron", "30 2 * * *", BER, "2025-03-29T00:00:00Z", 3),
]


def build() -> dict:
    names = set()
    cases = []
    for name, kind, expr, tz, after, n in CASES:
        if name in names:
            raise SystemExit(f"duplicate case name {name}")
        names.add(name)
        if not 3 <= n <= 30:
            raise SystemExit(f"{name}: n={n} outside 3..30")
        got = upcoming(kind, expr, tz, parse_instant(after), n)
        if len(got) != n:
            raise SystemExit(f"{name}: found {len(got)} of {n} occurrences within the horizon")
        cases.append({
            "name": name,
            "kind": kind,
            "expr": expr,
            "tz": tz,
            "after": after,
            "n": n,
            "expected": [fmt_instant(i) for i in got],
        })
    return {"generator": GENERATOR, "cases": cases}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def crosscheck(doc: dict, max_days: int) -> int:
    bad = 0
    for case in doc["cases"]:
        after = parse_instant(case["after"])
        until = parse_instant(case["expected"][-1])
        if until - after > timedelta(days=max_days):
            print(f"skip  {case['name']} (span {(until - after).days} days)")
            continue
        slow = upcoming_bruteforce(case["kind"], case["expr"], case["tz"], after, case["n"],
                                   until + timedelta(days=1))
        ok = [fmt_instant(i) for i in slow] == case["expected"]
        bad += not ok
        print(f"{'ok   ' if ok else 'DIFF '} {case['name']}")
        if not ok:
            print("   fast:", case["expected"])
            print("   slow:", [fmt_instant(i) for i in slow])
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the fixture on disk differs from what would be generated")
    ap.add_argument("--crosscheck", action="store_true",
                    help="also verify every case with a literal minute walk (slow)")
    ap.add_argument("--crosscheck-max-days", type=int, default=400)
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    text = render(build())
    if args.crosscheck:
        if crosscheck(json.loads(text), args.crosscheck_max_days):
            return 1
    if args.check:
        try:
            current = FIXTURE.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{FIXTURE.relative_to(REPO_ROOT)} (on disk)",
                tofile=f"{FIXTURE.relative_to(REPO_ROOT)} (regenerated)")
            sys.stdout.writelines(diff)
            print(f"\n{FIXTURE} is out of date; run python3 {GENERATOR}")
            return 1
        print(f"{FIXTURE.relative_to(REPO_ROOT)} is up to date "
              f"({len(json.loads(text)['cases'])} cases, {time.monotonic() - t0:.2f}s)")
        return 0
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text, encoding="utf-8")
    print(f"wrote {FIXTURE.relative_to(REPO_ROOT)} "
          f"({len(json.loads(text)['cases'])} cases, {time.monotonic() - t0:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
