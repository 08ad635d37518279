"""Logging in and out, and what every response carries: the login form refuses an unknown token
and lands a known one on the schedules page; the session cookie is HttpOnly and
SameSite=Strict (and Secure when the node has TLS, the console then being HTTPS); without
authentication every visitor is an admin, CSRF still checked; every page and asset carries the
Content-Security-Policy and its companion headers, and no page holds an inline script or style
attribute."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from playwright.sync_api import expect

from conftest import (ADMIN_TOKEN, READONLY_TOKEN, Cluster, expect_state, login, schedule_url,
                      screenshot)

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def csp_directives(header: str) -> dict[str, str]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = " ".join(words[1:])
    return directives


def posted_login(response) -> bool:
    return response.request.method == "POST" and urlparse(response.url).path == "/login"


def test_login_refuses_an_unknown_token_and_lands_a_known_one_on_schedules(cluster, contexts):
    context, _ = contexts.new()
    page = context.new_page()
    node = cluster.nodes[1]
    response = page.goto(f"{node.url}/login")
    assert response.status == 200
    token_input = page.get_by_label("API token")
    expect(token_input).to_have_attribute("type", "password")
    expect(token_input).to_have_attribute("name", "token")
    expect(page.locator("form input[type=hidden][name=csrf]")).to_have_count(1)
    screenshot(page, "login")

    token_input.fill("not-a-known-token")
    with page.expect_response(posted_login) as refused:
        page.get_by_role("button", name="Log in").click()
    assert refused.value.status == 401
    expect(page.get_by_text("Unknown token")).to_be_visible()
    assert "belfry_session" not in {c["name"] for c in context.cookies()}

    page.get_by_label("API token").fill(ADMIN_TOKEN)
    with page.expect_response(posted_login) as accepted:
        page.get_by_role("button", name="Log in").click()
    assert accepted.value.status == 303, accepted.value.status
    page.wait_for_url(re.compile(r"/schedules(\?.*)?$"))
    expect(page.locator("table#schedules")).to_be_visible()
    expect(page.locator("header, [role=banner]").first).to_contain_text("admin")
    for link in ("Schedules", "Cluster"):
        expect(page.get_by_role("link", name=link, exact=True)).to_be_visible()

    # Logging out ends the session: the schedules page asks for a login again.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{node.url}/schedules")
    expect(page.get_by_label("API token")).to_be_visible()


def test_root_redirects_to_schedules(cluster, contexts):
    context, _ = contexts.new()
    page = context.new_page()
    login(page, cluster.nodes[3], READONLY_TOKEN)
    response = context.request.get(f"{cluster.nodes[3].url}/", max_redirects=0)
    assert response.status == 303
    assert urlparse(response.headers["location"]).path == "/schedules"
    expect(page.locator("header, [role=banner]").first).to_contain_text("read-only")


def test_session_cookie_is_httponly_and_samesite_strict(cluster, contexts):
    context, _ = contexts.new()
    page = context.new_page()
    node = cluster.nodes[2]
    page.goto(f"{node.url}/login")
    page.get_by_label("API token").fill(ADMIN_TOKEN)
    with page.expect_response(posted_login) as accepted:
        page.get_by_role("button", name="Log in").click()
    header = accepted.value.header_value("set-cookie") or ""
    session = next((line for line in header.split("\n")
                    if line.strip().startswith("belfry_session=")), None)
    assert session is not None, f"no belfry_session cookie set: {header!r}"
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in session.split(";")[1:]}
    assert "httponly" in attributes, session
    assert attributes.get("samesite", "").lower() == "samesite=strict", session
    assert attributes.get("path") == "Path=/", session
    # Plain HTTP: not Secure (the cookie would not come back otherwise).
    assert "secure" not in attributes, session
    cookie = next(c for c in context.cookies() if c["name"] == "belfry_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("belfry_session") == -1


def test_every_response_carries_the_security_headers(cluster, contexts):
    context, _ = contexts.new()
    page = context.new_page()
    node = cluster.nodes[1]
    login(page, node, ADMIN_TOKEN)
    cluster.create("headers/probe", "app.probe", "--cron", "0 0 1 1 *")
    anonymous, _ = contexts.new()
    checked = [("/login", anonymous.request.get(f"{node.url}/login", max_redirects=0))]
    paths = ["/schedules", "/schedules?q=probe&page=1", "/schedules/new",
             schedule_url(node, "headers/probe")[len(node.url):], "/cluster",
             "/cluster/status.json", "/static/console.css", "/static/console.js"]
    checked += [(path, context.request.get(f"{node.url}{path}", max_redirects=0))
                for path in paths]
    for path, response in checked:
        assert response.status == 200, f"{path}: {response.status}"
        csp = response.headers.get("content-security-policy")
        assert csp is not None, f"{path}: no Content-Security-Policy"
        assert csp_directives(csp) == CSP, f"{path}: {csp}"
        assert response.headers.get("x-content-type-options") == "nosniff", path
        assert response.headers.get("referrer-policy") == "same-origin", path
    # An error answer carries them too.
    refused = context.request.post(f"{node.url}/schedule/pause", form={"name": "headers/probe"},
                                   max_redirects=0)
    assert refused.status == 403
    assert csp_directives(refused.headers.get("content-security-policy", "")) == CSP


def test_pages_have_no_inline_script_or_style(cluster, contexts):
    context, log = contexts.new()
    page = context.new_page()
    node = cluster.nodes[1]
    page.goto(f"{node.url}/login")
    pages = ["/login"]
    login(page, node, ADMIN_TOKEN)
    cluster.create("inline/probe", "app.probe", "--cron", "0 0 1 1 *")
    pages += ["/schedules", "/schedules/new", "/cluster",
              schedule_url(node, "inline/probe")[len(node.url):],
              "/schedule/edit?name=inline%2Fprobe"]
    for path in pages:
        page.goto(f"{node.url}{path}")
        found = page.evaluate("""() => ({
            inline: [...document.scripts].filter(s => !s.src).length,
            styled: document.querySelectorAll('[style]').length,
            styles: document.querySelectorAll('style').length,
            handlers: [...document.querySelectorAll('*')].filter(
                e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
        })""")
        assert found == {"inline": 0, "styled": 0, "styles": 0, "handlers": 0}, (path, found)
    assert log.errors == [], log.errors


def test_without_auth_every_visitor_is_an_admin(redis_server, contexts):
    open_cluster = Cluster(redis_server.url, size=1, auth=False)
    try:
        context, _ = contexts.new()
        page = context.new_page()
        node = open_cluster.nodes[1]
        page.goto(f"{node.url}/")
        page.wait_for_url(re.compile(r"/schedules(\?.*)?$"))
        expect(page.locator("header, [role=banner]").first).to_contain_text("admin")
        expect(page.get_by_role("link", name="New schedule").or_(
            page.get_by_role("button", name="New schedule"))).to_be_visible()
        # Forms still carry CSRF tokens.
        open_cluster.create("open/probe", "app.probe", "--cron", "0 0 1 1 *")
        page.goto(schedule_url(node, "open/probe"))
        page.get_by_role("button", name="Pause", exact=True).click()
        expect_state(page, "paused")
        refused = context.request.post(f"{node.url}/schedule/resume",
                                       form={"name": "open/probe"}, max_redirects=0)
        assert refused.status == 403
        assert open_cluster.schedule("open/probe")["enabled"] is False
    finally:
        open_cluster.stop()


def test_with_tls_the_console_is_https_and_the_cookie_secure(redis_server, contexts):
    tls_cluster = Cluster(redis_server.url, size=1, tls=True)
    try:
        node = tls_cluster.nodes[1]
        assert node.url.startswith("https://")
        context, log = contexts.new(https=True)
        page = context.new_page()
        page.goto(f"{node.url}/login")
        page.get_by_label("API token").fill(ADMIN_TOKEN)
        with page.expect_response(posted_login) as accepted:
            page.get_by_role("button", name="Log in").click()
        session = next(line for line in (accepted.value.header_value("set-cookie") or "")
                       .split("\n") if line.strip().startswith("belfry_session="))
        attributes = {a.strip().lower() for a in session.split(";")[1:]}
        assert {"secure", "httponly", "samesite=strict"} <= attributes, session
        page.wait_for_url(re.compile(r"/schedules(\?.*)?$"))
        cookie = next(c for c in context.cookies() if c["name"] == "belfry_session")
        assert cookie["secure"] is True
        expect(page.locator("table#schedules")).to_be_visible()
    finally:
        tls_cluster.stop()
