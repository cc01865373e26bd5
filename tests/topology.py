"""Two replicas of lbp-cds (the production server, granian) behind nginx on 127.0.0.1, sharing one database:
the production shape.

nginx runs the shipped cds_service/web/nginx/lbp-cds.conf (TLS with a certificate made here, its "site:" lines
templated with this topology's ports and replicas), so these tests exercise the real file.

Used by tests/test_scale_out.py and tools/soak.py. Everything listens on 127.0.0.1 only; every process
started here is stopped when the context ends, whatever happened. The caller brings the database URL
(tests.databases.postgres_schema) and gets a Topology: the nginx URL, the replicas, and an EHR's signing key
whose JWK Set a small http.server thread publishes for the test issuer.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, select

from cds_service.storage.database import feedback
from tests.clinical_date import EXAMPLES, EXAMPLES_AS_OF
from tests.tokens import FORM_KEY, ISSUER, TENANT, SigningKey, bearer, jwks, make_key, token_for

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30.0
# One example request per service: the baseline order-select, an order-sign, a patient-view.
EXAMPLE_FOR_SERVICE = {
    "lbp-referral-select": "baseline-lbp-referral.json",
    "lbp-referral-sign": "order-sign-referral-and-opioid.json",
    "lbp-patient-view": "patient-view-lbp.json",
}


class TopologyError(RuntimeError):
    """A process of the topology did not start; the message carries the end of its log."""


def find_nginx() -> str | None:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Replica:
    """One `python -m cds_service.web.server` (what `lbp-cds serve` runs), in its own process group (main
    process and workers)."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """As nginx names it in $upstream_addr."""
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, as when a container or VM dies; return once it is gone.

        The workers share the master's listening socket, so for a few milliseconds after the master is reaped
        the port still accepts connections that are then reset: nginx has sent the POST by then and does not
        retry it (502). Only once the port refuses connections is the replica dead to nginx too.
        """
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.01)
        raise TopologyError(f"replica {self.name} still accepts connections 10 s after SIGKILL")

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if self.alive():
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with suppress(ProcessLookupError):  # workers left behind by a dead master
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    def worker_pids(self) -> list[int]:
        """The server's workers: the main process's child processes."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid:
                children.append(int(entry.name))
        return sorted(children)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Topology:
    nginx_url: str
    replicas: list[Replica]
    key: SigningKey
    database_url: str
    workdir: Path
    ca_file: str  # the certificate nginx serves: the only one the tests' clients trust
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        """A fresh JWT for `path`, its audience the public (nginx) URL, as the EHR signs it."""
        return bearer(self.token(path, **claims))

    def token(self, path: str, **claims: Any) -> str:
        return token_for(self.key, path, aud=self.nginx_url + path, **claims)

    def hook_body(self, service_id: str) -> dict[str, Any]:
        return {**self.examples[service_id], "hookInstance": str(uuid.uuid4())}

    def call(
        self, service_id: str, base: str | None = None, token: str | None = None, timeout: float = 10
    ) -> requests.Response:
        """POST the service's example request (a new hookInstance) through nginx, or to `base`."""
        path = f"/cds-services/{service_id}"
        auth = bearer(token) if token else self.headers(path)
        url = (base or self.nginx_url) + path
        return requests.post(url, json=self.hook_body(service_id), headers=auth, timeout=timeout, verify=self.ca_file)

    def feedback(
        self, service_id: str, items: list[dict[str, Any]], base: str | None = None, timeout: float = 10
    ) -> requests.Response:
        path = f"/cds-services/{service_id}/feedback"
        return requests.post(
            (base or self.nginx_url) + path,
            json={"feedback": items},
            headers=self.headers(path),
            timeout=timeout,
            verify=self.ca_file,
        )

    def stored_feedback(self) -> list[Any]:
        """Every row of the feedback table the replicas share: (card_uuid, outcome, topic)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(select(feedback.c.card_uuid, feedback.c.outcome, feedback.c.topic)))
        finally:
            engine.dispose()

    def diagnostics(self) -> str:
        """The end of nginx's error log and of each replica's log: for a failing assertion's message."""
        parts = [f"--- nginx error log\n{tail(self.workdir / 'nginx-error.log')}"]
        parts += [f"--- replica {r.name} ({r.address})\n{tail(r.log_path, 15)}" for r in self.replicas]
        return "\n".join(parts)

    def replica_at(self, upstream_addr: str | None) -> Replica | None:
        """The replica that finally answered, from nginx's X-Upstream ("A" or "A, B" after a retry)."""
        last = (upstream_addr or "").split(",")[-1].strip()
        return next((replica for replica in self.replicas if replica.address == last), None)


