"""`belfry-celery export-django`: django-celery-beat's `PeriodicTask` rows as belfry entries.

Invariant: a row is read as django-celery-beat's `DatabaseScheduler` runs it: its interval,
crontab (in the crontab's own zone), solar or clocked schedule, `enabled`, `one_off`,
`start_time`, `expires` (the row stops; an `expires` or `expire_seconds` also goes into each
message), routing options, JSON args, kwargs and headers, and `last_run_at`. Rows are only read.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any, Iterator, List, Optional, Tuple

from .beat_app import Result, aware
from .model import Entry, Refusal, belfry_name
from .options import belfry_options
from .translate import Untranslatable, translate_schedule, zone_name


def setup_django(settings: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    import django

    django.setup()


def celery_app() -> Any:
    """The Celery app the Django project configured (`current_app` otherwise)."""
    from celery import current_app

    return current_app._get_current_object()


def export_django(app: Any) -> Iterator[Result]:
    from django_celery_beat.models import PeriodicTask

    rows = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked")
    for row in rows.order_by("name"):
        try:
            yield entry_from_row(app, row)
        except (Untranslatable, ValueError, TypeError) as exc:
            yield Refusal(row.name, str(exc))


def row_schedule(app: Any, row: Any) -> Tuple[dict, List[str], bool]:
    """The spec keys, notes, and whether the row still runs (a one-off that ran does not)."""
    from django_celery_beat.tzcrontab import TzAwareCrontab

    last = aware(row.last_run_at, app) if row.last_run_at else None
    if row.clocked_id:
        at = aware(row.clocked.clocked_time, app)
        if not row.one_off:
            raise Untranslatable("a clocked schedule needs one_off (django-celery-beat's rule)")
        ran = row.total_run_count > 0 or (last is not None and last >= at)
        return {"once": at}, [], not ran
    if row.one_off:
        if row.total_run_count > 0 or not row.enabled:
            return {}, ["a one-off task that already ran: exported disabled"], False
        raise Untranslatable("one_off with a recurring schedule: belfry has no 'first occurrence "
                             "only'; use a clocked schedule")
    sched = row.schedule
    tz = zone_name(sched.tz) if isinstance(sched, TzAwareCrontab) else zone_name(app.timezone)
    # Without a last run, the scheduler counts an interval from the row's last change.
    basis = last or (None if row.start_time else aware(row.date_changed, app))
    spec, notes = translate_schedule(sched, tz, basis, allow_subclass=(TzAwareCrontab,))
    return spec, notes, True


def entry_from_row(app: Any, row: Any) -> Entry:
    spec, notes, runs = row_schedule(app, row)
    if not spec:
        spec, more, _ = recurring_spec(app, row)
        notes += more
    args = json.loads(row.args or "[]")
    kwargs = json.loads(row.kwargs or "{}")
    options = {k: getattr(row, k) for k in ("queue", "exchange", "routing_key", "priority")
               if getattr(row, k) is not None}
    if row.expires_:
        options["expires"] = aware(row.expires, app) if row.expires else row.expire_seconds
    headers = json.loads(row.headers or "{}")
    headers["periodic_task_name"] = row.name
    options["headers"] = headers
    opts, more = belfry_options(app, row.task, options, args, kwargs)
    if row.start_time:
        spec["start_at"] = start_instant(app, row, spec)
    if row.expires:
        spec["end_at"] = aware(row.expires, app)
    name = belfry_name(row.name)
    description = row.description or ""
    if name != row.name:
        description = (description + "\n" if description else "") + f"django-celery-beat {row.name!r}"
    last = aware(row.last_run_at, app) if row.last_run_at else None
    return Entry(name=name, task=row.task, spec=spec, args=args, kwargs=kwargs, options=opts,
                 enabled=bool(row.enabled and runs), description=description, last_run_at=last,
                 labels={"migrated-from": "django-celery-beat"}, notes=notes + more)


def recurring_spec(app: Any, row: Any) -> Tuple[dict, List[str], bool]:
    """The schedule of a one-off row that already ran (exported disabled)."""
    from django_celery_beat.tzcrontab import TzAwareCrontab

    sched = row.schedule
    tz = zone_name(sched.tz) if isinstance(sched, TzAwareCrontab) else zone_name(app.timezone)
    return translate_schedule(sched, tz, None, allow_subclass=(TzAwareCrontab,))


def start_instant(app: Any, row: Any, spec: dict) -> Optional[Any]:
    """`start_time`: nothing runs before it. An interval's runs count from it in belfry."""
    start = aware(row.start_time, app)
    if "every" in spec and "anchor" not in spec:
        spec["anchor"] = start + timedelta(0)
    return start
