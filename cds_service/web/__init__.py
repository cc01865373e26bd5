"""The HTTP layer: routes, errors, JWT, CORS, pages. It knows no clinical rule; the pipeline decides.

`setup.init_app` puts it on a Flask app.
"""
