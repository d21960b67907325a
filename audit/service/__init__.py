"""``bidsaudit serve``: an HTTP service that runs audits and keeps their history.

Layers, each importing only the ones below it::

    app.py       FastAPI routes: the JSON API and the server-rendered pages
    worker.py    the bounded pool that runs queued audits (audit.api)
    store.py     reads and writes audit records (one transaction per call)
    db.py        SQLAlchemy models and engine set-up; migrations/ (Alembic)
    security.py  tokens, CSRF, paths confined to the configured roots, upload limits
    settings.py  the server's configuration (one frozen dataclass)

Nothing here is imported by ``bidsaudit --help``: the CLI imports
:func:`audit.service.app.serve` inside the ``serve`` command only.
"""
