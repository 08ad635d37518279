"""The Celery app the chaos harness runs a real worker for.

The broker and result backend come from CHAOS_BROKER / CHAOS_BACKEND. Every execution is
appended to the list `chaos:executed` in the backend's Redis, so the checker counts executions
(a result key is per task id and would hide a second run of the same id).
"""

import datetime
import json
import os

import redis
from celery import Celery

app = Celery("chaos_app", broker=os.environ["CHAOS_BROKER"], backend=os.environ["CHAOS_BACKEND"])
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    result_extended=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_log = redis.Redis.from_url(os.environ["CHAOS_BACKEND"])


@app.task(bind=True, name="chaos.record")
def record(self, *args, **kwargs):
    """Appends this execution to chaos:executed and returns what it received."""
    request = self.request
    headers = request.headers or {}

    def header(name):
        return headers.get(name, getattr(request, name, None))

    entry = {
        "task_id": request.id,
        "belfry_schedule": header("belfry_schedule"),
        "belfry_scheduled_at": header("belfry_scheduled_at"),
        "executed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "hostname": request.hostname,
    }
    _log.rpush("chaos:executed", json.dumps(entry))
    return entry
