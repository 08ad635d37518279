"""An admin's actions on a schedule's page, each checked outside the browser: pause and resume
(the state text changes, `belfry schedule get` agrees), "Trigger now" (the flashed task id is
the id of the Celery message that reached the queue in Redis, and the run shows in the run
history with its Flower link), a backfill (each past occurrence in the range reaches Redis
once), and a delete that asks to confirm first."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from conftest import (FLOWER_URL, UUID, expect_state, page_text, schedule_url, screenshot,
                      times_without_zone, wait_for)


def test_pause_and_resume(cluster, admin):
    page, _ = admin
    name = "actions/pause-me"
    cluster.create(name, "app.pausable", "--cron", "0 0 1 1 *")
    page.goto(schedule_url(cluster.nodes[1], name))
    expect_state(page, "active")
    expect(page.get_by_role("button", name="Resume", exact=True)).to_have_count(0)

    page.get_by_role("button", name="Pause", exact=True).click()
    page.wait_for_load_state()
    expect_state(page, "paused")
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Pause", exact=True)).to_have_count(0)
    assert cluster.schedule(name, node=2)["enabled"] is False

    page.get_by_role("button", name="Resume", exact=True).click()
    page.wait_for_load_state()
    expect_state(page, "active")
    expect(page.get_by_role("button", name="Pause", exact=True)).to_be_visible()
    assert cluster.schedule(name, node=3)["enabled"] is True


def test_trigger_reaches_redis_with_the_flashed_task_id(cluster, redis_server, admin):
    page, _ = admin
    name = "actions/trigger-me"
    queue = "console-trigger"
    cluster.create(name, "reports.trigger_probe", "--cron", "0 0 1 1 *", "--queue", queue,
                   "--args", '[1, "two"]', "--kwargs", '{"k": "v"}')
    assert redis_server.client.llen(queue) == 0
    page.goto(schedule_url(cluster.nodes[1], name))
    page.get_by_role("button", name="Trigger now").click()
    page.wait_for_load_state()
    flash = page.get_by_text(re.compile(rf"Triggered: task id {UUID}"))
    expect(flash).to_be_visible()
    task_id = re.search(UUID, flash.inner_text()).group(0)

    wait_for(f"the triggered message in Redis list {queue}", 20,
             lambda: True if redis_server.client.llen(queue) >= 1 else None)
    messages = [json.loads(raw) for raw in redis_server.client.lrange(queue, 0, -1)]
    assert len(messages) == 1, messages
    message = messages[0]
    assert message["headers"]["id"] == task_id
    assert message["headers"]["task"] == "reports.trigger_probe"
    assert message["properties"]["body_encoding"] == "base64"
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == [1, "two"] and kwargs == {"k": "v"}

    # The run history shows it, its task id linking to Flower; the timeline is drawn.
    def run_row():
        page.reload()
        row = page.locator("table#runs tbody tr").filter(has_text=task_id)
        return row if row.count() == 1 else None

    row = wait_for("the triggered run in the run history", 20, run_row, every=0.5)
    expect(row.get_by_role("link", name=task_id)).to_have_attribute(
        "href", f"{FLOWER_URL}/task/{task_id}")
    expect(page.locator("svg#timeline")).to_be_attached()
    expect(page.locator("table#upcoming tbody tr")).to_have_count(10)
    assert times_without_zone(page_text(page)) == []
    screenshot(page, "schedule")


def test_backfill_sends_each_past_occurrence_once(cluster, redis_server, admin):
    page, _ = admin
    name = "actions/backfill-me"
    queue = "console-backfill"
    cluster.create(name, "reports.backfilled", "--cron", "0 3 * * *", "--queue", queue)
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=3)
    expected = {start + timedelta(days=d, hours=3) for d in range(3)}
    page.goto(schedule_url(cluster.nodes[1], name))
    page.get_by_label("From", exact=True).fill(start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    page.get_by_label("To", exact=True).fill(midnight.strftime("%Y-%m-%dT%H:%M:%SZ"))
    page.get_by_role("button", name="Backfill").click()
    page.wait_for_url(re.compile(r"/schedule\?"))
    expect(page.get_by_role("heading", level=1)).to_have_text(name)

    def sent() -> list[dict] | None:
        raw = redis_server.client.lrange(queue, 0, -1)
        return [json.loads(m) for m in raw] if len(raw) >= len(expected) else None

    messages = wait_for(f"{len(expected)} backfilled messages in {queue}", 30, sent, every=0.25)
    assert len(messages) == len(expected), messages
    # RFC 3339 in UTC, to the nanosecond: the whole seconds are compared.
    instants = {datetime.strptime(m["headers"]["belfry_scheduled_at"][:19], "%Y-%m-%dT%H:%M:%S")
                .replace(tzinfo=timezone.utc) for m in messages}
    assert instants == expected
    assert len({m["headers"]["id"] for m in messages}) == len(expected)


def test_delete_asks_to_confirm(cluster, admin):
    page, _ = admin
    name = "actions/delete-me"
    cluster.create(name, "app.doomed", "--cron", "0 0 1 1 *")
    page.goto(schedule_url(cluster.nodes[1], name))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_load_state()
    # Not yet: a second form asks to confirm.
    assert cluster.cli("schedule", "get", name, check=False).returncode == 0
    page.get_by_role("button", name=re.compile("Delete")).click()
    page.wait_for_url(re.compile(r"/schedules(\?.*)?$"))
    done = cluster.cli("schedule", "get", name, check=False)
    assert done.returncode != 0, done.stdout
