"""What a read-only session may do: it sees schedules and the cluster but no button, link or
form that changes anything, and the server refuses a forged state-changing POST (403) even
with the session's own CSRF token; an admin's POST without a valid CSRF token is refused too.
The CLI confirms nothing changed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import ADMIN_TOKEN, login, schedule_url

ACTIONS = ["Pause", "Resume", "Trigger now", "Delete", "Backfill", "New schedule", "Edit"]
POSTS = {
    "/schedule/pause": {},
    "/schedule/resume": {},
    "/schedule/trigger": {},
    "/schedule/delete": {"revision": "1"},
    "/schedule/backfill": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T03:00:00Z"},
}


@pytest.fixture(scope="module")
def target(cluster):
    name = "readonly/target"
    cluster.create(name, "app.guarded", "--cron", "0 0 1 1 *", "--queue", "readonly-probe")
    return name


def assert_no_actions(page) -> None:
    for action in ACTIONS:
        for role in ("button", "link"):
            expect(page.get_by_role(role, name=action, exact=True)).to_have_count(0)
    forms = page.locator("form").evaluate_all(
        "forms => forms.map(f => [f.method, new URL(f.action, location.href).pathname])")
    changing = [f for f in forms if f[0] == "post" and f[1] not in ("/logout",)]
    assert changing == [], f"a read-only page holds forms that change things: {changing}"


def test_readonly_sees_no_actions(cluster, readonly, target):
    page, _ = readonly
    node = cluster.nodes[2]
    expect(page.locator("header, [role=banner]").first).to_contain_text("read-only")
    for url in (f"{node.url}/schedules", schedule_url(node, target), f"{node.url}/cluster"):
        page.goto(url)
        expect(page.locator("header, [role=banner]").first).to_contain_text("read-only")
        assert_no_actions(page)
    page.goto(schedule_url(node, target))
    expect(page.get_by_role("heading", level=1)).to_have_text(target)
    expect(page.locator("table#upcoming")).to_be_visible()
    # The forms' own pages are refused, or at least offer nothing to save.
    for path in ("/schedules/new", "/schedule/edit?name=readonly%2Ftarget"):
        response = page.goto(f"{node.url}{path}")
        if response.status != 403:
            assert_no_actions(page)
            expect(page.get_by_role("button", name="Save")).to_have_count(0)


def test_readonly_forged_posts_are_refused(cluster, redis_server, readonly, target):
    page, _ = readonly
    node = cluster.nodes[2]
    page.goto(schedule_url(node, target))
    # The session's CSRF token, from the one form a read-only page has (logging out).
    tokens = page.locator("input[name=csrf]").evaluate_all("inputs => inputs.map(i => i.value)")
    csrf = tokens[0] if tokens else ""
    request = page.context.request
    for path, extra in POSTS.items():
        response = request.post(f"{node.url}{path}",
                                form={"name": target, "csrf": csrf, **extra}, max_redirects=0)
        assert response.status == 403, f"{path}: {response.status}"
    stored = cluster.schedule(target)
    assert stored["enabled"] is True and stored["revision"] == 1
    assert redis_server.client.llen("readonly-probe") == 0


def test_posts_without_a_valid_csrf_token_are_refused(cluster, contexts, admin, target):
    page, _ = admin
    node = cluster.nodes[1]
    request = page.context.request
    # Another admin session's token is not this session's.
    other, _ = contexts.new()
    other_page = other.new_page()
    login(other_page, node, ADMIN_TOKEN)
    other_page.goto(schedule_url(node, target))
    foreign = other_page.locator("input[name=csrf]").first.input_value()
    assert foreign
    for csrf in (None, "", "not-the-session-token", foreign):
        form = {"name": target} if csrf is None else {"name": target, "csrf": csrf}
        response = request.post(f"{node.url}/schedule/pause", form=form, max_redirects=0)
        assert response.status == 403, f"csrf {csrf!r}: {response.status}"
    # The live validation endpoint wants the header too.
    response = request.post(f"{node.url}/api/validate",
                            data={"name": "x", "task": "app.x", "kind": "cron",
                                  "spec": "0 * * * *"}, max_redirects=0)
    assert response.status == 403, response.status
    assert cluster.schedule(target)["enabled"] is True
