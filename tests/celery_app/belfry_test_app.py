"""A small Celery app that belfry's end-to-end tests run a real worker for.

The broker and result backend come from BELFRY_TEST_BROKER / BELFRY_TEST_BACKEND (with
BELFRY_TEST_MASTER_NAME for sentinel:// URLs). Every task
stores what it received (arguments and belfry's headers) in the result backend, so a test can
assert exactly what ran.
"""

import os
import time

from celery import Celery

app = Celery(
    "belfry_test_app",
    broker=os.environ["BELFRY_TEST_BROKER"],
    backend=os.environ["BELFRY_TEST_BACKEND"],
)
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    result_extended=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
# A Sentinel-managed broker and backend (sentinel:// URLs) name their master here, as kombu
# and Celery's Redis backend read it.
if os.environ.get("BELFRY_TEST_MASTER_NAME"):
    sentinel = {"master_name": os.environ["BELFRY_TEST_MASTER_NAME"]}
    app.conf.update(
        broker_transport_options=sentinel,
        result_backend_transport_options=sentinel,
    )


def _received(task, args, kwargs):
    request = task.request
    headers = request.headers or {}

    def header(name):
        # Celery exposes unknown headers both as request attributes and in request.headers.
        return headers.get(name, getattr(request, name, None))

    return {
        "args": list(args),
        "kwargs": kwargs,
        "task_id": request.id,
        "queue": (request.delivery_info or {}).get("routing_key"),
        "priority": (request.delivery_info or {}).get("priority"),
        "belfry_schedule": header("belfry_schedule"),
        "belfry_scheduled_at": header("belfry_scheduled_at"),
        "belfry_trigger": header("belfry_trigger"),
    }


@app.task(bind=True, name="belfry_test.record")
def record(self, *args, **kwargs):
    """Returns everything it was given."""
    return _received(self, args, kwargs)


@app.task(bind=True, name="belfry_test.report")
def report(self, *args, **kwargs):
    """Same as record, registered under a second name (tasks routed to another queue)."""
    return _received(self, args, kwargs)


@app.task(bind=True, name="belfry_test.sleep")
def sleep(self, seconds, *args, **kwargs):
    """Sleeps, and says when it ran: overlap tests compare runs' start and end."""
    started = time.time()
    time.sleep(seconds)
    received = _received(self, args, kwargs)
    received.update(started=started, finished=time.time())
    return received


@app.task(bind=True, name="belfry_test.fail")
def fail(self, *args, **kwargs):
    """Always fails: auto-pause tests count its FAILURE outcomes."""
    raise RuntimeError("belfry_test.fail fails on purpose")
