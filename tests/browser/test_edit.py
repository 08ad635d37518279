"""Creating a schedule through the console's form: with JavaScript, live validation names the
faulty field (`role=alert`) and previews the next occurrences as the user types; saving an
invalid form re-renders it (400) with the field-named error, saving a valid one lands on the
schedule's page (upcoming times in its zone and in UTC), and the CLI sees what was saved. The
same without JavaScript, and editing an existing schedule."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

from conftest import ADMIN_TOKEN, login, schedule_url, screenshot


def form_post(response) -> bool:
    """The answer to the form's submission (its action is the server's choice)."""
    return response.request.method == "POST" and response.request.is_navigation_request()


def fill_form(page, name: str, task: str, kind: str, spec: str, tz: str = "",
              labels: str = "", queue: str = "") -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Task", exact=True).fill(task)
    page.get_by_label("Kind", exact=True).select_option(kind)
    page.get_by_label("Spec", exact=True).fill(spec)
    if tz:
        page.get_by_label("Timezone", exact=True).fill(tz)
    if labels:
        page.get_by_label("Labels", exact=True).fill(labels)
    if queue:
        page.get_by_label("Queue", exact=True).fill(queue)


def user_labels(schedule: dict) -> dict:
    """The labels a user gave (belfry's own, `belfry.io/…`, left out)."""
    return {k: v for k, v in schedule["labels"].items() if not k.startswith("belfry.io/")}


def on_schedule_page(page, name: str) -> None:
    page.wait_for_url(lambda url: urlparse(url).path == "/schedule"
                      and parse_qs(urlparse(url).query).get("name") == [name])
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def test_create_with_live_validation_then_save(cluster, admin):
    page, log = admin
    node = cluster.nodes[1]
    page.goto(f"{node.url}/schedules")
    page.get_by_role("link", name="New schedule").or_(
        page.get_by_role("button", name="New schedule")).click()
    page.wait_for_url(re.compile(r"/schedules/new$"))
    for label in ("Name", "Task", "Kind", "Spec", "Timezone", "Args (JSON)", "Kwargs (JSON)",
                  "Queue", "Labels"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    expect(page.get_by_label("Kind", exact=True).locator("option")).to_have_text(
        ["cron", "every", "once", "solar"])

    name = "edit/nightly-build"
    with page.expect_request(lambda r: r.url.endswith("/api/validate")) as validated:
        fill_form(page, name, "builds.nightly", "cron", "61 * * * *", tz="Europe/Paris",
                  labels="team=builds, tier=gold")
    request = validated.value
    assert request.method == "POST"
    assert request.header_value("x-csrf-token") == \
        page.locator("input[name=csrf]").first.input_value()
    assert request.header_value("content-type").startswith("application/json")
    assert request.post_data_json["task"] == "builds.nightly"
    # Live: the API's error, named by its field, while typing; no preview of a broken spec.
    alert = page.get_by_role("alert").filter(has_text=re.compile("spec"))
    expect(alert).to_be_visible()
    expect(page.locator("ol#preview li")).to_have_count(0)

    # Saved anyway: the server answers 400 with the form and the same error.
    with page.expect_response(form_post) as saved:
        page.get_by_role("button", name="Save").click()
    assert saved.value.status == 400, saved.value.status
    page.wait_for_load_state()
    expect(page.get_by_role("alert").filter(has_text=re.compile("spec"))).to_be_visible()
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    expect(page.get_by_label("Spec", exact=True)).to_have_value("61 * * * *")
    screenshot(page, "create-error")
    assert cluster.cli("schedule", "get", name, check=False).returncode != 0

    # Corrected: the alert clears and the preview shows the next occurrences.
    page.get_by_label("Spec", exact=True).fill("30 2 * * *")
    expect(page.locator("ol#preview li").first).to_be_visible()
    assert page.locator("ol#preview li").count() >= 3
    expect(page.locator("ol#preview")).to_contain_text("Europe/Paris")
    expect(page.get_by_role("alert").filter(has_text=re.compile("spec"))).to_have_count(0)

    page.get_by_role("button", name="Save").click()
    on_schedule_page(page, name)
    upcoming = page.locator("table#upcoming tbody tr")
    expect(upcoming).to_have_count(10)
    first = upcoming.first.inner_text()
    assert "Europe/Paris" in first and "UTC" in first, first
    assert "02:30" in first, first
    expect(page.get_by_text("30 2 * * *").first).to_be_visible()

    saved = cluster.schedule(name, node=3)
    assert saved["task"] == "builds.nightly"
    assert saved["spec"]["cron"] == "30 2 * * *"
    assert saved["spec"].get("timezone") == "Europe/Paris", saved
    assert user_labels(saved) == {"team": "builds", "tier": "gold"}
    assert saved["enabled"] is True
    assert log.errors == [] or all("status of 4" in e for e in log.errors), log.errors


def test_create_without_javascript(cluster, contexts):
    context, _ = contexts.new(javascript=False)
    page = context.new_page()
    node = cluster.nodes[2]
    login(page, node, ADMIN_TOKEN)
    page.goto(f"{node.url}/schedules/new")
    name = "edit/no-js"
    fill_form(page, name, "app.every_minute", "every", "ten seconds", queue="nojs")
    with page.expect_response(form_post) as saved:
        page.get_by_role("button", name="Save").click()
    assert saved.value.status == 400
    expect(page.get_by_role("alert").filter(has_text=re.compile("spec"))).to_be_visible()

    page.get_by_label("Spec", exact=True).fill("1h")
    with page.expect_response(form_post) as saved:
        page.get_by_role("button", name="Save").click()
    assert saved.value.status == 303
    on_schedule_page(page, name)
    stored = cluster.schedule(name)
    assert stored["spec"] == {"every": "1h"} or stored["spec"].get("every") == "1h", stored
    assert stored["options"].get("queue") == "nojs", stored


def test_edit_changes_the_task_and_keeps_the_rest(cluster, admin):
    page, _ = admin
    node = cluster.nodes[1]
    name = "edit/existing"
    cluster.create(name, "app.before", "--cron", "15 4 * * *", "--tz", "Asia/Tokyo",
                   "--label", "team=ops")
    page.goto(schedule_url(node, name))
    page.get_by_role("link", name="Edit").or_(page.get_by_role("button", name="Edit")).click()
    page.wait_for_url(re.compile(r"/schedule/edit\?"))
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    expect(page.get_by_label("Spec", exact=True)).to_have_value("15 4 * * *")
    expect(page.get_by_label("Timezone", exact=True)).to_have_value("Asia/Tokyo")
    expect(page.get_by_label("Labels", exact=True)).to_have_value(
        re.compile(r"(^|,\s*)team=ops(\s*,|$)"))
    page.get_by_label("Task", exact=True).fill("app.after")
    page.get_by_role("button", name="Save").click()
    on_schedule_page(page, name)
    stored = cluster.schedule(name)
    assert stored["task"] == "app.after"
    assert stored["spec"]["cron"] == "15 4 * * *"
    assert user_labels(stored) == {"team": "ops"}


def test_solar_adds_latitude_and_longitude(cluster, admin):
    page, _ = admin
    node = cluster.nodes[1]
    page.goto(f"{node.url}/schedules/new")
    latitude = page.get_by_label("Latitude", exact=True)
    expect(latitude).to_be_hidden()
    name = "edit/sunset-lights"
    fill_form(page, name, "home.lights_on", "solar", "sunset")
    expect(latitude).to_be_visible()
    latitude.fill("51.5")
    page.get_by_label("Longitude", exact=True).fill("-0.12")
    expect(page.locator("ol#preview li").first).to_be_visible()
    page.get_by_role("button", name="Save").click()
    on_schedule_page(page, name)
    stored = cluster.schedule(name)
    assert stored["spec"]["solar"] == "sunset", stored
    assert abs(stored["spec"]["latitude"] - 51.5) < 1e-9, stored
    assert abs(stored["spec"]["longitude"] + 0.12) < 1e-9, stored
