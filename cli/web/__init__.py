"""`mqi web`: a read-only dashboard and JSON API over the views, with `/metrics`.

Served by Starlette (``app.py``) on uvicorn (``server.py``), by `mqi web` or by the daemon
itself when the configuration has a ``web:`` section. Every page and API call but
``/healthz`` needs the token (``auth.py``); pages and the API read the views and the live
file only (``data.py``), so the dashboard never slows the daemon down.
"""
