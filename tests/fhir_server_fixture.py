"""A real FHIR R4 server for integration tests: tests/fhir_server/server.mjs (Medplum's in-memory router).

Register once in tests/conftest.py:   pytest_plugins = ["tests.fhir_server_fixture"]

Fixtures:
  fhir_server        session-scoped FhirTestServer; data and test hooks persist between tests
  fresh_fhir_server  the same server, reset() before the test (empty, no delays/faults/token)

FhirTestServer API:
  base_url                  FHIR base, e.g. http://127.0.0.1:40123/fhir/R4 (no trailing slash)
  origin                    http://127.0.0.1:40123
  url(path)                 base_url + "/" + path
  get(path, **kw)           requests.get on url(path), with the bearer token if one is set
  load(bundle_or_resources) POST a transaction Bundle (or a list of resources: PUT when they have an
                            id, POST otherwise); returns the transaction-response; raises
                            FhirServerError on any failure (the server rolls the whole bundle back)
  reset()                   drop all data, delays, faults, the request log and any token
  delay(type, ms)           every request on that resource type waits ms first (type None: all;
                            ms 0: remove)
  fail(type, status, count=None)  answer `status` with an OperationOutcome (count times, or until
                            fail(type, 0) or reset())
  page_size(n)              default _count for searches that send none (None: no paging)
  require_token(token)      401 without "Authorization: Bearer <token>" (None: no check);
                            GET metadata stays open
  requests_log()            [{method, url, status, authorization, ms, delayMs}] of the FHIR requests
                            since reset (delayMs: the injected delay the request waited, 0 for none)
  log_path                  the server's stderr, one line per request
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

SERVER_DIR = Path(__file__).resolve().parent / "fhir_server"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
LOCKFILE = SERVER_DIR / "package-lock.json"
NODE_MODULES = SERVER_DIR / "node_modules"
# A copy of the lockfile that node_modules was installed from (.ci/run writes the same stamp).
INSTALLED_STAMP = NODE_MODULES / ".installed-package-lock.json"
NPM_CI = ["npm", "ci", "--prefix", str(SERVER_DIR), "--no-audit", "--no-fund"]
DEFAULT_BASE_PATH = "/fhir/R4"
START_TIMEOUT_S = 20.0
INSTALL_HINT = "Install it with:  npm ci --prefix tests/fhir_server --no-audit --no-fund  (Node >= 20.19 and npm)"


class FhirServerError(RuntimeError):
    """The test FHIR server could not be installed or started, or refused a test-data load."""


def ensure_node_modules() -> None:
    """Runs `npm ci` unless node_modules was installed from the current package-lock.json."""
    if INSTALLED_STAMP.is_file() and INSTALLED_STAMP.read_bytes() == LOCKFILE.read_bytes():
        return
    if shutil.which("npm") is None:
        raise FhirServerError(f"npm is not on PATH and {NODE_MODULES} is missing or stale. {INSTALL_HINT}")
    done = subprocess.run(NPM_CI, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise FhirServerError(
            f"`{' '.join(NPM_CI)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{INSTALL_HINT}"
        )
    shutil.copyfile(LOCKFILE, INSTALLED_STAMP)


class FhirTestServer:
    """A running server.mjs process and its test hooks (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[str], port: int, base_path: str, log_path: Path, token: str | None):
        self.proc = proc
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = self.origin + base_path
        self.log_path = log_path
        self._startup_token = token
        self._token = token
        self._http = requests.Session()

    # -- FHIR -------------------------------------------------------------------------------
    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Accept": "application/fhir+json", **self._auth(), **kwargs.pop("headers", {})}
        return self._http.get(self.url(path), headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def load(self, bundle: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        if isinstance(bundle, list):
            bundle = transaction(bundle)
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise FhirServerError("load() takes a transaction Bundle or a list of resources")
        response = self._http.post(
            self.base_url,
            json=bundle,
            headers={"Content-Type": "application/fhir+json", **self._auth()},
            timeout=60,
        )
        if response.status_code != 200:
            raise FhirServerError(f"loading the transaction failed: HTTP {response.status_code}\n{response.text}")
        result = response.json()
        bad = [e["response"] for e in result.get("entry", []) if not e["response"]["status"].startswith("2")]
        if bad:
            raise FhirServerError(f"loading the transaction failed for some entries: {bad}")
        return result

    # -- test hooks -------------------------------------------------------------------------
    def _admin(self, action: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(f"{self.origin}/__admin/{action}", json=body or {}, timeout=10)
        if response.status_code != 200:
            raise FhirServerError(f"/__admin/{action} failed: HTTP {response.status_code}\n{response.text}")
        return response.json()

    def reset(self) -> None:
        self._admin("reset")
        self._token = self._startup_token

    def delay(self, resource_type: str | None, ms: float) -> None:
        self._admin("delay", {"type": resource_type, "ms": ms})

    def fail(self, resource_type: str | None, status: int, count: int | None = None) -> None:
        self._admin("fail", {"type": resource_type, "status": status, "count": count})

    def page_size(self, count: int | None) -> None:
        self._admin("page-size", {"count": count})

    def require_token(self, token: str | None) -> None:
        self._admin("token", {"token": token})
        self._token = token

    def requests_log(self) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.origin}/__admin/requests", timeout=10)
        response.raise_for_status()
        return response.json()

    # -- process ----------------------------------------------------------------------------
    def stderr_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs each resource with an id and POSTs the others."""
    entries = []
    for r in resources:
        if r.get("id"):
            request = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        else:
            request = {"method": "POST", "url": r["resourceType"]}
        entries.append({"resource": r, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def start_fhir_server(
    log_path: Path,
    *,
    token: str | None = None,
    base_path: str = DEFAULT_BASE_PATH,
    page_size: int | None = None,
    timeout: float = START_TIMEOUT_S,
) -> FhirTestServer:
    """Installs if needed, starts `node server.mjs 0 ...` and waits for its LISTENING line."""
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise FhirServerError(f"node is not on PATH. {INSTALL_HINT}")
    cmd = [node, str(SERVER_SCRIPT), "0", "--base-path", base_path]
    if token:
        cmd += ["--token", token]
    if page_size:
        cmd += ["--page-size", str(page_size)]
    log = log_path.open("w")
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, cwd=SERVER_DIR
        )
    finally:
        log.close()  # the child has its own descriptor

    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # reads stdout to the end so the child never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="fhir-server-stdout", daemon=True).start()

    def failure(reason: str) -> FhirServerError:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        stderr = log_path.read_text(errors="replace")[-4000:]
        return FhirServerError(f"{reason}\ncommand: {' '.join(cmd)}\nstderr ({log_path}):\n{stderr}")

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise failure(f"the test FHIR server did not print LISTENING within {timeout:.0f} s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            proc.wait(timeout=5)
            raise failure(f"the test FHIR server exited with code {proc.returncode} before listening")
        if line.startswith("LISTENING "):
            port = int(line.split()[1])
            return FhirTestServer(proc, port, base_path, log_path, token)


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirTestServer]:
    log_path = tmp_path_factory.mktemp("fhir_server") / "server.log"
    if os.environ.get("LBP_CDS_FHIR_SERVER_LOG"):
        log_path = Path(os.environ["LBP_CDS_FHIR_SERVER_LOG"])
    try:
        server = start_fhir_server(log_path)
    except FhirServerError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_fhir_server(fhir_server: FhirTestServer) -> FhirTestServer:
    fhir_server.reset()
    return fhir_server
