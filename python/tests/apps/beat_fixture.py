"""A Celery app whose beat schedule covers what the exporter translates, and what it refuses
(see refused_app)."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import crontab, schedule, solar
from kombu import Exchange, Queue

def new_york_now():
    """A clock read in another zone (a module function: beat pickles schedules)."""
    return datetime.now(ZoneInfo("America/New_York"))


app = Celery("beat_fixture", broker="redis://127.0.0.1:1/0")
app.conf.timezone = "Europe/Paris"
app.conf.enable_utc = True
app.conf.task_queues = [Queue("celery"), Queue("reports", Exchange("reports"), routing_key="reports")]
app.conf.task_routes = {"fixture.routed": {"queue": "reports"}}
schedule = {
    "every-10s": {"task": "fixture.ping", "schedule": 10.0, "args": (1, "two")},
    "every-90-min": {"task": "fixture.ping", "schedule": timedelta(minutes=90),
                     "kwargs": {"region": "eu"}},
    "weekday-mornings": {"task": "fixture.report", "schedule": crontab(minute=30, hour=7,
                                                                       day_of_week="mon-fri"),
                         "options": {"queue": "reports", "priority": 3, "expires": 600,
                                     "headers": {"team": "data"}, "time_limit": 30,
                                     "soft_time_limit": 20}},
    "quarter-hours": {"task": "fixture.report", "schedule": crontab(minute="*/15")},
    "first-of-month": {"task": "fixture.report",
                       "schedule": crontab(minute=0, hour=[6, 18], day_of_month=1)},
    "paris-clock": {"task": "fixture.report", "schedule": crontab(
        minute=5, hour=9, nowfun=new_york_now)},
    "routed": {"task": "fixture.routed", "schedule": crontab(minute=0)},
    "hourly-relative": {"task": "fixture.ping", "schedule": schedule(timedelta(hours=1),
                                                                     relative=True)},
    "expires-at": {"task": "fixture.ping", "schedule": 60,
                   "options": {"expires": datetime(2030, 1, 1, tzinfo=timezone.utc)}},
}
schedule["sunrise-paris"] = {"task": "fixture.ping", "schedule": solar("sunrise", 48.85, 2.35)}
# Assigned, not read: reading app.conf would configure the app before the handlers below are
# connected, and then beat itself would never run them.
app.conf.beat_schedule = schedule


@app.task(name="fixture.ping")
def ping(*args, **kwargs):
    return "pong"


@app.task(name="fixture.report", ignore_result=True)
def report(*args, **kwargs):
    return "report"


@app.task(name="fixture.routed")
def routed():
    return "routed"


@app.on_after_configure.connect
def add_on_configure(sender, **kwargs):
    sender.add_periodic_task(30.0, ping.s("configured"), name="added-on-configure")


@app.on_after_finalize.connect
def add_on_finalize(sender, **kwargs):
    sender.add_periodic_task(crontab(minute=0, hour=3), report.s(), name="added-on-finalize")
