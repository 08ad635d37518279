"""An admin's actions on a schedule's page, each checked outside the browser: pause and resume
(the state text changes, `belfry schedule get` agrees), "Trigger now" (the flashed task id is
the id of the Celery message that reached the queue in Redis, and the run shows in the run
history with its Flower link), and a delete that asks to confirm first."""

from __future__ import annotations

import base64
import json
import re

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
