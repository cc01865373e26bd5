"""Benchmark (not a test): lbp-cds on its production server (granian) against two ceilings, driven by wrk.

    apt-get install wrk
    .venv/bin/python tools/bench_http.py [--duration 3] [--rounds 3] [--connections 32] [--json out.json]

Starts lbp-cds as `lbp-cds serve` does (`python -m cds_service.web.server`: granian, WSGI) on a free 127.0.0.1
port (CDS_REQUIRE_JWT=false, a temporary SQLite database, a fixed CDS_PUBLIC_BASE_URL), captures its answer to
the baseline order-select with full prefetch (guideline_data/examples/baseline-lbp-referral.json), then starts
tools/ceiling_app.py, a bare Flask app that parses the same request and answers those same bytes, twice:

- on gunicorn (gthread, 2 x CPU workers of 4 threads, keep-alive 5 s): the fixed reference of issue 22, the
  ceiling that lbp-cds was measured against when it was served by gunicorn with those settings;
- on lbp-cds's own server settings (tools/ceiling_granian.py): what the framework costs on granian.

wrk POSTs the request:

- throughput and latency at saturation (`--connections` connections, `--wrk-threads` wrk threads);
- latency sequentially (one connection, one request at a time);
- p50 sequential as the prefetched record grows to 10, 100, 1,000 and 10,000 resources (the baseline
  patient plus Conditions, Encounters, ServiceRequests and Procedures that do not change the decision;
  every body is checked to give the baseline's cards), lbp-cds beside the gunicorn ceiling on the same bodies.

Saturated and sequential figures are medians of `--rounds` rounds that alternate between the apps,
so that other work on the machine weighs on all alike. Beside wrk's figures the script reports
the server's CPU time per request (all server processes, from /proc), which other load barely moves.
It prints a table, both ratios and the verdicts against the targets of issues 17 and 22 for a 2-core machine;
the whole run takes about two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.settings import ServerSettings  # noqa: E402
from cds_service.web.server import default_workers  # noqa: E402
from tests.builders import CPT, NUCC, ortho_referral, patient, service_request  # noqa: E402
from tests.clinical_date import TODAY  # noqa: E402

BASELINE = ROOT / "guideline_data" / "examples" / "baseline-lbp-referral.json"
SERVICE_PATH = "/cds-services/lbp-referral-select"
PUBLIC_BASE_URL = "https://cds.bench.invalid"
GROWTH_SIZES = (10, 100, 1_000, 10_000)

# Targets for a 2-core machine: issue 22 (the serving stack) for throughput, latency and CPU per call against
# the gunicorn + bare Flask ceiling, issue 17 (the rules core) for the grown records.
TARGET_RATIO = 0.9
TARGET_SEQ_P99_MS = 5.0
TARGET_CPU_US = 350.0
TARGET_1K_P50_MS = 4.0
TARGET_10K_P50_MS = 25.0
# "No worse than linear": between consecutive sizes, p50 may grow at most like n^1.1 (10% for noise).
TARGET_GROWTH_EXPONENT = 1.1

WRK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open({path}, "rb"))
wrk.body = file:read("*a")
file:close()
"""

LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$")
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_sec: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu_us: float = 0.0  # CPU time of the server's processes (all workers) per request


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's --latency report: the latency distribution lines, the totals and any errors."""
    percentiles: dict[str, float] = {}
    in_distribution = False
    for line in output.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
            continue
        if in_distribution:
            match = LATENCY_LINE.match(line)
            if match:
                percentiles[match.group(1)] = float(match.group(2)) * UNIT_MS[match.group(3)]
                continue
            in_distribution = False
    missing = {"50", "75", "90", "99"} - percentiles.keys()
    if missing:
        raise ValueError(f"wrk output lacks the latency distribution ({sorted(missing)}):\n{output}")
    totals = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    if not totals or not rate:
        raise ValueError(f"wrk output lacks its totals:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests=int(totals.group(1)),
        seconds=float(totals.group(2)) * UNIT_MS[totals.group(3)] / 1000,
        requests_per_sec=float(rate.group(1)),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
    )


