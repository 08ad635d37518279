"""The tasks of `belfry dev`'s sample schedules, for a real Celery worker.

`belfry dev --worker` writes this file into its directory and runs
`celery -A tasks --broker <the dev Redis> worker` there. Point your own worker at the same
Redis with that command to watch it receive every dispatch.
"""

from celery import Celery

app = Celery("tasks")
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    broker_connection_retry_on_startup=True,
)


@app.task(name="tasks.heartbeat")
def heartbeat(message):
    """Every 2 s: answers the ping."""
    return "pong" if message == "ping" else message


@app.task(name="reports.build")
def build(region="all"):
    """Every minute: builds a (pretend) report."""
    return f"report for {region}"


@app.task(name="reports.digest")
def digest():
    """Every 15 minutes in Paris business hours: sends a (pretend) digest."""
    return "digest sent"
