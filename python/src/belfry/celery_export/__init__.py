"""Exporters from Celery beat (an app's `beat_schedule`, django-celery-beat, RedBeat) to belfry.

Invariant: every exporter yields, per source entry, either an `Entry` that keeps the entry's
meaning (its differences listed in `notes`) or a `Refusal` saying why it cannot.
"""

from .model import Entry, Refusal

__all__ = ["Entry", "Refusal"]
