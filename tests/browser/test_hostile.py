"""Hostile values stored in a schedule (a task that is an `<img onerror>`, a label value that
closes an attribute and opens a `<script>`, arguments and a description holding markup) show as
literal text on every page that shows them, and as the literal values of the edit form's
inputs; no element is injected and no dialog fires.

Task names may not hold spaces (the API refuses them), so the task is the space-free form of
`<img src=x onerror=alert(1)>`, which a browser runs just the same; the arguments carry the
spaced form."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from conftest import schedule_url, wait_for

TASK = "<img/src='x'/onerror=alert(1)>"
ARG = "<img src=x onerror=alert(1)>"
LABEL = '"><script>alert(2)</script>'
KWARG = "'><svg/onload=alert(3)>"
DESCRIPTION = "<b>bold</b> & <i>italic</i>"
NAME = "hostile/probe"

INJECTED = """() => ({
    images: document.querySelectorAll('img[src="x"], img[onerror], svg[onload]').length,
    bold: document.querySelectorAll('b, i').length,
    scripts: [...document.scripts].filter(s => s.textContent.includes('alert')).length,
    text: document.body.innerText,
})"""


@pytest.fixture(scope="module")
def hostile(cluster):
    cluster.create(NAME, TASK, "--cron", "0 0 1 1 *", "--label", f"note={LABEL}",
                   "--args", json.dumps([ARG]), "--kwargs", json.dumps({"k": KWARG}),
                   "--description", DESCRIPTION)
    return NAME


def assert_literal(page, log, *shown: str) -> None:
    found = page.evaluate(INJECTED)
    assert found["images"] == 0 and found["bold"] == 0 and found["scripts"] == 0, found
    for text in shown:
        assert text in found["text"], f"{text!r} not shown literally on {page.url}"
    assert log.dialogs == [], log.dialogs


def test_hostile_values_show_literally(cluster, admin, hostile):
    page, log = admin
    node = cluster.nodes[1]
    page.goto(f"{node.url}/schedules?{urlencode({'q': 'hostile/'})}")
    expect(page.get_by_role("link", name=NAME, exact=True)).to_be_visible()
    assert_literal(page, log, NAME, TASK)

    page.get_by_role("link", name=NAME, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    assert_literal(page, log, NAME, TASK, LABEL, ARG, KWARG)

    # Searching by the hostile label echoes it back into the search box, as a value.
    page.goto(f"{node.url}/schedules?{urlencode({'q': f'note={LABEL}'})}")
    expect(page.get_by_label("Search")).to_have_value(f"note={LABEL}")
    expect(page.get_by_role("link", name=NAME, exact=True)).to_be_visible()
    assert_literal(page, log, NAME)

    page.goto(f"{node.url}/schedule/edit?{urlencode({'name': NAME})}")
    expect(page.get_by_label("Name", exact=True)).to_have_value(NAME)
    expect(page.get_by_label("Task", exact=True)).to_have_value(TASK)
    expect(page.get_by_label("Labels", exact=True)).to_have_value(
        re.compile(re.escape(f"note={LABEL}")))
    expect(page.get_by_label("Args (JSON)", exact=True)).to_have_value(
        re.compile(re.escape(json.dumps(ARG))))
    expect(page.get_by_label("Kwargs (JSON)", exact=True)).to_have_value(
        re.compile(re.escape(json.dumps(KWARG))))
    assert_literal(page, log)

    # The live preview renders the API's answer about the hostile values without injecting.
    page.get_by_label("Task", exact=True).fill(TASK + " ")
    page.get_by_label("Spec", exact=True).fill("not <i>a</i> cron")
    expect(page.get_by_role("alert").first).to_be_visible()
    assert_literal(page, log)


def test_hostile_values_on_a_readonly_page(cluster, readonly, hostile):
    page, log = readonly
    page.goto(schedule_url(cluster.nodes[2], NAME))
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    assert_literal(page, log, NAME, TASK, LABEL, ARG)


def test_the_payloads_run_when_not_escaped(contexts):
    """The values above are live: pasted unescaped into a page (as text, a double-quoted and a
    single-quoted attribute), each one opens its dialog, so their silence above means something."""
    context, log = contexts.new()
    page = context.new_page()
    page.set_content(f"<p>{TASK}</p><input value=\"{LABEL}\"><a title='{KWARG}'>x</a>")
    wait_for("the three payloads' dialogs", 5,
             lambda: True if len(log.dialogs) == 3 else None, every=0.05)
    assert sorted(log.dialogs) == ["alert: 1", "alert: 2", "alert: 3"], log.dialogs
