"""Progress of long work, reported to whoever watches: a sink the application floor installs, silent otherwise.

Library code says what it is doing (:func:`stage`) and how far it is
(:func:`advance`); it never prints. The CLI installs a sink (a rich progress
bar on a terminal, :func:`audit.outputs.terminal.working`) for the duration
of a command with :func:`reporting`; without one, both calls do nothing, so
the JSON output, CI logs, ``--format github``, the service and the Python API
see no progress output at all.

>>> seen = []
>>> with reporting(lambda what, done, total: seen.append((what, done, total))):
...     with stage("reading images", total=3):
...         advance(2)
>>> seen
[('reading images', 0, 3), ('reading images', 2, 3)]
>>> advance(1)  # no sink: nothing happens
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Sink", "advance", "reporting", "stage"]

#: ``sink(what, done, total)``: ``total`` is ``None`` when the amount of work is not known.
Sink = Callable[[str, int, "int | None"], None]

_SINK: ContextVar[Sink | None] = ContextVar("bidsaudit_progress_sink", default=None)
_STAGE: ContextVar[tuple[str, int | None] | None] = ContextVar("bidsaudit_progress_stage", default=None)


@contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Send progress to ``sink`` inside the block (``None``: nowhere)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextmanager
def stage(what: str, total: int | None = None) -> Iterator[None]:
    """Long work named ``what`` (``total`` steps when known) runs inside the block."""
    token = _STAGE.set((what, total))
    sink = _SINK.get()
    if sink is not None:
        sink(what, 0, total)
    try:
        yield
    finally:
        _STAGE.reset(token)


def advance(done: int) -> None:
    """``done`` steps of the current stage are finished."""
    sink, current = _SINK.get(), _STAGE.get()
    if sink is not None and current is not None:
        sink(current[0], done, current[1])
