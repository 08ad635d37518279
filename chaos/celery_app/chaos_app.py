"""The Celery app the chaos harness runs a real worker for.

The broker and result backend come from CHAOS_BROKER / CHAOS_BACKEND. Every execution of
`chaos.record` is appended to the list `chaos:executed` in the backend's Redis (and of
`chaos.slow` to `chaos:slow:executed`, with its end in `chaos:slow:finished`), so the checker counts executions
(a result key is per task id and would hide a second run of the same id).

The harness kills this Redis while the worker runs, so both writes an execution makes must
outlast an outage: the record is retried until it lands, and carries an execution id of its
own so that a retried push whose first attempt did land (the reply was lost with the server)
is counted once; the result backend retries its store for the same reason. Without this an
execution that overlapped a Redis kill could leave no record, or a record without a result.
"""

import datetime
import json
import os
import time
import uuid

import redis
from celery import Celery

app = Celery("chaos_app", broker=os.environ["CHAOS_BROKER"], backend=os.environ["CHAOS_BACKEND"])
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    result_extended=True,
    result_backend_always_retry=True,
    result_backend_max_sleep_between_retries_ms=1000,
    worker_hijack_root_logger=False,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    broker_connection_retry_on_startup=True,
)

_log = redis.Redis.from_url(os.environ["CHAOS_BACKEND"])

# Longer than any Redis outage the harness injects.
RECORD_DEADLINE_SECONDS = 300


def _append_record(entry, key="chaos:executed"):
    payload = json.dumps(entry)
    deadline = time.monotonic() + RECORD_DEADLINE_SECONDS
    while True:
        try:
            _log.rpush(key, payload)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@app.task(bind=True, name="chaos.record")
def record(self, *args, **kwargs):
    """Appends this execution to chaos:executed and returns what it received."""
    request = self.request
    headers = request.headers or {}

    def header(name):
        return headers.get(name, getattr(request, name, None))

    entry = {
        "execution_id": str(uuid.uuid4()),
        "task_id": request.id,
        "belfry_schedule": header("belfry_schedule"),
        "belfry_scheduled_at": header("belfry_scheduled_at"),
        "executed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "hostname": request.hostname,
    }
    _append_record(entry)
    return entry


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


# How long a run of `chaos.slow` takes: two and a half times its schedules' interval, so
# every overlap policy has runs to skip or hold.
SLOW_SECONDS = 2.5


@app.task(bind=True, name="chaos.slow")
def slow(self, *args, **kwargs):
    """Records its start in chaos:slow:executed, runs for SLOW_SECONDS, then records its end in
    chaos:slow:finished: the checker holds the overlap policies against these times."""
    request = self.request
    headers = request.headers or {}
    execution_id = str(uuid.uuid4())
    _append_record(
        {
            "execution_id": execution_id,
            "task_id": request.id,
            "belfry_schedule": headers.get("belfry_schedule"),
            "belfry_scheduled_at": headers.get("belfry_scheduled_at"),
            "executed_at": _now(),
            "hostname": request.hostname,
        },
        "chaos:slow:executed",
    )
    time.sleep(SLOW_SECONDS)
    _append_record(
        {"execution_id": execution_id, "task_id": request.id, "finished_at": _now()},
        "chaos:slow:finished",
    )
    return execution_id
