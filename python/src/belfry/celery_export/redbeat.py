"""`belfry-celery export-redbeat`: RedBeat's schedule entries, read from Redis.

Invariant: entries are found as RedBeat finds them, through the `<prefix>:schedule` sorted set,
and each is read from its hash (`definition`, `meta` with `last_run_at`) with RedBeat's own JSON
decoder. Redis is only read.
"""

from __future__ import annotations

from typing import Any, Iterator

from .beat_app import Result, aware
from .model import Entry, Refusal, belfry_name
from .options import belfry_options
from .translate import Untranslatable, translate_schedule, zone_name


def export_redbeat(app: Any, redis_url: str, key_prefix: str) -> Iterator[Result]:
    import redis
    from redbeat.decoder import RedBeatJSONDecoder
    import json

    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.zrange(f"{key_prefix}:schedule", 0, -1)]
    tz = zone_name(app.timezone)
    for key in sorted(keys):
        name = key[len(key_prefix):] if key.startswith(key_prefix) else key
        definition, meta = client.hmget(key, "definition", "meta")
        if not definition:
            yield Refusal(name, f"{key} has no definition")
            continue
        try:
            raw = json.loads(definition, cls=RedBeatJSONDecoder)
            meta_d = json.loads(meta, cls=RedBeatJSONDecoder) if meta else {}
            yield entry_from_redbeat(app, name, raw, meta_d.get("last_run_at"), tz)
        except (Untranslatable, ValueError, TypeError, KeyError) as exc:
            yield Refusal(name, str(exc))


def entry_from_redbeat(app: Any, name: str, raw: dict, last: Any, tz: str) -> Entry:
    last = aware(last, app) if last is not None else None
    spec, notes = translate_schedule(raw["schedule"], tz, last)
    args = list(raw.get("args") or [])
    kwargs = dict(raw.get("kwargs") or {})
    options, more = belfry_options(app, raw["task"], raw.get("options") or {}, args, kwargs)
    bname = belfry_name(raw.get("name") or name)
    return Entry(name=bname, task=raw["task"], spec=spec, args=args, kwargs=kwargs,
                 options=options, enabled=bool(raw.get("enabled", True)),
                 description="" if bname == name else f"RedBeat entry {name!r}",
                 last_run_at=last, labels={"migrated-from": "redbeat"}, notes=notes + more)
