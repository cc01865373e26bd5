"""gunicorn settings for lbp-cds in production, shipped with the package: what `lbp-cds serve` runs with
(`gunicorn -c python:cds_service.web.gunicorn_config`; the repository's gunicorn.conf.py is this module).

Each value comes from the environment variable documented in the README (cds_service.settings
.ServerSettings). The service's own settings are checked here too, once, before any worker starts:
an invalid value stops the instance with one line naming the variable (no traceback per worker).
Migrations are not run here: `lbp-cds migrate` (`flask --app wsgi db upgrade`) is the deploy step before serving.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from typing import Any

from cds_service.settings import ServerSettings, Settings, SettingsError, exit_on_settings_error

try:
    server_settings = ServerSettings.from_env()
    Settings.from_env().check()
except SettingsError as error:
    exit_on_settings_error(error)

bind = server_settings.bind
# Threads, because a hook call may wait on the EHR's FHIR server; workers for the CPU work.
worker_class = "gthread"
workers = server_settings.workers or multiprocessing.cpu_count() * 2
threads = server_settings.threads
# Longer than any FHIR budget: a worker is only killed when it is truly stuck.
timeout = server_settings.worker_timeout
graceful_timeout = server_settings.graceful_timeout
keepalive = 5
# Recycle workers now and then, so a slow leak can never grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# The service logs one structured line per hook call itself; no access log.
accesslog = None
errorlog = "-"
loglevel = server_settings.log_level
# gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which two
# instances on one host would fight over; off unless a path is given.
if server_settings.control_socket:
    control_socket = server_settings.control_socket
else:
    control_socket_disable = True

# Prometheus multiprocess mode: every worker writes its metrics to files in one folder, and /metrics
# (served by any worker) adds them up. The folder is emptied when the server starts.
metrics_folder = server_settings.prometheus_multiproc_dir or os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"lbp-cds-metrics-{os.getpid()}"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_folder


def on_starting(server: Any) -> None:
    import shutil

    shutil.rmtree(metrics_folder, ignore_errors=True)
    os.makedirs(metrics_folder, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


# The cyclic collector's first-generation threshold (Python's default is 700 allocations). Requests make
# no cycles of their own, so collecting every 50,000 allocations frees the same memory with fewer passes
# over a large request's objects (BENCHMARKS.md: 2-3 % of a 10,000-resource call, the typed Structs being
# untracked already).
GC_THRESHOLDS = (50_000, 20, 100)


def post_worker_init(worker: Any) -> None:
    """The application is loaded: what it holds lives as long as the worker, so take it out of the
    cyclic garbage collector's sight (gc.freeze). A full collection then scans only what requests
    allocated, not the whole application: on a 10,000-resource prefetch that was most of the call.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn's own line per request at debug (its default hook logs the raw path, form link token and all)."""
    from cds_service.observability.logs import loggable_path

    worker.log.debug("%s %s", req.method, loggable_path(req.path))


def worker_exit(server: Any, worker: Any) -> None:
    """Store the issued-card records still queued and close connections before the worker goes."""
    from cds_service.wiring import services_of

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        services_of(app).close()
