"""The Python half of the container smoke test (tools/smoke_image.sh runs podman; this does the rest).

Subcommands, each small and on its own, so that the shell script owns every resource and its trap:
  mirror                  the machine's Debian mirror, read from its apt sources (never written anywhere)
  free-port               a free TCP port on 127.0.0.1
  keys DIR                an ES384 signing key (DIR/key.pem) and its JWK Set (DIR/jwks/jwks.json), for a test issuer
  create-db / drop-db     a fresh PostgreSQL database for one run (URL printed as the container must reach it)
  overrides DIR [--broken] guideline_data overrides laid out as Kubernetes mounts a ConfigMap (DIR/overrides),
                          and the content version the Deployment's init container must assemble from them
  init-script FILE        the shell script of the init container in deploy/kubernetes/deployment.yaml
  check                   the calls a deployer and an EHR make, against the running container; exits 1 on failure
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import socket
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import jwt
import redis
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.content.loader import check_content  # noqa: E402
from cds_service.storage.database import feedback, issued_cards  # noqa: E402
from tests.tokens import jwks, make_key  # noqa: E402

EXAMPLE = ROOT / "guideline_data" / "examples" / "baseline-lbp-referral.json"
SERVICE = "lbp-referral-select"
ISSUER = "https://ehr.smoke-test.invalid"
KID = "smoke-es384"
# Inside the container (slirp4netns with allow_host_loopback), the host's 127.0.0.1 is this address.
HOST_FROM_CONTAINER = "10.0.2.2"


def replay_key(jti: str) -> str:
    """The Redis key under which the service remembers a JWT id (cds_service/web/auth.py)."""
    token_id = hashlib.sha256(f"{ISSUER}\0{jti}".encode()).hexdigest()
    return f"lbp-cds:jti:{token_id}"


def say(message: str) -> None:
    print(f"smoke: {message}", flush=True)


def mirror() -> str:
    """The first Debian archive (not the security one) of the machine's apt sources, deb822 or one-line."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {
                name.strip(): value.strip()
                for name, _, value in (line.partition(":") for line in stanza.splitlines())
                if value and not name.startswith(("#", " ", "\t"))
            }
            if fields.get("Enabled", "yes").lower() == "no":
                continue
            types = fields.get("Types", "").split()
            suites = fields.get("Suites", "").split()
            if "deb" in types and not all(suite.endswith("-security") for suite in suites):
                return fields["URIs"].split()[0]
    one_line = Path("/etc/apt/sources.list")
    for line in one_line.read_text().splitlines() if one_line.is_file() else []:
        words = re.sub(r"\[[^]]*\]", " ", line).split()  # without its [option=value ...] part
        if len(words) >= 3 and words[0] == "deb" and not words[2].endswith("-security"):
            return words[1]
    raise SystemExit("smoke: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keys(directory: Path) -> None:
    key = make_key("ES384", kid=KID)
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "key.pem").write_bytes(pem)
    (directory / "jwks").mkdir(exist_ok=True)
    (directory / "jwks" / "jwks.json").write_text(json.dumps(jwks(key)))


def admin_url(base: str) -> str:
    return make_url(base).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_db(base: str) -> None:
    """Print the new database's name and its URL from the container's side."""
    name = f"lbp_smoke_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url(base), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(admin_url(base)).set(database=name)
    if url.host in ("127.0.0.1", "localhost"):
        url = url.set(host=HOST_FROM_CONTAINER)
    print(name, url.render_as_string(hide_password=False))


