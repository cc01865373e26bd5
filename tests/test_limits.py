"""The production shape under abuse: lbp-cds (2 workers of the default threads) behind the shipped nginx
configuration (cds_service/web/nginx/lbp-cds.conf). Slow clients wait on nginx, not on the server's threads; a
body over the limit is 413 whatever its transfer encoding; probes and metrics stay off the internet."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from cds_service.settings import ServerSettings
from tests.topology import Topology, find_nginx, topology
from tests.waiting import wait_for

pytestmark = pytest.mark.processes

WORKERS = 2
THREADS = ServerSettings.model_fields["threads"].default  # the production default (CDS_THREADS)
SLOW_CLIENTS = WORKERS * THREADS  # as many as the server has threads: each would hold one without nginx
SECONDS_PER_BYTE = 2.0
NORMAL_CALLS = 12
# The bound for a normal call while slow clients hold connections; measured per call. Alone on
# this machine a call through nginx takes about 10 ms, so this leaves room for a loaded CI machine.
NORMAL_CALL_SECONDS = 1.0


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[Topology]:
    if find_nginx() is None:
        from tests.databases import unreachable

        unreachable("nginx", FileNotFoundError("not installed (apt-get install nginx)"))
    database = tmp_path_factory.mktemp("limits") / "cds.sqlite3"
    with topology(f"sqlite:///{database}", replicas=1, workers=WORKERS, threads=THREADS) as running:
        yield running


class SlowClient(threading.Thread):
    """A client that sends its request one byte every SECONDS_PER_BYTE: the headers, or (headers sent
    at once) the body."""

    def __init__(self, cluster: Topology, slow_part: str) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.slow_part = slow_part
        self.stop = threading.Event()
        self.bytes_sent = 0
        self.cut_off = False

    def run(self) -> None:
        host, port = self.cluster.nginx_url.removeprefix("https://").split(":")
        path = "/cds-services/lbp-referral-select"
        body = json.dumps(self.cluster.hook_body("lbp-referral-select")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.cluster.token(path)}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        context = ssl.create_default_context(cafile=self.cluster.ca_file)
        with (
            socket.create_connection((host, int(port)), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            trickle = head if self.slow_part == "headers" else body
            if self.slow_part == "body":
                tls.sendall(head)
            for byte in trickle:
                if self.stop.is_set():
                    return
                try:
                    tls.sendall(bytes([byte]))
                except OSError:
                    self.cut_off = True
                    return
                self.bytes_sent += 1
                self.stop.wait(SECONDS_PER_BYTE)


def test_as_many_slow_clients_as_threads_through_the_shipped_proxy_leave_normal_calls_fast(instance):
    slow = [SlowClient(instance, "headers" if n % 2 else "body") for n in range(SLOW_CLIENTS)]
    for client in slow:
        client.start()
    try:
        deadline = time.monotonic() + 10
        while any(client.bytes_sent < 2 for client in slow) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(client.bytes_sent >= 2 for client in slow), "the slow clients should be sending by now"
        durations = []
        for _ in range(NORMAL_CALLS):
            started = time.perf_counter()
            response = instance.call("lbp-referral-select", timeout=30)
            durations.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        assert not any(client.cut_off for client in slow), "nginx should still be reading the slow clients"
    finally:
        for client in slow:
            client.stop.set()
    assert max(durations) < NORMAL_CALL_SECONDS, [round(d, 3) for d in durations]


def chunks(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A valid request followed by spaces, sent chunked (no Content-Length)."""
    head = json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "1"},
            "prefetch": {},
        }
    ).encode()
    yield head
    sent = len(head)
    while sent < total:
        yield b" " * min(piece, total - sent)
        sent += piece


def test_a_chunked_body_over_the_limit_is_413_at_the_replica_itself(instance):
    replica = instance.replicas[0]
    path = "/cds-services/lbp-patient-view"
    response = requests.post(
        replica.url + path,
        data=chunks(6 * 1024 * 1024),
        headers={"Content-Type": "application/json", **instance.headers(path)},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json()["issue"][0]["code"] == "too-long"


def test_a_chunked_body_over_the_limit_through_the_proxy_is_413_as_an_operation_outcome(instance):
    path = "/cds-services/lbp-patient-view"
    response = requests.post(
        instance.nginx_url + path,
        data=chunks(6 * 1024 * 1024),
        headers={"Content-Type": "application/json", **instance.headers(path)},
        timeout=60,
        verify=instance.ca_file,
    )
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/metrics/"])
def test_probes_and_metrics_are_not_exposed_through_the_proxy(instance, path):
    assert requests.get(instance.nginx_url + path, timeout=10, verify=instance.ca_file).status_code == 404
    direct = requests.get(instance.replicas[0].url + path.rstrip("/"), timeout=10)
    assert direct.status_code in (200, 503)  # the balancer and Prometheus reach them on the replica


def test_the_proxy_shows_no_version_and_the_service_asks_for_https_only(instance):
    response = instance.call("lbp-referral-select")
    assert response.status_code == 200
    assert response.headers["Server"] == "nginx"  # no version, and not the replica's own
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["Cache-Control"] == "no-store"
    error = requests.get(instance.nginx_url + "/metrics", timeout=10, verify=instance.ca_file)
    assert "nginx/" not in error.text


def test_forwarded_headers_a_client_sends_are_replaced_by_the_proxy(instance):
    path = "/cds-services/lbp-referral-select"
    spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil", "X-Forwarded-Proto": "http"}
    response = requests.post(
        instance.nginx_url + path,
        json=instance.hook_body("lbp-referral-select"),
        headers={**instance.headers(path), **spoofed},
        timeout=10,
        verify=instance.ca_file,
    )
    assert response.status_code == 200  # the JWT audience is still the public URL
    links = [link["url"] for card in response.json()["cards"] for link in card["links"]]
    assert not any("evil" in link for link in links)


def test_the_shipped_proxy_logs_a_form_link_with_its_token_masked(instance):
    """nginx's access log (the shipped configuration's own format) holds the route, never the link's token."""
    token = "sntl-form-token-Hq7Zr"
    for path in (f"/prior-notification/form/{token}", f"/prior-notification/form/{token}/records/x?y=1"):
        answer = requests.get(instance.nginx_url + path, verify=instance.ca_file, headers={"Referer": path}, timeout=10)
        assert answer.status_code == 404
    access_log = instance.workdir / "nginx-access.log"
    last = "GET /prior-notification/form/<token>/records/x?y=1 HTTP/1.1"

    # nginx writes each line once the request has ended, which may be just after the client has its answer.
    def written_with_last_line() -> str | None:
        text = access_log.read_text()
        return text if last in text else None

    written = wait_for(written_with_last_line, message="the access log line")
    assert last in written
    assert token not in written