def feedback_item(card: dict[str, Any], accept: bool) -> dict[str, Any]:
    """What the EHR reports when the clinician accepts the card's first suggestion, or overrides it."""
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    item: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": now}
    if accept and card.get("suggestions"):
        item.update(outcome="accepted", acceptedSuggestions=[{"id": card["suggestions"][0]["uuid"]}])
    else:
        item["outcome"] = "overridden"
        if card.get("overrideReasons"):
            item["overrideReason"] = {"reason": card["overrideReasons"][0], "userComment": "scale-out run"}
    return item


class _JwksHandler(BaseHTTPRequestHandler):
    document = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def jwks_server(key: SigningKey) -> Iterator[str]:
    """The EHR's JWK Set at http://127.0.0.1:<port>/jwks.json, served from a thread."""
    handler = type("Handler", (_JwksHandler,), {"document": json.dumps(jwks(key)).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="jwks", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, what: str, verify: str | bool = True
) -> None:
    """Poll GET url until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TopologyError(f"{what} exited with {process.returncode}:\n{tail(log_path)}")
        with suppress(requests.RequestException):
            if requests.get(url, timeout=2, verify=verify).status_code == 200:
                return
        time.sleep(0.1)
    raise TopologyError(f"{what} not ready after {START_TIMEOUT_SECONDS:.0f}s:\n{tail(log_path)}")


def migrate_database(env: dict[str, str]) -> None:
    """`flask --app wsgi db upgrade` with the service's environment, as a deploy runs it before serving."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise TopologyError(f"db upgrade failed:\n{result.stderr[-2000:]}")


def start_replica(name: str, env: dict[str, str], workdir: Path) -> Replica:
    port = free_port()
    log_path = workdir / f"server-{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.web.server"],
            cwd=REPO_ROOT,
            env={**env, "CDS_BIND": f"127.0.0.1:{port}"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the workers too
        )
    return Replica(name, port, log_path, process)