def run_wrk(server: Server, lua: Path, *, connections: int, threads: int, seconds: float) -> WrkResult:
    url = server.base + SERVICE_PATH
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    cpu = server.cpu_seconds() - cpu_before
    result = parse_wrk(done.stdout)
    if result.non_2xx or result.socket_errors:
        raise SystemExit(
            f"wrk saw {result.non_2xx} non-2xx answers and {result.socket_errors} socket errors:\n{done.stdout}"
        )
    return replace(result, server_cpu_us=cpu / result.requests * 1e6 if result.requests else 0.0)


@dataclass(frozen=True)
class Server:
    base: str
    pid: int  # the server's main process (granian's, or gunicorn's arbiter)

    def cpu_seconds(self) -> float:
        """User and system CPU of the main process and its workers so far (Linux /proc).

        Workers replaced meanwhile count too: their time is in the main process's cutime/cstime once reaped.
        """
        fields = stat_fields(self.pid)
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
        with suppress(OSError):
            for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
                with suppress(OSError):
                    worker = stat_fields(int(child))
                    ticks += int(worker[11]) + int(worker[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: field 3 (state) is index 0."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def machine_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over a short interval, before we start: other work skews every figure."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# The fixed reference of issue 22: gunicorn as lbp-cds ran it before (gthread, 2 x CPU workers of 4 threads,
# keep-alive 5 s), whatever lbp-cds's own server settings are now.
REFERENCE_WORKERS = 2 * (os.cpu_count() or 1)
REFERENCE_THREADS = 4


def gunicorn_command(app: str, workers: int = REFERENCE_WORKERS, threads: int = REFERENCE_THREADS) -> list[str]:
    binary = Path(sys.executable).parent / "gunicorn"
    options = ["--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads), "--keep-alive", "5"]
    return [str(binary), *options, "--pythonpath", "tools", "--no-control-socket", app]


SERVER_COMMAND = [sys.executable, "-m", "cds_service.web.server"]  # what `lbp-cds serve` runs
CEILING_ON_GRANIAN = [sys.executable, "tools/ceiling_granian.py"]


@contextmanager
def launched(name: str, command: list[str], env: Mapping[str, str], log: Path) -> Iterator[Server]:
    """`command` listening on a free port (CDS_BIND, or gunicorn's --bind); yields it, stops it after."""
    port = free_port()
    if "gunicorn" in Path(command[0]).name:
        command = [*command[:-1], "--bind", f"127.0.0.1:{port}", command[-1]]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "CDS_BIND": f"127.0.0.1:{port}"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, process, name, log)
        yield Server(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.send_signal(signal.SIGTERM)  # a graceful stop, for the main process we started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only the main process and its workers
            process.wait()


def wait_until_listening(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} at start-up; see {log}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on port {port} within 60 s; see {log}")


def answer(url: str, body: bytes) -> bytes:
    """The 200 answer to a request, retried while the workers are still starting."""
    deadline = time.monotonic() + 60
    while True:
        try:
            status, data = post(url, body)
        except OSError:
            status, data = 0, b""
        if status == 200:
            return data
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} answered {status}: {data[:500]!r}")
        time.sleep(0.2)


def topics(response: bytes) -> list[str]:
    return [card["source"]["topic"]["code"] for card in json.loads(response)["cards"]]


def grown_request(total: int) -> dict[str, Any]:
    """The baseline case with `total` prefetched resources; the fillers do not change the decision.

    Patient and the LBP diagnosis, then in turn: a hypertension or asthma Condition, a finished family
    medicine Encounter, a completed lab ServiceRequest and an office-visit Procedure, all over a year old.
    """
    record = patient(51).with_lbp()
    for i in range(total - 2):
        kind = i % 4
        if kind == 0:
            record.with_condition("I10" if i % 8 else "J45.909", onset="2019-03-01")
        elif kind == 1:
            record.with_encounter(service_type=(NUCC, "207Q00000X"), days=400 + i % 300, reason="I10")
        elif kind == 2:
            lab = service_request("58410-2", system="http://loinc.org", status="completed", reason=None)
            lab["authoredOn"] = "2024-05-02"
            record.with_service_request(lab)
        else:
            record.with_procedure((CPT, "99213"), days=400 + i % 300)
    referral = ortho_referral(rid="referral-ortho")
    request = record.order_select(referral)
    request["hookInstance"] = "e48efab4-cf11-537e-98ec-e8bc1fdbc5e0"
    counted = sum(
        len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1 for v in request["prefetch"].values()
    )
    assert counted == total, (counted, total)
    return request


def lua_script(directory: Path, body_file: Path) -> Path:
    script = directory / f"{body_file.stem}.lua"
    script.write_text(WRK_LUA.format(path=json.dumps(str(body_file))))
    return script


def median_result(rounds: list[WrkResult]) -> WrkResult:
    """Each figure's median over the rounds: one disturbed round (other work on the machine) moves nothing."""
    values = {f.name: statistics.median(getattr(r, f.name) for r in rounds) for f in fields(WrkResult)}
    return WrkResult(**values)


def measure(servers: Mapping[str, Server], lua: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Warm each app up, then saturation rounds and sequential rounds, alternating between the apps.

    Alternating rounds expose both apps to the same conditions; each figure is the median of its rounds.
    """
    for name, server in servers.items():
        print(f"  {name}: warm-up, {args.warmup:g} s", flush=True)
        run_wrk(server, lua, connections=args.connections, threads=args.wrk_threads, seconds=args.warmup)
    rounds: dict[str, dict[str, list[WrkResult]]] = {name: {"saturated": [], "sequential": []} for name in servers}
    for kind, connections, threads in (
        ("saturated", args.connections, args.wrk_threads),
        ("sequential", 1, 1),
    ):
        for index in range(args.rounds):
            for name, server in servers.items():
                print(
                    f"  {name}: {kind} round {index + 1}/{args.rounds}, {connections} connection(s), "
                    f"{args.duration:g} s",
                    flush=True,
                )
                result = run_wrk(server, lua, connections=connections, threads=threads, seconds=args.duration)
                rounds[name][kind].append(result)
    return {
        name: {kind: {"median": median_result(results), "rounds": results} for kind, results in kinds.items()}
        for name, kinds in rounds.items()
    }


def migrate(env: Mapping[str, str]) -> None:
    """The deploy step before serving: the schema the issued-card writer needs."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]
    subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown",
    )
    server = ServerSettings.from_env()
    workers = server.workers or default_workers()  # as cds_service/web/server.py computes it
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "workers": workers,
        "threads": server.threads,
        "servers": (
            f"lbp-cds and the granian ceiling: {workers} workers x {server.threads} threads (granian WSGI); "
            f"gunicorn ceiling: {REFERENCE_WORKERS} x {REFERENCE_THREADS} (gthread)"
        ),
        "wrk": wrk[0] if wrk else "wrk",
    }


def growth_exponents(growth: Mapping[int, float]) -> list[tuple[int, int, float]]:
    sizes = sorted(growth)
    return [(a, b, math.log(growth[b] / growth[a]) / math.log(b / a)) for a, b in itertools.pairwise(sizes)]


APPS = {"lbp-cds": "lbp-cds (granian)", "ceiling": "ceiling: gunicorn", "granian": "ceiling: granian"}


def report(info: Mapping[str, Any], apps: Mapping[str, Mapping[str, WrkResult]], growth: Mapping[int, Any]) -> bool:
    """The table of the three apps, both ratios, the growth table and the verdicts (True: every target met)."""
    print()
    print(f"Machine: {info['cpus']} CPUs, {info['cpu']}; Python {info['python']}; {info['servers']}")
    print(f"Load: {info['wrk']}; baseline order-select with full prefetch ({BASELINE.name})")
    print(f"Machine busy before the run (other processes): {info['busy_before']:.0%}")
    print()
    lbp, ceiling = apps["lbp-cds"], apps["ceiling"]
    ratio = lbp["saturated"].requests_per_sec / ceiling["saturated"].requests_per_sec
    header = (
        f"{'':<22}{'req/s':>8}{'sat p50':>10}{'sat p99':>10}{'CPU/req':>10}"
        f"{'seq req/s':>11}{'seq p50':>10}{'seq p99':>10}{'CPU/req':>10}"
    )
    print(f"{'':<22}{'saturated (' + str(info['connections']) + ' connections)':<38}{'sequential (1 connection)'}")
    print(header)
    print("-" * len(header))
    for name, label in APPS.items():
        sat, seq = apps[name]["saturated"], apps[name]["sequential"]
        print(
            f"{label:<22}{sat.requests_per_sec:>8.0f}{sat.p50_ms:>8.2f}ms{sat.p99_ms:>8.2f}ms{sat.server_cpu_us:>8.0f}µs"
            f"{seq.requests_per_sec:>11.0f}{seq.p50_ms:>8.2f}ms{seq.p99_ms:>8.2f}ms{seq.server_cpu_us:>8.0f}µs"
        )
    for name in ("ceiling", "granian"):
        bare = apps[name]["saturated"]
        print(
            f"ratio lbp-cds / {APPS[name]}: {lbp['saturated'].requests_per_sec / bare.requests_per_sec:.2f}"
            f"  (by server CPU per request: {bare.server_cpu_us / lbp['saturated'].server_cpu_us:.2f})"
        )
    print()
    print(
        f"{'prefetched resources':>20}{'body bytes':>12}{'seq p50':>10}{'seq p99':>10}{'req/s':>8}"
        f"{'CPU/req':>10}{'p50/resource':>14}{'ceiling p50':>13}{'ratio':>7}"
    )
    for size, row in sorted(growth.items()):
        result: WrkResult = row["result"]
        bare_result: WrkResult = row["ceiling"]
        per_resource = result.p50_ms * 1000 / size
        print(
            f"{size:>20,}{row['bytes']:>12,}{result.p50_ms:>8.2f}ms{result.p99_ms:>8.2f}ms"
            f"{result.requests_per_sec:>8.0f}{result.server_cpu_us / 1000:>8.2f}ms{per_resource:>12.1f}µs"
            f"{bare_result.p50_ms:>11.2f}ms{result.p50_ms / bare_result.p50_ms:>7.2f}"
        )
    exponents = growth_exponents({size: row["result"].p50_ms for size, row in growth.items()})
    print("growth exponent (p50 ~ n^k): " + ", ".join(f"{a:,}→{b:,} k={k:.3f}" for a, b, k in exponents))
    print()
    verdicts = [(f"throughput ≥ {TARGET_RATIO} × the gunicorn ceiling", ratio >= TARGET_RATIO, f"{ratio:.2f}")]
    seq_p99 = lbp["sequential"].p99_ms
    verdicts.append((f"sequential p99 ≤ {TARGET_SEQ_P99_MS:g} ms", seq_p99 <= TARGET_SEQ_P99_MS, f"{seq_p99:.2f} ms"))
    cpu = lbp["saturated"].server_cpu_us
    verdicts.append((f"CPU per baseline call ≤ {TARGET_CPU_US:g} µs", cpu <= TARGET_CPU_US, f"{cpu:.0f} µs"))
    for size, target in ((1_000, TARGET_1K_P50_MS), (10_000, TARGET_10K_P50_MS)):
        if size in growth:
            p50 = growth[size]["result"].p50_ms
            verdicts.append((f"{size:,} resources p50 ≤ {target:g} ms", p50 <= target, f"{p50:.2f} ms"))
    if exponents:
        worst = max(k for _a, _b, k in exponents)
        linear = f"growth no worse than linear (k ≤ {TARGET_GROWTH_EXPONENT})"
        verdicts.append((linear, worst <= TARGET_GROWTH_EXPONENT, f"worst k={worst:.3f}"))
    for name, ok, value in verdicts:
        print(f"  {'MET    ' if ok else 'NOT MET'}  {name}: {value}")
    return all(ok for _name, ok, _value in verdicts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3, help="seconds per measured wrk round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per app and load, alternating (default 3)")
    parser.add_argument("--growth-duration", type=float, default=5, help="seconds per record size (default 5)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before measuring (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="connections at saturation (default 32)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads at saturation (default 2)")
    parser.add_argument("--sizes", default=",".join(map(str, GROWTH_SIZES)), help="prefetched record sizes")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk).")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    info = machine()
    info["connections"] = args.connections
    info["busy_before"] = round(machine_busy(), 3)
    if info["busy_before"] > 0.1:
        print(f"warning: the machine was {info['busy_before']:.0%} busy before the run; figures will be skewed")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lbp-bench-") as tmp:
        work = Path(tmp)
        baseline_file = work / "baseline.json"
        baseline_file.write_bytes(BASELINE.read_bytes())
        bodies: dict[int, Path] = {}
        for size in sizes:
            bodies[size] = work / f"record-{size}.json"
            bodies[size].write_text(json.dumps(grown_request(size), separators=(",", ":")))
        env = {
            "CDS_REQUIRE_JWT": "false",
            "CDS_DATABASE_URL": f"sqlite:///{work / 'lbp-cds.sqlite3'}",
            "CDS_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            # The grown records are built with tests/builders.py, whose dates count from the tests' clinical date.
            "CDS_CLINICAL_DATE": TODAY.isoformat(),
            "CDS_STATE_DIR": str(work / "state"),
        }
        migrate(env)
        print(f"lbp-cds: {' '.join(SERVER_COMMAND[1:])} (log {work / 'lbp-cds.log'})", flush=True)
        with ExitStack() as stack:
            server = stack.enter_context(launched("lbp-cds", SERVER_COMMAND, env, work / "lbp-cds.log"))
            url = server.base + SERVICE_PATH
            captured = answer(url, baseline_file.read_bytes())
            expected = topics(captured)
            for size, path in bodies.items():
                got = topics(answer(url, path.read_bytes()))
                if got != expected:
                    raise SystemExit(f"the {size}-resource record gives {got}, not the baseline's {expected}")
            response_file = work / "response.json"
            response_file.write_bytes(captured)
            ceiling_env = {**env, "CEILING_RESPONSE_FILE": str(response_file)}
            reference = gunicorn_command("ceiling_app:app")
            print(f"ceiling: {' '.join(reference[1:])} ({len(captured):,} bytes)")
            ceiling = stack.enter_context(launched("ceiling", reference, ceiling_env, work / "ceiling.log"))
            print(f"ceiling on granian: {' '.join(CEILING_ON_GRANIAN[1:])}")
            granian = stack.enter_context(launched("granian", CEILING_ON_GRANIAN, ceiling_env, work / "granian.log"))
            for bare in (ceiling, granian):
                if answer(bare.base + SERVICE_PATH, baseline_file.read_bytes()) != captured:
                    raise SystemExit("the ceiling app does not answer the captured bytes")
            servers = {"lbp-cds": server, "ceiling": ceiling, "granian": granian}
            figures = measure(servers, lua_script(work, baseline_file), args)
            growth: dict[int, Any] = {}
            for size, path in bodies.items():
                lua = lua_script(work, path)
                growth[size] = {"bytes": path.stat().st_size}
                for name, target in (("result", server), ("ceiling", ceiling)):
                    label = "lbp-cds" if target is server else "ceiling"
                    print(f"  {label} {size:,} resources: sequential, {args.growth_duration:g} s", flush=True)
                    run_wrk(target, lua, connections=1, threads=1, seconds=1)
                    growth[size][name] = run_wrk(target, lua, connections=1, threads=1, seconds=args.growth_duration)
    apps = {name: {kind: figures[name][kind]["median"] for kind in ("saturated", "sequential")} for name in figures}
    print()
    for name in figures:
        rates = ", ".join(f"{r.requests_per_sec:.0f}" for r in figures[name]["saturated"]["rounds"])
        p99s = ", ".join(f"{r.p99_ms:.2f}" for r in figures[name]["sequential"]["rounds"])
        print(f"{name} rounds: saturated req/s {rates}; sequential p99 ms {p99s}")
    ok = report(info, apps, growth)
    print(f"\n(ran {time.monotonic() - started:.0f} s; cards: {expected})")
    if args.json:
        dump = {
            "machine": info,
            "settings": {"duration": args.duration, "rounds": args.rounds, "growth_duration": args.growth_duration},
            **{
                name: {
                    kind: {"median": asdict(v["median"]), "rounds": [asdict(r) for r in v["rounds"]]}
                    for kind, v in kinds.items()
                }
                for name, kinds in figures.items()
            },
            "growth": {
                str(k): {"bytes": v["bytes"], **asdict(v["result"]), "ceiling": asdict(v["ceiling"])}
                for k, v in growth.items()
            },
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
