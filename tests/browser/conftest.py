"""Real parts for the console's browser tests: a `redis-server` on a free loopback port, a
three-node cluster of separate `belfry server` processes (an admin and a read-only token, the
console on each node with `--console-listen`; variants without auth or on TLS with certificates
made by openssl), the `belfry` CLI against it, and headless Chromium (the system's, driven by
Playwright) with every page's console errors, uncaught exceptions and dialogs recorded.

Environment: `BELFRY_BIN` (default `target/debug/belfry`), `BELFRY_CHROMIUM` (default the
`chromium` on PATH), `BELFRY_SCREENSHOTS` (a directory: the tests then save the pages they
show there, e.g. `docs/console`). Every wait polls with a deadline; nothing sleeps a fixed
time. A missing binary or browser fails the run rather than skipping it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
T = TypeVar("T")

ADMIN_TOKEN = "console-admin-token-for-tests"
READONLY_TOKEN = "console-readonly-token-for-tests"
CLUSTER_SECRET = "console-cluster-secret-for-tests-0123456789"
FLOWER_URL = "http://flower.example.test:5555"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def wait_for(what: str, timeout: float, check: Callable[[], Optional[T]],
             every: float = 0.1) -> T:
    """Polls `check` until it returns a value other than None, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def belfry_bin() -> Path:
    path = Path(os.environ.get("BELFRY_BIN", REPO / "target" / "debug" / "belfry"))
    if not path.is_file():
        pytest.fail(f"no belfry binary at {path} (cargo build, or set BELFRY_BIN)")
    return path


