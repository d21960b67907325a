"""The parallel image pass: image files read by this process and a worker pool, or by a Dask cluster.

:func:`run_pass` reads a list of image files with
:func:`audit.images.imagefile.summarise_file`, ``workers`` readers at a time
(default: every core): this process and a pool of ``workers - 1`` processes
started from a forkserver (1 runs in this process alone), or a Dask cluster
when ``scheduler`` is given (its workers must see the dataset at the same
absolute path). Results are the same either way and come back in path order.
The heap is tuned for image-sized buffers meanwhile (:mod:`audit.images.heap`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from audit.errors import InputError
from audit.images.heap import heap_for_images, tune_heap
from audit.images.imagefile import summarise_file
from audit.progress import advance, stage

__all__ = ["DASK_CONNECT_TIMEOUT", "FORKSERVER_PRELOAD", "run_pass"]

#: How long to wait for a Dask scheduler given by address.
DASK_CONNECT_TIMEOUT = "20s"
#: The modules every image needs, imported once in the forkserver rather than once per worker.
FORKSERVER_PRELOAD = ["audit.images.imagepass", "nibabel", "nibabel.orientations", "scipy.ndimage",
                      "scipy.spatial.transform"]


def run_pass(paths: Sequence[str], *, workers: int | None, scheduler: Any) -> list[dict[str, Any]]:
    """:func:`~audit.images.imagefile.summarise_file` of every path, in path order (module docstring).

    Raises :class:`~audit.errors.InputError` when ``scheduler`` cannot be reached.
    """
    if not paths:
        return []
    with stage("reading images", total=len(paths)):
        if scheduler is not None:
            return _run_dask(paths, scheduler)
        import multiprocessing as mp

        n = workers if workers is not None else (os.cpu_count() or 1)
        n = max(1, min(n, len(paths)))
        with heap_for_images():
            if n == 1 or mp.current_process().daemon:  # a pool worker may not start processes of its own
                out = []
                for p in paths:
                    out.append(summarise_file(p))
                    advance(len(out))
                return out
            return _run_pool(paths, n)


def _run_pool(paths: Sequence[str], n: int) -> list[dict[str, Any]]:
    """``n`` readers: this process and a pool of ``n - 1`` worker processes.

    This process reads batches from the front while the pool starts (a
    fresh forkserver imports numpy, nibabel and scipy: about half a second)
    and then alongside it; the workers get batches from the back, two queued
    per worker so that none waits for this process to hand out more. A
    worker that dies (out of memory?) costs the images of its batches
    (``unreadable``), never the run.
    """
    batches = _batches(paths, n)
    done: list[list[dict[str, Any]] | None] = [None] * len(batches)
    todo = deque(range(len(batches)))
    inflight: dict[Any, int] = {}
    broken = False
    with ProcessPoolExecutor(max_workers=n - 1, mp_context=_mp_context(), initializer=tune_heap) as pool:

        def collect(futures: Any) -> None:
            for fut in futures:
                b = inflight.pop(fut)
                try:
                    done[b] = fut.result()
                except BrokenProcessPool:
                    done[b] = [_failed(p, "the worker process reading it died (out of memory?)") for p in batches[b]]
            advance(sum(len(batches[i]) for i, d in enumerate(done) if d is not None))

        while todo or inflight:
            collect([f for f in inflight if f.done()])
            while not broken and todo and len(inflight) < 2 * (n - 1):
                b = todo.pop()
                try:
                    inflight[pool.submit(_summarise_batch, batches[b])] = b
                except BrokenProcessPool:  # the pool is gone: this process reads the rest
                    todo.append(b)
                    broken = True
            if todo:
                b = todo.popleft()
                done[b] = _summarise_batch(batches[b])
                advance(sum(len(batches[i]) for i, d in enumerate(done) if d is not None))
            elif inflight:
                collect(wait(list(inflight), return_when=FIRST_COMPLETED).done)
    return [r for batch in done for r in batch or ()]


def _batches(paths: Sequence[str], n: int) -> list[list[str]]:
    size = max(1, min(16, len(paths) // (n * 8)))  # small enough that the last batches end together
    return [list(paths[i:i + size]) for i in range(0, len(paths), size)]


def _mp_context() -> Any:
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _run_dask(paths: Sequence[str], scheduler: Any) -> list[dict[str, Any]]:
    try:
        from dask.distributed import Client
    except ImportError as err:  # pragma: no cover - dask is a dependency
        raise InputError(None, f"--scheduler needs dask.distributed ({err})", field="--scheduler") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT) if own else scheduler  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise InputError(None, f"cannot reach the Dask scheduler at {scheduler!r} ({err})",
                         field="--scheduler", expected="a reachable address such as tcp://host:8786") from None
    try:
        nthreads = sum(client.nthreads().values()) or 1
        batches = _batches(paths, nthreads)
        futures = client.map(_summarise_batch, batches, pure=False)
        out: list[dict[str, Any]] = []
        for fut, batch in zip(futures, batches):
            try:
                out.extend(fut.result())
            except Exception as err:  # a remote failure (killed worker...): those images were not read
                out.extend(_failed(p, f"the Dask worker reading it failed ({type(err).__name__})") for p in batch)
            advance(len(out))
        return out
    finally:
        if own:
            client.close()


def _failed(path: str, message: str) -> dict[str, Any]:
    return {"content": {"status": "unreadable", "problem": message, "problem_code": "unreadable"},
            "bytes_read": 0, "opened": False, "key": None}


def _summarise_batch(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [summarise_file(p) for p in paths]
