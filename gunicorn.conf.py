"""`gunicorn -c gunicorn.conf.py wsgi:app` from a checkout: the settings shipped in the package.

The configuration lives in cds_service/web/gunicorn_config.py, so that an installed service (`lbp-cds serve`)
runs with exactly the same one.
"""

from cds_service.web.gunicorn_config import *  # noqa: F403
