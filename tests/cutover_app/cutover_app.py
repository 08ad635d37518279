"""The Celery app of the cut-over test: two intervals and a crontab that celery beat sends to
the broker in CUTOVER_BROKER. Each message beat publishes carries the instant it was sent
(`beat_sent_at`), so the test can line beat's runs up with belfry's."""

import os
from datetime import datetime, timezone

from celery import Celery
from celery.schedules import crontab
from celery.signals import before_task_publish

app = Celery("cutover_app", broker=os.environ["CUTOVER_BROKER"])
# No result backend, so no backend-cleanup entry: the schedule is exactly these three.
app.conf.result_expires = None
app.conf.beat_schedule = {
    "every-5s": {"task": "cutover.five", "schedule": 5.0},
    "every-10s": {"task": "cutover.ten", "schedule": 10.0, "args": [10]},
    "each-minute": {"task": "cutover.minute", "schedule": crontab()},
}


@before_task_publish.connect
def stamp(headers=None, **kwargs):
    headers["beat_sent_at"] = datetime.now(timezone.utc).isoformat()
