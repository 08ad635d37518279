"""The schedules page: listing what the CLI created, searching by name, task and label,
filtering by state and kind, paging forward and back, reaching a schedule's page by its name;
operating the search with the keyboard alone; and a 375 px wide phone screen."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import expect

from conftest import ADMIN_TOKEN, login, page_text, screenshot, times_without_zone

PAGED = 120  # more than a page holds

SHELF = {
    # name: (task, kind, labels)
    "shelf/invoices-eu": ("billing.invoice", "cron", {"team": "finance", "region": "eu"}),
    "shelf/invoices-us": ("billing.invoice", "cron", {"team": "finance", "region": "us"}),
    "shelf/weekly-report": ("reports.weekly", "every", {"team": "data"}),
    "shelf/launch": ("rockets.launch", "once", {"team": "space"}),
    "shelf/lights": ("home.lights_on", "solar", {"team": "home"}),
    "shelf/old-cleanup": ("ops.cleanup", "cron", {"team": "ops"}),
}
PAUSED = "shelf/old-cleanup"


def entry(name: str, task: str, kind: str, labels: dict[str, str]) -> str:
    spec = {
        "cron": 'cron = "0 0 1 1 *"',
        "every": 'every = "7d"',
        "once": 'once = "2099-01-01T00:00:00Z"',
        "solar": 'solar = "sunset"\nlatitude = 51.5\nlongitude = -0.12',
    }[kind]
    shown = ", ".join(f'{k} = "{v}"' for k, v in labels.items())
    return f'[[schedule]]\nname = "{name}"\ntask = "{task}"\n{spec}\nlabels = {{ {shown} }}\n'


@pytest.fixture(scope="module")
def catalogue(cluster):
    """The shelf (one schedule of each kind, one paused) and PAGED `page-NNN` schedules."""
    text = "\n".join(entry(name, *value) for name, value in SHELF.items())
    text += "\n".join(entry(f"page-{i:03}", "paging.noop", "cron", {"set": "paging"})
                      for i in range(PAGED))
    cluster.apply(text)
    cluster.cli("schedule", "pause", PAUSED)
    return cluster


@pytest.fixture
def page(catalogue, admin):
    return admin[0]


def listed(page) -> list[str]:
    """The names the schedules table links to, in order."""
    links = page.locator("table#schedules tbody tr a[href*='/schedule?']")
    return [text.strip() for text in links.all_inner_texts()]


def link_names(page) -> list[str]:
    """The names the table's links carry in their `name` query field (must equal the text)."""
    hrefs = page.locator("table#schedules tbody tr a[href*='/schedule?']").evaluate_all(
        "links => links.map(a => a.href)")
    return [parse_qs(urlparse(h).query)["name"][0] for h in hrefs]


def search(page, text: str) -> None:
    box = page.get_by_label("Search")
    expect(box).to_have_attribute("type", "search")
    box.fill(text)
    box.press("Enter")
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query).get("q") == [text])


def test_lists_what_the_cli_created(page, cluster):
    page.goto(f"{cluster.nodes[1].url}/schedules?{urlencode({'q': 'shelf/'})}")
    assert sorted(listed(page)) == sorted(SHELF)
    assert link_names(page) == listed(page)
    assert times_without_zone(page_text(page)) == []
    screenshot(page, "schedules")
    # A row's link opens the schedule's page (the name holds a slash).
    page.get_by_role("link", name="shelf/invoices-eu", exact=True).click()
    page.wait_for_url(re.compile(r"/schedule\?"))
    expect(page.get_by_role("heading", level=1)).to_have_text("shelf/invoices-eu")
    expect(page.get_by_text("billing.invoice").first).to_be_visible()