def drop_db(base: str, name: str) -> None:
    engine = create_engine(admin_url(base), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# Two edits informatics staff might make: a top-level file and one in a subfolder (key "msc__handout.md").
EDITS = {
    "policy.yaml": "\n# edited for the container smoke test: laid over the image's content\n",
    "msc/handout.md": "\nEdited for the container smoke test.\n",
}


def overrides(directory: Path, broken: bool) -> None:
    """DIR/overrides as the kubelet mounts a ConfigMap (..data, a timestamped folder, one symlink per key); prints
    the content version of the image's content with these edits (computed on DIR/expected)."""
    expected = directory / "expected"
    shutil.copytree(ROOT / "guideline_data", expected, ignore=shutil.ignore_patterns("__pycache__"))
    mount = directory / "overrides"
    stamp = mount / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (mount / "..data").symlink_to(stamp.name)
    for path, addition in EDITS.items():
        edited = (expected / path).read_text() + addition
        if broken and path == "policy.yaml":
            edited += "msc_requirement_suspensions: [unclosed\n"
        (expected / path).write_text(edited)
        key = path.replace("/", "__")
        (stamp / key).write_text(edited)
        (mount / key).symlink_to(f"..data/{key}")
    content, problems = check_content(expected)
    if content is None and not broken:
        raise SystemExit(f"smoke: the edited content is invalid: {problems[:3]}")
    print(content.version if content else "invalid")


def init_script(manifest: Path) -> None:
    deployment = yaml.safe_load(manifest.read_text())
    (init,) = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "content"]
    assert init["command"][:2] == ["/bin/sh", "-c"], init["command"]
    print(init["command"][2])


