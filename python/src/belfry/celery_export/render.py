"""Writes exported entries as a belfry schedules file (TOML) or as API `ScheduleSpec`s.

Invariant: what is written reads back as the entries' values: a value TOML cannot hold (null,
an integer beyond 64 bits, NaN) raises `Unwritable` naming the entry instead of being altered.
Each entry's differences from Celery are written as comments above it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

from .model import Entry, rfc3339

INSTANT_KEYS = ("anchor", "once", "start_at", "end_at", "last_run_at")
SPEC_ORDER = ("every", "anchor", "crontab", "cron", "once", "solar", "latitude", "longitude",
              "tz", "start_at", "end_at")


class Unwritable(Exception):
    """A value the schedules file cannot represent."""


def toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -2**63 <= value < 2**63:
            raise Unwritable(f"{where}: {value} does not fit TOML's 64-bit integers (use --apply)")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unwritable(f"{where}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return json.dumps(rfc3339(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k), ensure_ascii=False)} = {toml_value(v, f'{where}.{k}')}"
                 for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if value is None:
        raise Unwritable(f"{where}: null has no TOML form (use --apply, which sends JSON)")
    raise Unwritable(f"{where}: {type(value).__name__} is not JSON data")


def entry_toml(entry: Entry, catchup: Dict[str, Any]) -> str:
    where = f"schedule {entry.name!r}"
    lines = [f"# {note}" for note in entry.notes]
    lines.append("[[schedule]]")
    pairs: List[tuple] = [("name", entry.name), ("task", entry.task)]
    pairs += [(k, entry.spec[k]) for k in SPEC_ORDER if k in entry.spec]
    if entry.last_run_at is not None:
        pairs.append(("last_run_at", entry.last_run_at))
    pairs += [("args", entry.args), ("kwargs", entry.kwargs)]
    if entry.options:
        pairs.append(("options", entry.options))
    if catchup:
        table: Dict[str, Any] = {"policy": catchup.get("policy", "all")}
        if "window_seconds" in catchup:
            table["window"] = f"{catchup['window_seconds']}s"
        pairs.append(("catchup", table))
    if not entry.enabled:
        pairs.append(("enabled", False))
    if entry.labels:
        pairs.append(("labels", entry.labels))
    if entry.description:
        pairs.append(("description", entry.description))
    for key, value in pairs:
        lines.append(f"{key} = {toml_value(value, f'{where}: {key}')}")
    return "\n".join(lines) + "\n"


def schedules_toml(entries: Sequence[Entry], catchup: Dict[str, Any], header: str) -> str:
    """The whole file; raises `Unwritable` on the first value TOML cannot hold."""
    out = [f"# {line}" for line in header.splitlines()]
    for entry in entries:
        out.append("")
        out.append(entry_toml(entry, catchup).rstrip("\n"))
    return "\n".join(out) + "\n"


def schedule_spec(entry: Entry, catchup: Dict[str, Any]) -> Any:
    """The entry as the API's `ScheduleSpec` (fields the server's API lacks raise `Unwritable`)."""
    from ..client import has_field
    from ..v1 import schedules_pb2 as pb

    spec = pb.ScheduleSpec(name=entry.name, task=entry.task, args_json=json.dumps(entry.args),
                           kwargs_json=json.dumps(entry.kwargs), enabled=entry.enabled,
                           labels=entry.labels, description=entry.description)
    for key, value in entry.spec.items():
        target = "timezone" if key == "tz" else key
        if not has_field(spec.spec, target):
            raise Unwritable(f"schedule {entry.name!r}: this client's API has no spec.{target}")
        setattr(spec.spec, target, rfc3339(value) if isinstance(value, datetime) else value)
    if entry.last_run_at is not None:
        if not has_field(spec, "last_run_at"):
            raise Unwritable(f"schedule {entry.name!r}: this client's API has no last_run_at; "
                             "export to a file, or upgrade")
        setattr(spec, "last_run_at", rfc3339(entry.last_run_at))
    task_options(spec.options, entry.options)
    if catchup:
        rule = {"all": pb.CATCHUP_RULE_ALL, "latest": pb.CATCHUP_RULE_LATEST,
                "none": pb.CATCHUP_RULE_NONE}[catchup.get("policy", "all")]
        spec.catchup.rule = rule
        if "window_seconds" in catchup:
            spec.catchup.window_seconds = int(catchup["window_seconds"])
    return spec


def task_options(out: Any, options: Dict[str, Any]) -> None:
    for key in ("queue", "routing_key", "priority", "time_limit", "soft_time_limit",
                "ignore_result"):
        if key in options:
            setattr(out, key, options[key])
    expires: Optional[Any] = options.get("expires")
    if isinstance(expires, datetime):
        out.expires_at = rfc3339(expires)
    elif expires is not None:
        out.expires_after_seconds = float(expires)
    if options.get("headers"):
        out.headers_json = json.dumps(options["headers"])
