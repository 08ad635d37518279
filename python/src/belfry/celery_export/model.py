"""What every exporter produces: belfry schedule entries with the differences they carry, and
refusals.

Invariant: an `Entry` means exactly what its Celery source meant, except for the differences
listed in its `notes`; anything that cannot be said faithfully is a `Refusal`, never an entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

NAME_CHARS = re.compile(r"[^A-Za-z0-9._:/-]")


class Refusal(Exception):
    """An entry the exporter will not translate, and why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class Entry:
    """One belfry schedule, with the schedules-file's keys."""

    name: str
    task: str
    spec: Dict[str, Any]
    args: List[Any] = field(default_factory=list)
    kwargs: Dict[str, Any] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    description: str = ""
    last_run_at: Optional[datetime] = None
    labels: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def belfry_name(name: str) -> str:
    """A belfry schedule name for a Celery entry name (1-200 of letters, digits, `. _ - : /`)."""
    cleaned = NAME_CHARS.sub("-", name.strip())[:200]
    return cleaned or "unnamed"


def rfc3339(at: datetime) -> str:
    """An aware instant as RFC 3339 in UTC (microseconds kept, `Z`)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    text = at.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")
