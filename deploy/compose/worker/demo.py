"""The Celery tasks the compose demo's schedules call (see ../schedules.toml)."""

import logging
import os

from celery import Celery

app = Celery(
    "demo",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/1"),
)
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    broker_connection_retry_on_startup=True,
)

log = logging.getLogger(__name__)


def _occurrence(task):
    """The schedule and scheduled instant belfry sends as message headers."""
    request = task.request
    headers = request.headers or {}

    def header(name):
        return headers.get(name, getattr(request, name, None))

    return header("belfry_schedule"), header("belfry_scheduled_at")


@app.task(bind=True, name="demo.heartbeat")
def heartbeat(self):
    schedule, scheduled_at = _occurrence(self)
    log.info("heartbeat from %s scheduled at %s", schedule, scheduled_at)
    return scheduled_at


@app.task(bind=True, name="demo.report")
def report(self, kind="daily"):
    schedule, scheduled_at = _occurrence(self)
    log.info("%s report for %s (schedule %s)", kind, scheduled_at, schedule)
    return {"kind": kind, "scheduled_at": scheduled_at}


@app.task(bind=True, name="demo.cleanup")
def cleanup(self, older_than_days):
    log.info("cleaning up what is older than %d days", older_than_days)
    return older_than_days
