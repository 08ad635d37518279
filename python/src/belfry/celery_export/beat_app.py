"""`belfry-celery export`: the entries of a Celery app's `beat_schedule`, with their last runs.

Invariant: the schedule read is the one `celery beat` would run: the app's configuration plus
every `add_periodic_task` registered on configure, on import of the app's task modules and on
finalize. Last runs come only from beat's own persistent schedule file, read-only.
"""

from __future__ import annotations

import os
import shelve
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Union

from .model import Entry, Refusal, belfry_name
from .options import belfry_options
from .translate import Untranslatable, translate_schedule, zone_name

Result = Union[Entry, Refusal]


def load_app(spec: str) -> Any:
    """Imports `module:attr` (or `module`, finding its app) and runs what beat runs at start."""
    from celery.app.utils import find_app

    app = find_app(spec)
    app.loader.import_default_modules()  # configures the app: on_after_configure fires
    app.finalize(auto=True)  # on_after_finalize fires
    return app


def app_zone(app: Any) -> str:
    """The zone Celery evaluates crontabs in (`timezone`, or UTC / local per `enable_utc`)."""
    return zone_name(app.timezone)


def beat_entries(app: Any) -> Dict[str, Dict[str, Any]]:
    """`beat_schedule` plus the backend cleanup entry beat installs by itself."""
    entries = dict(app.conf.beat_schedule or {})
    try:
        if app.conf.result_expires and not app.backend.supports_autoexpire:
            from celery.schedules import crontab

            entries.setdefault("celery.backend_cleanup", {
                "task": "celery.backend_cleanup", "schedule": crontab("0", "4", "*"),
                "options": {"expires": 12 * 3600}})
    except Exception:  # no backend configured, or one that cannot be built here
        pass
    return entries


def last_runs(path: Optional[str], app: Any) -> Dict[str, datetime]:
    """Each entry's last run from beat's shelve file (`celery beat -s`), read-only."""
    if not path:
        return {}
    candidates = [path] + [path + ext for ext in (".db", ".dat", ".dir")]
    if not any(os.path.exists(c) for c in candidates):
        raise FileNotFoundError(f"beat schedule file {path} not found")
    with shelve.open(path, flag="r") as db:
        stored = dict(db.get("entries", {}))
    runs = {}
    for name, entry in stored.items():
        at = getattr(entry, "last_run_at", None)
        if isinstance(at, datetime):
            runs[name] = aware(at, app)
    return runs


def aware(at: datetime, app: Any) -> datetime:
    """Celery's reading of a naive instant: UTC with `enable_utc`, else the app's zone."""
    if at.tzinfo is not None:
        return at
    if app.conf.enable_utc:
        return at.replace(tzinfo=timezone.utc)
    from zoneinfo import ZoneInfo

    return at.replace(tzinfo=ZoneInfo(app_zone(app)))


def export_app(app: Any, schedule_file: Optional[str]) -> Iterator[Result]:
    """One `Entry` or `Refusal` per beat entry, in name order."""
    runs = last_runs(schedule_file, app)
    tz = app_zone(app)
    for key, raw in sorted(beat_entries(app).items()):
        yield entry_from_beat(app, key, raw, tz, runs.get(key))


def entry_from_beat(app: Any, key: str, raw: Dict[str, Any], tz: str,
                    last: Optional[datetime]) -> Result:
    try:
        task = raw["task"]
        args = list(raw.get("args") or ())
        kwargs = dict(raw.get("kwargs") or {})
        spec, notes = translate_schedule(raw["schedule"], tz, last)
        options, more = belfry_options(app, task, raw.get("options") or {}, args, kwargs)
        unknown = sorted(set(raw) - {"task", "schedule", "args", "kwargs", "options",
                                     "relative"})
        if unknown:
            raise Untranslatable(f"entry key(s) {', '.join(unknown)} are not beat's")
    except (Untranslatable, KeyError, TypeError, ValueError) as exc:
        reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        return Refusal(key, reason)
    name = belfry_name(key)
    description = "" if name == key else f"Celery beat entry {key!r}"
    return Entry(name=name, task=task, spec=spec, args=args, kwargs=kwargs, options=options,
                 description=description, last_run_at=last, labels={"migrated-from": "celery-beat"},
                 notes=notes + more)


def named(results: List[Result]) -> List[Result]:
    """Refuses an entry whose belfry name another entry already took."""
    seen: Dict[str, str] = {}
    out: List[Result] = []
    for r in results:
        if isinstance(r, Entry):
            if r.name in seen:
                r = Refusal(r.name, f"its belfry name {r.name!r} is taken by another entry")
            else:
                seen[r.name] = r.name
        out.append(r)
    return out

