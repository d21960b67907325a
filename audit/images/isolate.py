"""Crash isolation for the image pass: images read in a process of their own, a death becomes a status.

:func:`read_isolated` reads a batch of image files in one child process
that sends back each summary as soon as it is made; when the child dies
(a segmentation fault or abort in a decoder, the out-of-memory killer),
the image it was reading is ``unreadable`` with the signal as its reason
and the rest of the batch is read in a fresh child. :func:`summarise_batch`
is what every reader runs (pool worker, isolated child, Dask task, or this
process with ``workers=1``).

Test hook: :func:`crash_hook` reads ``BIDSAUDIT_TEST_CRASH=HOW:MARKER``
(``HOW`` one of ``abort``, ``segv``, ``kill``) only when
``BIDSAUDIT_TEST_HOOKS=1`` is set too; a reader then really dies that way
on every file whose name contains ``MARKER``. The parent reads the variables
and passes the hook to its readers, so a forkserver or Dask worker started
earlier obeys it too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

from audit.images.heap import tune_heap
from audit.images.imagefile import summarise_file

__all__ = ["HOOK_FLAG", "HOOK_VAR", "crash_hook", "death_reason", "failed", "read_isolated", "summarise_batch"]

#: Set to ``1`` to let :data:`HOOK_VAR` act (tests only).
HOOK_FLAG = "BIDSAUDIT_TEST_HOOKS"
#: ``HOW:MARKER``: die by ``HOW`` (abort, segv, kill) on a file whose name contains ``MARKER``.
HOOK_VAR = "BIDSAUDIT_TEST_CRASH"
_HOWS = ("abort", "segv", "kill")


def crash_hook() -> tuple[str, str] | None:
    """``(how, marker)`` from the environment when the test flag is set, else ``None``."""
    if os.environ.get(HOOK_FLAG) != "1":
        return None
    how, _, marker = os.environ.get(HOOK_VAR, "").partition(":")
    return (how, marker) if how in _HOWS and marker else None


def _die(how: str) -> None:  # pragma: no cover - runs in a process that then dies
    if how == "abort":
        os.abort()
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    import ctypes

    ctypes.string_at(0)  # a real segmentation fault: read address 0


def summarise_batch(paths: Sequence[str], hook: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """:func:`~audit.images.imagefile.summarise_file` of each path (the test ``hook`` may kill the process)."""
    out = []
    for p in paths:
        if hook is not None and hook[1] in os.path.basename(p):
            _die(hook[0])
        out.append(summarise_file(p))
    return out


def failed(path: str, message: str) -> dict[str, Any]:
    """The result of an image that could not be read at all (``unreadable``, with ``message``)."""
    return {"content": {"status": "unreadable", "problem": message, "problem_code": "unreadable"},
            "bytes_read": 0, "opened": False, "key": None}


def death_reason(exitcode: int | None) -> str:
    """Why a reader process ended, in words: ``killed by SIGSEGV (segmentation fault)``...

    >>> death_reason(-9)
    'the process reading it was killed by SIGKILL (out of memory?)'
    >>> death_reason(3)
    'the process reading it exited with status 3'
    """
    if exitcode is None or exitcode >= 0:
        return f"the process reading it exited with status {exitcode}"
    sig = -exitcode
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    what = {"SIGSEGV": "segmentation fault", "SIGABRT": "aborted", "SIGKILL": "out of memory?",
            "SIGBUS": "bus error", "SIGFPE": "arithmetic fault", "SIGILL": "illegal instruction"}.get(name)
    return f"the process reading it was killed by {name}" + (f" ({what})" if what else "")


def _child_main(paths: Sequence[str], conn: Any, hook: tuple[str, str] | None) -> None:  # pragma: no cover
    tune_heap()
    for p in paths:
        conn.send(summarise_batch([p], hook)[0])
    conn.close()


def _one_child(paths: Sequence[str], ctx: Any, hook: tuple[str, str] | None) -> tuple[list[dict[str, Any]], int | None]:
    """The summaries a child sent before it ended, and its exit code when it did not send them all."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(list(paths), send, hook), daemon=True)
    proc.start()
    send.close()
    got: list[dict[str, Any]] = []
    try:
        while len(got) < len(paths):
            got.append(recv.recv())
    except (EOFError, OSError):
        pass
    finally:
        recv.close()
        proc.join()
    return got, (None if len(got) == len(paths) else proc.exitcode)


def read_isolated(paths: Sequence[str], ctx: Any, hook: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Every path read in child processes of ``ctx``; the one a child dies on is ``unreadable`` (why)."""
    out: list[dict[str, Any]] = []
    rest = list(paths)
    while rest:
        got, code = _one_child(rest, ctx, hook)
        out.extend(got)
        rest = rest[len(got):]
        if rest:
            out.append(failed(rest[0], death_reason(code)))
            rest = rest[1:]
    return out