@pytest.mark.parametrize("query, expected", [
    ("invoices-eu", ["shelf/invoices-eu"]),             # by name
    ("reports.weekly", ["shelf/weekly-report"]),        # by task
    ("billing.invoice", ["shelf/invoices-eu", "shelf/invoices-us"]),
    ("team=finance", ["shelf/invoices-eu", "shelf/invoices-us"]),  # by label
    ("region=us", ["shelf/invoices-us"]),
    ("team=nobody", []),
])
def test_search_by_name_task_and_label(page, cluster, query, expected):
    page.goto(f"{cluster.nodes[1].url}/schedules")
    search(page, query)
    assert sorted(listed(page)) == expected
    expect(page.get_by_label("Search")).to_have_value(query)


@pytest.mark.parametrize("params, expected", [
    ({"state": "paused"}, [PAUSED]),
    ({"state": "active"}, sorted(set(SHELF) - {PAUSED})),
    ({"kind": "solar"}, ["shelf/lights"]),
    ({"kind": "once"}, ["shelf/launch"]),
    ({"kind": "every"}, ["shelf/weekly-report"]),
    ({"kind": "cron", "state": "active"}, ["shelf/invoices-eu", "shelf/invoices-us"]),
])
def test_filter_by_state_and_kind(page, cluster, params, expected):
    response = page.goto(f"{cluster.nodes[1].url}/schedules?"
                         + urlencode({"q": "shelf/", **params}))
    assert response.status == 200
    assert sorted(listed(page)) == expected


def test_sort_by_name(page, cluster):
    page.goto(f"{cluster.nodes[1].url}/schedules?"
              + urlencode({"q": "set=paging", "sort": "name"}))
    names = listed(page)
    assert names and names == sorted(names)
    assert names[0] == "page-000"


def test_paginate_forward_and_back(page, cluster):
    page.goto(f"{cluster.nodes[1].url}/schedules?" + urlencode({"q": "page-", "sort": "name"}))
    pages = [listed(page)]
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    while page.get_by_role("link", name="Next page").count():
        assert len(pages) < PAGED, "Next page never ends"
        page.get_by_role("link", name="Next page").click()
        page.wait_for_load_state()
        pages.append(listed(page))
    seen = [name for names in pages for name in names]
    assert len(pages) >= 2, f"{PAGED} schedules fit on one page"
    assert len(seen) == len(set(seen)), "a schedule is on two pages"
    assert sorted(seen) == [f"page-{i:03}" for i in range(PAGED)]
    assert seen == sorted(seen)
    # The search and the sort survive paging; "Previous page" goes back one page.
    assert parse_qs(urlparse(page.url).query).get("q") == ["page-"]
    page.get_by_role("link", name="Previous page").click()
    page.wait_for_load_state()
    assert listed(page) == pages[-2]


def test_search_by_keyboard_alone(page, cluster):
    page.goto(f"{cluster.nodes[1].url}/schedules")
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => [document.activeElement.tagName, document.activeElement.type,"
            " document.activeElement.name]")
        if focused == ["INPUT", "search", "q"]:
            break
    else:
        pytest.fail("the search box is not reachable with Tab")
    page.keyboard.type("invoices-us")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query).get("q") == ["invoices-us"])
    assert listed(page) == ["shelf/invoices-us"]
    # The result is reachable too: Tab on to its link and open it with Enter.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") \
                == "shelf/invoices-us":
            break
    else:
        pytest.fail("the result's link is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/schedule\?"))
    expect(page.get_by_role("heading", level=1)).to_have_text("shelf/invoices-us")


def test_phone_width_has_no_horizontal_scrolling(catalogue, cluster, contexts):
    context, log = contexts.new(width=375, height=812)
    page = context.new_page()
    login(page, cluster.nodes[1], ADMIN_TOKEN)
    for query in ({}, {"q": "shelf/"}):
        page.goto(f"{cluster.nodes[1].url}/schedules?{urlencode(query)}")
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.body.scrollWidth]")
        assert widths[0] <= widths[1] and widths[2] <= widths[1], \
            f"scrollWidth {widths[0]}/{widths[2]} > viewport {widths[1]} for {query}"
        expect(page.get_by_label("Search")).to_be_visible()
        expect(page.locator("table#schedules")).to_be_visible()
    screenshot(page, "schedules-phone")
