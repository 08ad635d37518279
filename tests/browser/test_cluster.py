"""The cluster page and its live status on the shared cluster: one row per member with its
role, the leader and term the CLI reports, readiness, the two charts, and the JSON the page
polls; then the failover walk on a cluster of its own: with the cluster page and a schedule's
page open on a follower's console, the leader is SIGKILLed, the cluster page shows the new
leader without a reload, a pause and a resume still work through that follower, and the
browser console stays free of errors throughout; when the new leader dies too, the follower's
status answers without a leader and the page stops naming one; when the follower itself dies,
the page says "node unreachable" rather than throwing."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conftest import (ADMIN_TOKEN, READONLY_TOKEN, Cluster, expect_state, login, page_text,
                      schedule_url, screenshot, times_without_zone, wait_for)

LEADER = re.compile(r"Leader: node (\d+)")


def shown_leader(page) -> int | None:
    found = LEADER.search(page_text(page))
    return int(found.group(1)) if found else None


def test_cluster_page_matches_the_cli(cluster, contexts):
    context, log = contexts.new()
    page = context.new_page()
    leader = cluster.leader()
    follower = cluster.follower()
    node = cluster.nodes[follower]
    login(page, node, ADMIN_TOKEN)
    page.goto(f"{node.url}/cluster")
    status = cluster.status(follower)
    rows = page.locator("table#members tbody tr")
    expect(rows).to_have_count(3)
    for member in status["members"]:
        row = rows.filter(has_text=member["address"])
        expect(row).to_have_count(1)
        expect(row).to_contain_text(member["role"])
    expect(rows.filter(has_text="leader")).to_have_count(1)
    assert shown_leader(page) == leader
    assert re.search(rf"Term: {status['term']}\b", page_text(page)), page_text(page)
    for chart in ("svg#chart-lateness", "svg#chart-rate"):
        expect(page.locator(chart)).to_be_visible()
        # Readable: every label lies inside its chart.
        outside = page.locator(chart).evaluate("""svg => {
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text')].map(t => [t.textContent,
                t.getBoundingClientRect()]).filter(([, r]) => r.left < box.left - 1
                || r.right > box.right + 1).map(([text]) => text.slice(0, 40));
        }""")
        assert outside == [], f"{chart}: labels overflow the chart: {outside}"
    # Let the live refresh run once, then every time shown must carry its zone.
    with page.expect_response(lambda r: r.url.endswith("/cluster/status.json")):
        pass
    page.wait_for_load_state("networkidle")
    screenshot(page, "cluster")
    assert times_without_zone(page_text(page)) == []

    answer = page.context.request.get(f"{node.url}/cluster/status.json")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["node_id"] == follower
    assert body["leader"] == leader
    assert body["term"] == status["term"]
    assert len(body["members"]) == 3
    assert log.errors == [], log.errors


@pytest.fixture
def own_cluster(redis_server):
    """A cluster only the failover walk uses, since it kills a node."""
    started = Cluster(redis_server.url)
    yield started
    started.stop()


def test_leader_killed_while_a_followers_console_is_open(own_cluster, contexts):
    cluster = own_cluster
    name = "failover/watched"
    cluster.create(name, "app.watched", "--cron", "0 0 1 1 *")
    old_leader = cluster.leader()
    follower = cluster.follower()
    node = cluster.nodes[follower]

    context, log = contexts.new()
    status_page = context.new_page()
    login(status_page, node, ADMIN_TOKEN)
    status_page.goto(f"{node.url}/cluster")
    assert shown_leader(status_page) == old_leader
    # Marks this document: a reload would lose it, so a later check proves the live refresh.
    status_page.evaluate("() => { window.belfryTestMark = 'not reloaded'; }")
    schedule_page = context.new_page()
    schedule_page.goto(schedule_url(node, name))
    expect(schedule_page.get_by_role("button", name="Pause", exact=True)).to_be_visible()
    # Polled at least once before the fault, so the refresh is known to be running.
    with status_page.expect_response(lambda r: r.url.endswith("/cluster/status.json"),
                                     timeout=10_000):
        pass

    cluster.kill(old_leader)
    new_leader = cluster.leader(30)
    assert new_leader != old_leader
    if new_leader == follower:
        # The page's node won the election: leadership goes to the other survivor, so that the
        # page's node is a follower again (its writes forwarded, and alone later on).
        other = next(n.id for n in cluster.live() if n.id != follower)
        cluster.cli("cluster", "transfer-leader", "--to", str(other), node=follower)
        new_leader = wait_for(f"node {other} to lead", 30,
                              lambda: other if cluster.agreed_leader() == other else None,
                              every=0.2)
    wait_for(f"the follower's cluster page to show node {new_leader} leading", 30,
             lambda: True if shown_leader(status_page) == new_leader else None, every=0.25)
    assert status_page.evaluate("() => window.belfryTestMark") == "not reloaded"
    dead = status_page.locator("table#members tbody tr").filter(
        has_text=cluster.nodes[old_leader].api)
    expect(dead).to_have_count(1)
    expect(dead).not_to_contain_text(re.compile(r"\bleader\b"))

    # The schedule page, opened before the fault, still acts through the follower.
    schedule_page.get_by_role("button", name="Pause", exact=True).click()
    schedule_page.wait_for_load_state()
    expect_state(schedule_page, "paused")
    assert cluster.schedule(name, node=follower)["enabled"] is False
    schedule_page.get_by_role("button", name="Resume", exact=True).click()
    schedule_page.wait_for_load_state()
    expect_state(schedule_page, "active")
    assert cluster.schedule(name, node=follower)["enabled"] is True

    # A read-only look from the same follower agrees.
    ro_context, ro_log = contexts.new()
    ro_page = ro_context.new_page()
    login(ro_page, node, READONLY_TOKEN)
    ro_page.goto(f"{node.url}/cluster")
    assert shown_leader(ro_page) == new_leader

    # Still refreshing after all that, and nothing went to the browser console.
    with status_page.expect_response(lambda r: r.url.endswith("/cluster/status.json"),
                                     timeout=10_000) as polled:
        pass
    assert polled.value.status == 200
    assert log.errors == [] and ro_log.errors == [], log.errors + ro_log.errors
    assert log.exceptions == [] and ro_log.exceptions == []

    # The new leader goes too: the follower is alone, without a leader; its status still
    # answers 200 (leader null) and the page stops naming the dead leader.
    cluster.kill(new_leader)

    def leaderless() -> dict | None:
        answer = context.request.get(f"{node.url}/cluster/status.json", timeout=10_000)
        assert answer.status == 200, answer.status
        body = answer.json()
        return body if body["leader"] is None else None

    assert wait_for("the follower's status without a leader", 30, leaderless,
                    every=0.5)["node_id"] == follower
    wait_for("the cluster page to stop naming a leader", 15,
             lambda: True if shown_leader(status_page) is None else None, every=0.25)
    assert log.errors == [] and log.exceptions == [], log.errors + log.exceptions

    # Then the node the page talks to: the page says so instead of throwing (the browser's own
    # lines about the connection it lost are expected in its console).
    cluster.kill(follower)
    wait_for("the cluster page to show 'node unreachable'", 15,
             lambda: True if "node unreachable" in page_text(status_page) else None, every=0.25)
    assert log.exceptions == [], log.exceptions
    network = re.compile(r"net::ERR_[A-Z_]+ .*/cluster/status\.json")
    assert [e for e in log.errors if not network.search(e)] == [], log.errors