def chromium_path() -> str:
    path = os.environ.get("BELFRY_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not path or not Path(path).is_file():
        pytest.fail("no Chromium found (apt-get install chromium, or set BELFRY_CHROMIUM)")
    return path


# ---------------------------------------------------------------------------------------------
# Redis


class Redis:
    """A `redis-server` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="belfry-browser-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        wait_for("redis-server to answer", 10, self._ping)

    def _ping(self) -> Optional[bool]:
        if self.proc.poll() is not None:
            pytest.fail(f"redis-server exited with {self.proc.returncode}")
        try:
            return True if self.client.ping() else None
        except Exception:
            return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = Redis()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# The cluster


@dataclass
class Node:
    id: int
    api: str
    console: str
    metrics: str
    data_dir: Path
    log: Path
    proc: Optional[subprocess.Popen] = None

    scheme: str = "http"

    @property
    def url(self) -> str:
        """The console's base URL."""
        return f"{self.scheme}://{self.console}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """`belfry server` processes (three by default) on loopback, each serving the API, metrics
    and the console; tokens and the cluster secret come through the environment."""

    def __init__(self, redis_url: str, size: int = 3, auth: bool = True,
                 tls: bool = False) -> None:
        """`auth=False`: `--insecure-no-auth`, no tokens (every caller is an admin).
        `tls=True`: the API, peers and console on TLS with certificates of a CA made here."""
        self.bin = belfry_bin()
        self.auth = auth
        self.root = tempfile.TemporaryDirectory(prefix="belfry-browser-cluster-")
        root = Path(self.root.name)
        self.tls = make_certificates(root / "tls") if tls else None
        self.redis_url = redis_url
        self.nodes = {
            i: Node(i, f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}",
                    f"127.0.0.1:{free_port()}", root / f"node{i}", root / f"node{i}.log",
                    scheme="https" if self.tls else "http")
            for i in range(1, size + 1)
        }
        self.peers = ",".join(f"{n.id}={n.api}" for n in self.nodes.values())
        for node in self.nodes.values():
            self.spawn(node.id)
        self.wait_ready()

    def spawn(self, node_id: int) -> None:
        node = self.nodes[node_id]
        env = dict(os.environ, BELFRY_CLUSTER_SECRET=CLUSTER_SECRET, RUST_LOG="info,openraft=warn")
        auth = ["--insecure-no-auth"]
        if self.auth:
            env.update(BELFRY_ADMIN_TOKEN=ADMIN_TOKEN, BELFRY_READONLY_TOKEN=READONLY_TOKEN)
            auth = []
        tls = ["--insecure-no-tls"]
        if self.tls:
            tls = ["--tls-cert", str(self.tls / "node.pem"),
                   "--tls-key", str(self.tls / "node.key"),
                   "--tls-client-ca", str(self.tls / "ca.pem")]
        node.proc = subprocess.Popen(
            [str(self.bin), "server", "--node-id", str(node.id), "--listen", node.api,
             "--peers", self.peers, "--data-dir", str(node.data_dir),
             "--redis-url", self.redis_url, "--metrics-listen", node.metrics,
             "--console-listen", node.console, "--flower-url", FLOWER_URL,
             *tls, *auth],
            stdout=subprocess.DEVNULL, stderr=node.log.open("a"), env=env)

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def _check_running(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is not None \
                    and node.proc.returncode != -signal.SIGKILL:
                pytest.fail(f"node {node.id} exited with {node.proc.returncode}:\n"
                            + node.log.read_text()[-4000:])

    # -- the CLI ------------------------------------------------------------------------------

    def cli(self, *args: str, token: Optional[str] = ADMIN_TOKEN, node: Optional[int] = None,
            check: bool = True, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        """Runs `belfry <args>` against node `node` (default: the first live one)."""
        target = self.nodes[node] if node is not None else self.live()[0]
        env = dict(os.environ)
        env.pop("BELFRY_TOKEN", None)
        full = [str(self.bin), *args, "--endpoint", target.api, "--timeout", "15"]
        if token is not None and self.auth:
            full += ["--token", token]
        if self.tls:
            full += ["--tls-ca", str(self.tls / "ca.pem")]
        done = subprocess.run(full, capture_output=True, text=True, env=env, input=stdin,
                              timeout=60)
        if check and done.returncode != 0:
            pytest.fail(f"belfry {' '.join(args)} failed ({done.returncode}):\n"
                        f"{done.stdout}{done.stderr}")
        return done

    def cli_json(self, *args: str, **kw) -> dict:
        return json.loads(self.cli(*args, "-o", "json", **kw).stdout)

    def schedule(self, name: str, node: Optional[int] = None) -> dict:
        """`belfry schedule get NAME -o json`."""
        return self.cli_json("schedule", "get", name, node=node)

    def create(self, name: str, task: str, *spec: str) -> dict:
        """`belfry schedule create NAME --task TASK <spec flags...>`."""
        return self.cli_json("schedule", "create", name, "--task", task, *spec)

    def apply(self, toml_text: str) -> None:
        path = Path(self.root.name) / f"apply-{time.monotonic_ns()}.toml"
        path.write_text(toml_text)
        self.cli("schedule", "apply", "-f", str(path))

    # -- leadership and readiness -------------------------------------------------------------

    def status(self, node: int) -> Optional[dict]:
        done = self.cli("cluster", "status", "-o", "json", token=READONLY_TOKEN, node=node,
                        check=False)
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)

    def agreed_leader(self) -> Optional[int]:
        """The leader every live node names, if they agree on a live one."""
        self._check_running()
        leaders = set()
        for node in self.live():
            status = self.status(node.id)
            if status is None or not status.get("leader_id"):
                return None
            leaders.add(status["leader_id"])
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        return leader if self.nodes[leader].alive() else None

    def leader(self, timeout: float = 30) -> int:
        return wait_for("the live nodes to agree on a live leader", timeout, self.agreed_leader,
                        every=0.2)

    def follower(self) -> int:
        leader = self.leader()
        return next(n.id for n in self.live() if n.id != leader)

    def console_answers(self, node: Node) -> Optional[bool]:
        self._check_running()
        context = None
        if self.tls:
            import ssl

            context = ssl.create_default_context(cafile=str(self.tls / "ca.pem"))
        try:
            with urllib.request.urlopen(f"{node.url}/static/console.css", timeout=5,
                                        context=context) as response:
                return True if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self) -> None:
        self.leader(60)
        for node in self.live():
            wait_for(f"node {node.id}'s console", 30, lambda: self.console_answers(node))

    # -- faults and stopping ------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILLs a node and reaps it."""
        proc = self.nodes[node_id].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for node in self.live():
            node.proc.terminate()
        for node in self.nodes.values():
            if node.proc is None:
                continue
            try:
                node.proc.wait(20)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        self.root.cleanup()


def make_certificates(directory: Path) -> Path:
    """A CA and one certificate for 127.0.0.1 it signs (server and client use), with openssl:
    `ca.pem`, `node.pem`, `node.key`."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the TLS cluster's certificates")
    directory.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n"
                                   "basicConstraints=CA:FALSE\n")
    for command in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=belfry browser tests CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"],
        ["req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "ext"],
    ):
        subprocess.run(["openssl", *command], cwd=directory, check=True, capture_output=True)
    return directory


@pytest.fixture(scope="session")
def cluster(redis_server: Redis) -> Iterator[Cluster]:
    """The cluster most tests share: their schedules carry distinct names."""
    started = Cluster(redis_server.url)
    yield started
    started.stop()


# ---------------------------------------------------------------------------------------------
# The browser


@dataclass
class BrowserLog:
    """What the pages of one browser context reported: console errors, uncaught exceptions and
    dialogs (each dismissed)."""

    errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, context) -> None:
        context.on("console", self._console)
        context.on("weberror", lambda error: self.exceptions.append(str(error.error)))
        context.on("dialog", self._dialog)

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        # Root (CI containers) needs --no-sandbox; a small /dev/shm needs the other.
        args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=args)
        yield launched
        launched.close()


class Contexts:
    """Browser contexts opened by one test, each with its log, closed at the test's end; the
    test fails if any page threw an uncaught exception or broke the CSP."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.opened: list[tuple[object, BrowserLog]] = []

    def new(self, width: int = 1280, height: int = 800, javascript: bool = True,
            https: bool = False):
        """`https=True`: the test CA's certificates are accepted (Chromium does not know it)."""
        context = self.browser.new_context(viewport={"width": width, "height": height},
                                           java_script_enabled=javascript,
                                           ignore_https_errors=https)
        context.set_default_timeout(15_000)
        log = BrowserLog()
        log.attach(context)
        self.opened.append((context, log))
        return context, log

    def close(self) -> list[str]:
        problems = []
        for context, log in self.opened:
            problems += [f"uncaught exception: {e}" for e in log.exceptions]
            problems += [f"CSP violation: {e}" for e in log.csp_violations()]
            context.close()
        return problems


@pytest.fixture
def contexts(browser) -> Iterator[Contexts]:
    opened = Contexts(browser)
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("the browser reported:\n" + "\n".join(problems))


def login(page, node: Node, token: str) -> None:
    """Logs in through the form and waits for the schedules page. A session belongs to the
    node that made it, and cookies do not tell ports apart: one context per node."""
    page.goto(f"{node.url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/schedules(\?.*)?$"))


