"""``bidsaudit serve``: an HTTP service that runs audits and keeps their history.

Layers, each importing only the ones below it::

    app.py       FastAPI routes: the JSON API; serve()
    pages.py     the server-rendered pages
    deps.py      what the API and the pages share: access checks (token roles), the audit asked for, uploads
    limits.py    rate limits (per token, per address: 429) and the request body limit (413), as ASGI middleware
    retention.py the retention policy: results and uploads pruned by age and total size
    submission.py  checks a submission and queues it
    worker.py    the bounded pool that runs queued audits (audit.api)
    store.py     reads and writes audit records (one transaction per call)
    db.py        SQLAlchemy models and engine set-up; migrations/ (Alembic)
    security.py  tokens, CSRF, paths confined to the configured roots, upload limits
    settings.py  the server's configuration (one frozen dataclass), the tokens file and its roles
    warmup.py    preloaded by the worker processes' forkserver
    openapi.py   writes schemas/openapi.json

The service takes options through :func:`audit.config.load_options` and runs
audits through :mod:`audit.api`; it never imports :mod:`audit.cli`.

Nothing here is imported by ``bidsaudit --help``: the CLI imports
:func:`audit.service.app.serve` inside the ``serve`` command only.
"""

__all__: list[str] = []
