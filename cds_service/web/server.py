"""The production HTTP server: granian (a Rust HTTP server) serving the Flask app over WSGI, shipped in the
package. `lbp-cds serve`, `make run` and `python -m cds_service.web.server` all run this one configuration.

Each value comes from the environment variable documented for operators (cds_service.settings.ServerSettings).
The service's own settings are checked here, once, before any worker starts: an invalid value stops the
instance with one line naming the variable (exit status 2, no traceback per worker). Migrations are not run
here: `lbp-cds migrate` is the deploy step before serving. Why granian and not gunicorn: docs/operators/serving.md.

The main process never imports the application: each worker process builds its own (fork, then create_app),
so a SIGHUP (graceful reload: new workers first, then the old ones stop) picks up new code and settings.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
from collections.abc import Callable
from multiprocessing import util as multiprocessing_util
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.mp import MPServer

from cds_service.settings import ServerSettings, Settings, SettingsError, exit_on_settings_error

# What each worker serves: the application factory (the repository's wsgi.py builds the same app).
APP_TARGET = "cds_service.app:create_app"
# Workers are replaced, one at a time and the new one first, after this long: a slow leak never grows without
# bound (gunicorn's max_requests did this by count; granian recycles by age).
WORKER_LIFETIME_SECONDS = 6 * 3600
# A client (nginx, in production) gets this long to send a request's headers.
HEADER_READ_TIMEOUT_MS = 10_000
# The cyclic collector's first-generation threshold (Python's default is 700 allocations). Requests make
# no cycles of their own, so collecting every 50,000 allocations frees the same memory with fewer passes
# over a large request's objects (BENCHMARKS.md: 2-3 % of a 10,000-resource call).
GC_THRESHOLDS = (50_000, 20, 100)


def main() -> None:
    """Check the settings, prepare the metrics folder and serve until SIGTERM/SIGINT (SIGHUP: reload)."""
    try:
        server_settings = ServerSettings.from_env()
        settings = Settings.from_env()
        settings.check()
    except SettingsError as error:
        exit_on_settings_error(error)
    prepare_metrics_folder(server_settings)
    build_server(server_settings, settings.log_format).serve(target_loader=load_worker_app)


def build_server(server: ServerSettings, log_format: str) -> MPServer:
    host, port = split_bind(server.bind)
    # Worker processes (the GIL build of Python): granian.server.Server is this class there.
    return MPServer(
        APP_TARGET,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,  # nginx in front speaks HTTP/1.1 to the replicas
        websockets=False,
        workers=server.workers or default_workers(),
        # Threads, because a hook call may wait on the EHR's FHIR server; workers for the CPU work.
        blocking_threads=server.threads,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        respawn_failed_workers=True,
        workers_lifetime=WORKER_LIFETIME_SECONDS,
        workers_kill_timeout=max(1, server.graceful_timeout),
        log_level=server.log_level,  # type: ignore[arg-type]  # granian's LogLevels are these same strings
        log_dictconfig=logging_config(log_format),
        log_access=False,  # the service logs one structured line per hook call itself
    )


def default_workers() -> int:
    """One worker process per CPU: granian reads and writes HTTP on its own (Rust) threads, so a worker's
    Python thread does only the calls' CPU work. Two per CPU, gunicorn's habit, cost about 100 µs more CPU per
    hook call on 2 CPUs, in switching between processes (BENCHMARKS.md, "The serving stack", round 3)."""
    return os.cpu_count() or 1


def split_bind(bind: str) -> tuple[str, int]:
    """CDS_BIND, HOST:PORT ([IPv6]:PORT too); checked by ServerSettings."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def prepare_metrics_folder(server: ServerSettings) -> None:
    """Prometheus multiprocess mode: every worker writes its metrics to files in one folder, and /metrics
    (served by any worker) adds them up. The folder is emptied when the server starts."""
    folder = server.prometheus_multiproc_dir or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"lbp-cds-metrics-{os.getpid()}"
    )
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def logging_config(log_format: str) -> dict[str, Any]:
    """granian's own lines (start-up, workers spawned and stopped) on stderr, in the service's format."""
    formatter = (
        {"()": "cds_service.observability.logs.TextFormatter"}
        if log_format == "text"
        else {"()": "cds_service.observability.logs.json_formatter"}
    )
    handler = {
        "class": "cds_service.observability.logs.LineHandler",
        "formatter": "service",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": formatter},
        "handlers": {"console": handler},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }


def load_worker_app(target: str) -> Callable[..., Any]:
    """In each worker: build the app, arrange its clean exit, and take it out of the cyclic collector's sight.

    granian's workers are forked multiprocessing processes, which leave through multiprocessing's exit
    function (Python's atexit handlers are not run there): its finalizers store the issued-card records still
    queued and mark the worker's metrics dead when the worker stops (shutdown, reload or recycling).
    """
    # A stop that arrives while the app is being built: granian installs its own SIGTERM and SIGINT handlers
    # only once it is (until then the worker holds the main process's, and would ignore the stop and be killed
    # after CDS_GRACEFUL_TIMEOUT). A worker that has served nothing has nothing to finish: it stops at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from cds_service.app import create_app
    from cds_service.content.loader import ContentError

    try:
        app = create_app()
    except SettingsError as error:  # checked in the main process already
        exit_on_settings_error(error)
    except ContentError:
        # Invalid content and no last good copy: the loader has logged every problem. The worker ends without a
        # traceback; granian then stops the instance when its workers keep failing to start.
        raise SystemExit(3) from None
    multiprocessing_util.Finalize(None, close_worker, args=(app,), exitpriority=10)
    # What the app holds lives as long as the worker: a full collection then scans only what requests
    # allocated, not the whole application (on a 10,000-resource prefetch that was most of the call).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return app


def close_worker(app: Any) -> None:
    """Store the issued-card records still queued and close connections; this worker's live gauges go."""
    from prometheus_client import multiprocess

    from cds_service.wiring import services_of

    services_of(app).close()
    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
    sys.stderr.flush()


if __name__ == "__main__":
    main()
