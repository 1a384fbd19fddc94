"""Servers for the end-to-end tests: processes on loopback (Dagster, MLflow, PostgreSQL) and a headless Chromium.

Every server runs in its own process group, logs to a file and is killed with its whole group when the test is
done, whatever happens; every wait has a deadline, so a hang fails fast and shows the server's log.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CINEPIPE_CHROMIUM", "/usr/bin/chromium")
# Debian's chromium, headless, offline and without a sandbox (CI runs as root)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def missing(what: str) -> None:
    """Skip a test whose tool is not installed, or fail when CI says every such test must run."""
    if os.environ.get("CINEPIPE_REQUIRE_E2E"):
        pytest.fail(f"{what} is not installed (CINEPIPE_REQUIRE_E2E is set)")
    pytest.skip(f"{what} is not installed")


def require(module: str, hint: str) -> None:
    """Import ``module`` or skip (fail under CINEPIPE_REQUIRE_E2E) naming how to install it."""
    try:
        __import__(module)
    except ImportError:
        missing(f"{module} ({hint})")


# the files the tests left for people to look at; conftest's terminal summary lists them
OUTPUTS: list[Path] = []


def output_path(name: str) -> Path:
    """Where a test leaves a file for people to look at (a screenshot): ``$CINEPIPE_TEST_OUTPUT/<name>``, default
    ``tests/output/<name>`` (ignored by git)."""
    root = Path(os.environ.get("CINEPIPE_TEST_OUTPUT") or REPO / "tests" / "output")
    path = root.absolute() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    OUTPUTS.append(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# where a server would find state other than the test's own
STATE_VARIABLES = ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "CINEPIPE_HOME", "CINEPIPE_LANDING", "CINEPIPE_MLFLOW_UI")


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a server that imports this checkout's code (first on the path, before any install),
    with none of the caller's state locations."""
    env = {k: v for k, v in os.environ.items() if k not in STATE_VARIABLES and not k.startswith("DAGSTER_POSTGRES_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


class Server:
    """A process group started with ``start_new_session``; ``stop`` ends the whole group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: Optional[dict] = None,
                 cwd: Optional[Path] = None, stop_signal: int = signal.SIGTERM):
        self.name = name
        self.stop_signal = stop_signal
        self.log = Path(log_dir) / f"{name}.log"
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=cwd or REPO,
                                     start_new_session=True, stdin=subprocess.DEVNULL)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- last lines of {self.log}:\n" + "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}\n{self.tail()}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                if predicate():
                    return
            except (OSError, urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {what} not within {timeout:.0f} s\n{self.tail()}")
            time.sleep(every)

    def wait_http(self, url: str, timeout: float = 90) -> None:
        def up() -> bool:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status == 200
        self.wait_for(up, timeout, f"{url} answering")

    def signal_stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)

    def finish(self, deadline: float) -> None:
        """Wait for the process until ``deadline`` (monotonic), then kill whatever is left of its group."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        # the leader may be gone while children of the group live on
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._fh.close()


@contextlib.contextmanager
def servers(grace: float = 8.0) -> Iterator[list[Server]]:
    """Collects servers started in the block and stops them all, however the block ends: all are asked to stop at
    once, and whatever still runs ``grace`` seconds later is killed."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.signal_stop()
        deadline = time.monotonic() + grace
        for server in reversed(started):
            server.finish(deadline)


def http_json(url: str, payload: Optional[dict] = None, timeout: float = 30, headers: Optional[dict] = None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def graphql(base_url: str, query: str, variables: Optional[dict] = None) -> dict:
    """A query or mutation against the Dagster webserver's GraphQL endpoint; errors raise."""
    out = http_json(f"{base_url}/graphql", {"query": query, "variables": variables or {}})
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {out['errors']}")
    return out["data"]


# -- Dagster through GraphQL, as the UI drives it ------------------------------------------------------------------
ADD_PARTITION = """
mutation($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}"""

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}"""

RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""

LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def dagster_location_loaded(base_url: str, location: str) -> bool:
    """True once the webserver has loaded the code location; a load error raises."""
    entries = graphql(base_url, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        if entry["name"] == location and entry["locationOrLoadError"]:
            loaded = entry["locationOrLoadError"]
            if loaded["__typename"] == "PythonError":
                raise RuntimeError(f"code location {location} failed to load: {loaded['message']}")
            return loaded["__typename"] == "RepositoryLocation"
    return False


def repository(location: str) -> dict:
    return {"repositoryLocationName": location, "repositoryName": "__repository__"}


def add_dynamic_partition(base_url: str, location: str, partitions: str, key: str) -> None:
    """What the UI's "Add partition" does."""
    added = graphql(base_url, ADD_PARTITION, {"repo": repository(location), "name": partitions, "key": key})
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added


def launch_partition_run(base_url: str, location: str, job: str, partition: str, tags: Optional[dict] = None,
                         run_config: Optional[dict] = None) -> str:
    """Launch ``job`` for one partition, as the UI's launchpad does; returns the run id."""
    all_tags = {"dagster/partition": partition, **(tags or {})}
    params = {"selector": {**repository(location), "pipelineName": job}, "runConfigData": run_config or {},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]}}
    launched = graphql(base_url, LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_run(server: Server, base_url: str, run_id: str, timeout: float = 120) -> str:
    """Poll ``runOrError`` until the run ends; returns its final status."""
    final = {"SUCCESS", "FAILURE", "CANCELED"}
    status = {}

    def done() -> bool:
        status["now"] = graphql(base_url, RUN_STATUS, {"id": run_id})["runOrError"].get("status")
        return status["now"] in final
    server.wait_for(done, timeout, f"run {run_id} finished", every=1.0)
    return status["now"]


# -- Headless Chromium ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 860):
    """A Playwright page in Debian's Chromium (Playwright's own browser download is not needed)."""
    require("playwright", "pip install -e '.[ui]'")
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        missing(f"chromium ({CHROMIUM}; apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def wait_for_text(page, predicate: Callable[[str], bool], timeout: float = 60) -> str:
    """Poll the page's visible text until ``predicate`` holds (the UIs' CSP forbids evaluating strings, so
    Playwright's wait_for_function cannot be used); returns the text."""
    deadline = time.monotonic() + timeout
    while True:
        text = page.inner_text("body")
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"{page.url}: the expected text did not appear within {timeout:.0f} s:\n{text}")
        page.wait_for_timeout(250)


# -- PostgreSQL from Debian, on loopback ---------------------------------------------------------------------------
def postgres_binary(name: str) -> Optional[str]:
    """``initdb``/``postgres`` from the PATH or from Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return versions[-1] if versions else None


@contextlib.contextmanager
def postgres_server(log_dir: Path, user: str = "dagster", password: str = "dagster") -> Iterator[dict]:
    """A throw-away PostgreSQL cluster on a free loopback port with password authentication; yields its
    connection settings. PostgreSQL refuses to run as root, so as root it runs as ``nobody``."""
    require("psycopg2", "pip install -e '.[deploy]'")
    initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
    if not initdb or not postgres:
        missing("PostgreSQL (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cinepipe-pg-"))  # not under pytest's tmp_path: `nobody` must reach it
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd
        nobody = pwd.getpwnam("nobody")
        for path in (root, pwfile):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data = root / "data"
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                        "--no-sync", "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120,
                       cwd=root)
        port = free_port()
        with servers() as started:
            server = Server("postgres", [*as_user, postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                         "-k", str(root), "-c", "fsync=off", "-c", "synchronous_commit=off",
                                         "-c", "full_page_writes=off"], log_dir, cwd=root,
                            stop_signal=signal.SIGINT)  # SIGINT: fast shutdown, clients or not
            started.append(server)
            settings = {"host": "127.0.0.1", "port": port, "user": user, "password": password}
            server.wait_for(lambda: _pg_accepts(settings), 60, "PostgreSQL accepting connections", every=0.3)
            yield settings
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg_accepts(settings: dict) -> bool:
    import psycopg2
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **settings).close()
        return True
    except psycopg2.OperationalError:
        return False


def pg_execute(settings: dict, sql: str, dbname: str = "postgres") -> list:
    """Run SQL (autocommit, so CREATE DATABASE works); returns the last statement's rows, if any."""
    import psycopg2
    conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **settings)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
