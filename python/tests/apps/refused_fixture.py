"""A Celery app with one entry of each kind the exporter must refuse, and one it keeps."""

from datetime import timedelta

from celery import Celery
from celery.schedules import crontab, schedule
from kombu import Exchange, Queue

app = Celery("refused_fixture", broker="redis://127.0.0.1:1/0")
app.conf.task_queues = [Queue("celery"), Queue("fan", Exchange("fan", type="fanout"))]


class EveryOtherDay(schedule):
    """A custom schedule class: its meaning is code belfry cannot run."""


app.conf.beat_schedule = {
    "kept": {"task": "fixture.ping", "schedule": 5},
    "custom-class": {"task": "fixture.ping", "schedule": EveryOtherDay(timedelta(days=2))},
    "named-exchange": {"task": "fixture.ping", "schedule": 60,
                       "options": {"exchange": "events", "routing_key": "audit"}},
    "fanout-queue": {"task": "fixture.ping", "schedule": 60, "options": {"queue": "fan"}},
    "pickle": {"task": "fixture.ping", "schedule": 60, "options": {"serializer": "pickle"}},
    "countdown": {"task": "fixture.ping", "schedule": 60, "options": {"countdown": 5}},
    "fraction": {"task": "fixture.ping", "schedule": 0.5},
    "shifted-clock": {"task": "fixture.ping", "schedule": crontab(
        minute=0, nowfun=lambda: __import__("datetime").datetime(2001, 1, 1,
                                                                 tzinfo=__import__("datetime").timezone.utc))},
}