@pytest.fixture
def admin(cluster: Cluster, contexts: Contexts):
    """A page logged in as an admin on node 1, and its context's log."""
    context, log = contexts.new()
    page = context.new_page()
    login(page, cluster.nodes[1], ADMIN_TOKEN)
    return page, log


@pytest.fixture
def readonly(cluster: Cluster, contexts: Contexts):
    """A page logged in with the read-only token on node 2, and its context's log."""
    context, log = contexts.new()
    page = context.new_page()
    login(page, cluster.nodes[2], READONLY_TOKEN)
    return page, log


def page_text(page) -> str:
    """The page's text as rendered (blocks on their own lines)."""
    return page.locator("body").inner_text()


TIME = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?:\s*[AP]M)?(?P<after>\s*\S*)")
ZONE = re.compile(r"\s*(UTC|[A-Z][A-Za-z_]+/[A-Za-z_/+-]+|[+-]\d{2}:?\d{2}|Z)\b")


def times_without_zone(text: str) -> list[str]:
    """Every time of day with seconds in `text` that no zone follows (`21:00:00 UTC`,
    `… Europe/Paris`); a spec in words ("at 02:30, … in Europe/Paris") is not an instant."""
    bare = []
    for found in TIME.finditer(text):
        if not ZONE.match(found.group("after")):
            bare.append(text[max(0, found.start() - 20):found.end() + 10].replace("\n", " "))
    return bare


def expect_state(page, state: str, timeout: float = 15) -> None:
    """Waits until the page's rendered text shows the word `state` ("paused", "active") and
    not the other one."""
    other = {"paused": "active", "active": "paused"}[state]

    def shown() -> Optional[bool]:
        text = page_text(page)
        words = set(re.findall(r"\b(paused|active)\b", text))
        return True if state in words and other not in words else None

    wait_for(f"the page to show the state {state!r}", timeout, shown)


def screenshot(page, name: str) -> None:
    """Saves the page as `$BELFRY_SCREENSHOTS/<name>.png` when that variable is set."""
    directory = os.environ.get("BELFRY_SCREENSHOTS")
    if not directory:
        return
    target = Path(directory)
    if not target.is_absolute():
        target = REPO / target
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def schedule_url(node: Node, name: str) -> str:
    from urllib.parse import urlencode

    return f"{node.url}/schedule?{urlencode({'name': name})}"