SHIPPED_NGINX = REPO_ROOT / "cds_service" / "web" / "nginx" / "lbp-cds.conf"
# What the production recipe runs nginx with; the shipped file is included into it.
NGINX_MAIN = """\
daemon off;
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


def replace_exactly(text: str, old: str, new: str, times: int = 1) -> str:
    """Template the shipped file: each site line must be there as often as expected, or the test says so."""
    if text.count(old) != times:
        raise TopologyError(
            f"cds_service/web/nginx/lbp-cds.conf no longer has {old!r} {times} time(s): update tests/topology.py"
        )
    return text.replace(old, new)


def nginx_site(
    replicas: list[Replica], http_port: int, https_port: int, cert: Path, key: Path, shipped: str | None = None
) -> str:
    """The shipped cds_service/web/nginx/lbp-cds.conf (or `shipped`, the text `lbp-cds nginx-config` printed) with
    this topology's ports, replicas and certificate.

    Besides those "site:" lines, one header is added for the tests: X-Upstream names the replica that
    answered (production does not tell the internet its upstream addresses).
    """
    text = SHIPPED_NGINX.read_text() if shipped is None else shipped
    servers = "\n".join(f"    server {r.address} max_fails=1 fail_timeout=10s;" for r in replicas)
    text = replace_exactly(
        text,
        "    server 127.0.0.1:8080 max_fails=1 fail_timeout=10s;  # site: one line per replica (CDS_BIND)",
        servers,
    )
    text = replace_exactly(text, "    listen 80;  # site", f"    listen 127.0.0.1:{http_port};")
    text = replace_exactly(text, "    listen 443 ssl;  # site", f"    listen 127.0.0.1:{https_port} ssl;")
    text = replace_exactly(text, "server_name cds.example.org;  # site", "server_name 127.0.0.1;", times=2)
    text = replace_exactly(
        text,
        "access_log /var/log/nginx/lbp-cds.access.log lbp_cds_masked;  # site",
        f"access_log {cert.parent / 'nginx-access.log'} lbp_cds_masked;",
        times=2,
    )
    text = replace_exactly(text, "/etc/ssl/certs/cds.example.org.pem;  # site", f"{cert};")
    text = replace_exactly(text, "/etc/ssl/private/cds.example.org.key;  # site", f"{key};")
    return replace_exactly(
        text,
        "        proxy_pass http://lbp_cds;\n",
        "        proxy_pass http://lbp_cds;\n        add_header X-Upstream $upstream_addr always;\n",
    )


def self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (the nginx URL), valid for a day: the tests' clients trust it alone."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "tls.pem", workdir / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def start_nginx(
    port: int, replicas: list[Replica], workdir: Path, cert: Path, key: Path, shipped: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """nginx on 127.0.0.1:port (https) with the shipped configuration (or `shipped`), its logs and temp files in
    workdir."""
    nginx = find_nginx()
    if nginx is None:
        raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
    site = workdir / "lbp-cds.conf"
    site.write_text(nginx_site(replicas, free_port(), port, cert, key, shipped))
    # Run as root, nginx would hand its workers to `nobody`, who cannot use our private temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(user=user, prefix=workdir, site=site))
    log_path = workdir / "nginx-error.log"
    with open(workdir / "nginx-stderr.log", "wb") as log:
        process = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(workdir), "-e", str(log_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"https://127.0.0.1:{port}"
    wait_until_ready(url + "/cds-services", process, workdir / "nginx-stderr.log", "nginx", verify=str(cert))
    return process, url


def stop_nginx(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextmanager
def topology(
    database_url: str, replicas: int = 2, workers: int = 2, threads: int = 4, clinical_date: date = EXAMPLES_AS_OF
) -> Iterator[Topology]:
    """nginx in front of `replicas` servers with `workers` each, JWTs required, sharing database_url.

    The replicas judge every call as of `clinical_date` (default: the date the bundled examples they are sent
    are written for) and keep their state folder in the topology's temporary folder, as nginx its files.
    """
    key = make_key("ES384")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lbp-scale-")))
        jwks_url = stack.enter_context(jwks_server(key))
        # The nginx port must be known before the replicas start: it is their public URL (JWT audience).
        nginx_port = free_port()
        nginx_url = f"https://127.0.0.1:{nginx_port}"
        cert, tls_key = self_signed_certificate(workdir)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
            "CDS_REQUIRE_JWT": "true",
            "CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: {"jwks_urls": [jwks_url], "tenants": [TENANT]}}),
            "CDS_PUBLIC_BASE_URL": nginx_url,
            "CDS_FORM_SIGNING_KEY": FORM_KEY.get_secret_value(),
            "CDS_TRUSTED_PROXY_HOPS": "1",
            "CDS_DATABASE_URL": database_url,
            "CDS_STATE_DIR": str(workdir / "state"),
            "CDS_CLINICAL_DATE": clinical_date.isoformat(),
            "WEB_CONCURRENCY": str(workers),
            "CDS_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        migrate_database(env)  # the deploy step, once, before any replica serves
        started: list[Replica] = []
        stack.callback(lambda: [replica.stop() for replica in started])
        for index in range(replicas):
            started.append(start_replica("AB"[index] if replicas <= 2 else str(index), env, workdir))
        for replica in started:
            name = f"replica {replica.name}"
            wait_until_ready(replica.url + "/cds-services", replica.process, replica.log_path, name)
        process, url = start_nginx(nginx_port, started, workdir, cert, tls_key)
        stack.callback(stop_nginx, process)
        examples = {service: json.loads((EXAMPLES / name).read_text()) for service, name in EXAMPLE_FOR_SERVICE.items()}
        yield Topology(url, started, key, database_url, workdir, str(cert), examples)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process started in its own session and what it started (a recipe's shell and its lbp-cds),
    SIGKILL if they linger."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