class Checks:
    def __init__(self, base: str, key_file: Path, database: str, redis_url: str, content_version: str) -> None:
        self.base = base
        self.key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        self.database = database
        self.redis_url = redis_url
        self.content_version = content_version
        self.jtis: list[str] = []
        self.tokens: list[str] = []
        self.failures: list[str] = []

    def expect(self, condition: bool, what: str, detail: Any = "") -> None:
        say(f"{'ok  ' if condition else 'FAIL'} {what}" + ("" if condition else f": {detail}"))
        if not condition:
            self.failures.append(what)

    def token(self, endpoint: str) -> str:
        now = int(time.time())
        jti = str(uuid.uuid4())
        self.jtis.append(jti)
        claims = {"iss": ISSUER, "aud": self.base + endpoint, "iat": now, "exp": now + 300, "jti": jti}
        token = jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})
        self.tokens.append(token)
        return token

    def call(self, endpoint: str, body: Any, token: str | None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.base + endpoint, data=json.dumps(body), headers=headers, timeout=15)

    def run(self, release: str) -> None:
        discovery = requests.get(f"{self.base}/cds-services", timeout=10)
        services = sorted(s["id"] for s in discovery.json().get("services", [])) if discovery.ok else []
        self.expect(
            services == ["lbp-appointment-book", "lbp-patient-view", "lbp-referral-select", "lbp-referral-sign"],
            "discovery lists the four services",
            f"{discovery.status_code} {discovery.text[:300]}",
        )
        served = discovery.json().get("extension", {}).get("lbp-cds-content-version") if discovery.ok else None
        self.expect(served == self.content_version, "the content assembled by the init container is served", served)

        health = requests.get(f"{self.base}/healthz", timeout=10)
        self.expect(health.ok and health.json().get("version") == release, f"/healthz reports {release}", health.text)

        example = json.loads(EXAMPLE.read_text())
        endpoint = f"/cds-services/{SERVICE}"
        refused = self.call(endpoint, example, None)
        self.expect(refused.status_code == 401, "a hook call without a JWT is refused (401)", refused.status_code)

        token = self.token(endpoint)
        answer = self.call(endpoint, example, token)
        cards = answer.json().get("cards", []) if answer.ok else []
        topics = [card["source"]["topic"]["code"] for card in cards]
        self.expect(
            topics == ["msc-evaluation-first"],
            "the example referral with a signed ES384 JWT gets the msc-evaluation-first card",
            f"{answer.status_code} {answer.text[:300]}",
        )
        replay = self.call(endpoint, example, token)
        self.expect(replay.status_code == 401, "the same JWT again is refused as a replay (401)", replay.status_code)
        self.check_redis()

        if cards:
            self.check_feedback(cards[0])

        ready = requests.get(f"{self.base}/readyz", timeout=10)
        self.expect(ready.status_code == 200 and ready.json().get("status") == "ready", "/readyz is 200", ready.text)

        metrics = requests.get(f"{self.base}/metrics", timeout=10).text
        self.expect(
            'lbp_cards_issued_total{service="lbp-referral-select",topic="msc-evaluation-first"}' in metrics,
            "/metrics counts the card",
        )

    def check_redis(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        names = [replay_key(jti) for jti in self.jtis]
        try:
            self.expect(client.exists(*names) == len(names), "the JWT ids are recorded in Redis", names)
        finally:
            client.close()

    def check_feedback(self, card: dict[str, Any]) -> None:
        """The clinician took the card's first suggestion (the swap to an MSC referral)."""
        endpoint = f"/cds-services/{SERVICE}/feedback"
        card_uuid = card["uuid"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry = {
            "card": card_uuid,
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": stamp,
        }
        body = {"feedback": [entry]}
        answer = self.call(endpoint, body, self.token(endpoint))
        self.expect(answer.status_code == 200, "feedback on the card is acknowledged (200)", answer.text[:300])
        engine = create_engine(self.database, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as connection:
                stored = connection.execute(
                    select(feedback.c.outcome, feedback.c.accepted_suggestions, feedback.c.issuer).where(
                        feedback.c.card_uuid == card_uuid
                    )
                ).all()
            # The issue record is written by a background writer (batched): it may land just after the feedback.
            deadline, issued = time.monotonic() + 10, []
            while not issued and time.monotonic() < deadline:
                with engine.connect() as connection:
                    issued = connection.execute(
                        select(issued_cards.c.topic).where(issued_cards.c.card_uuid == card_uuid)
                    ).all()
                time.sleep(0.2)
        finally:
            engine.dispose()
        self.expect(
            [tuple(row) for row in stored] == [("accepted", [entry["acceptedSuggestions"][0]["id"]], ISSUER)],
            "the feedback is stored in PostgreSQL (outcome, suggestion, issuer)",
            stored,
        )
        self.expect(
            [tuple(row) for row in issued] == [("msc-evaluation-first",)],
            "the issued card is recorded in PostgreSQL with its topic",
            issued,
        )

    def forget_jtis(self) -> None:
        """The Redis keys of this run (they would expire by themselves within minutes)."""
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        try:
            if self.jtis:
                client.delete(*(replay_key(jti) for jti in self.jtis))
        finally:
            client.close()


def check(arguments: argparse.Namespace) -> int:
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    checks = Checks(
        arguments.base, arguments.key, admin_url(arguments.database), arguments.redis, arguments.content_version
    )
    try:
        checks.run(release)
    finally:
        checks.forget_jtis()
    tokens = arguments.tokens_file
    if tokens:
        Path(tokens).write_text("".join(f"{token}\n" for token in checks.tokens))
    if checks.failures:
        say(f"{len(checks.failures)} check(s) failed: {'; '.join(checks.failures)}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("mirror")
    commands.add_parser("free-port")
    commands.add_parser("keys").add_argument("directory", type=Path)
    commands.add_parser("create-db").add_argument("admin_url")
    drop = commands.add_parser("drop-db")
    drop.add_argument("admin_url")
    drop.add_argument("name")
    laid = commands.add_parser("overrides")
    laid.add_argument("directory", type=Path)
    laid.add_argument("--broken", action="store_true", help="an override that fails validation")
    commands.add_parser("init-script").add_argument("manifest", type=Path)
    run = commands.add_parser("check")
    run.add_argument("--base", required=True)
    run.add_argument("--key", type=Path, required=True)
    run.add_argument("--database", required=True, help="the run's database, as this host reaches it")
    run.add_argument("--redis", required=True)
    run.add_argument("--content-version", required=True)
    run.add_argument("--tokens-file", help="write the JWTs sent here (to check that the logs never carry them)")
    arguments = parser.parse_args()
    if arguments.command == "mirror":
        print(mirror())
    elif arguments.command == "free-port":
        print(free_port())
    elif arguments.command == "keys":
        keys(arguments.directory)
    elif arguments.command == "create-db":
        create_db(arguments.admin_url)
    elif arguments.command == "drop-db":
        drop_db(arguments.admin_url, arguments.name)
    elif arguments.command == "overrides":
        overrides(arguments.directory, arguments.broken)
    elif arguments.command == "init-script":
        init_script(arguments.manifest)
    elif arguments.command == "check":
        return check(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
