"""gunicorn settings for lbp-cds in production: `gunicorn -c gunicorn.conf.py wsgi:app`.

Each value can be overridden by the environment variable named beside it.
"""

import gc
import multiprocessing
import os

bind = os.environ.get("CDS_BIND", "0.0.0.0:8080")
# Threads, because a hook call may wait on the EHR's FHIR server; workers for the CPU work.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("CDS_THREADS", "4"))
# Longer than any FHIR budget: a worker is only killed when it is truly stuck.
timeout = int(os.environ.get("CDS_WORKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("CDS_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Recycle workers now and then, so a slow leak can never grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# The service logs one structured line per hook call itself; no access log.
accesslog = None
errorlog = "-"
# gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which two
# instances on one host would fight over; off unless a path is given.
if os.environ.get("CDS_CONTROL_SOCKET"):
    control_socket = os.environ["CDS_CONTROL_SOCKET"]
else:
    no_control_socket = True
loglevel = os.environ.get("CDS_LOG_LEVEL", "info")

# Prometheus multiprocess mode: every worker writes its metrics to files in one folder, and /metrics
# (served by any worker) adds them up. The folder is emptied when the server starts.
metrics_folder = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lbp-cds-metrics-{os.getpid()}")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_folder)


def on_starting(server):
    import shutil

    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: object) -> None:
    """The application is loaded: what it holds lives as long as the worker, so take it out of the
    cyclic garbage collector's sight (gc.freeze). A full collection then scans only what requests
    allocated, not the whole application: on a 10,000-resource prefetch that was most of the call.
    """
    gc.collect()
    gc.freeze()
