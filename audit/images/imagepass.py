"""The parallel image pass: image files read by a pool of worker processes, or by a Dask cluster.

:func:`run_pass` reads a list of image files with
:func:`audit.images.imagefile.summarise_file`, ``workers`` readers at a time
(default: every core): a pool of worker processes started from a forkserver,
or a Dask cluster when ``scheduler`` is given (its workers must see the
dataset at the same absolute path). Results are the same either way and come
back in path order. The heap is tuned for image-sized buffers meanwhile
(:mod:`audit.images.heap`).

Crash isolation: the audit's own process decodes no image bytes unless
``workers=1`` is asked for (or it is itself a pool worker). A worker that
dies while reading (a segmentation fault or abort in a decoder, the kernel's
out-of-memory killer) costs only the image it was reading: the batches that
were in flight are read again, each in a process of its own that reports
image by image, and the image that kills its process is ``unreadable`` with
the signal as its reason (:mod:`audit.images.isolate`). On Dask, a batch
whose worker died is resubmitted image by image, and an image that fails
alone is ``unreadable`` with Dask's reason.
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
from audit.images.isolate import crash_hook, failed, read_isolated, summarise_batch
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
    hook = crash_hook()
    with stage("reading images", total=len(paths)):
        if scheduler is not None:
            return _run_dask(paths, scheduler, hook)
        import multiprocessing as mp

        with heap_for_images():
            if workers == 1 or mp.current_process().daemon:  # asked for, or a pool worker (no processes of its own)
                out = []
                for p in paths:
                    out.extend(summarise_batch([p], hook))
                    advance(len(out))
                return out
            n = workers if workers is not None else (os.cpu_count() or 1)
            return _run_pool(paths, max(1, min(n, len(paths))), hook)


def _run_pool(paths: Sequence[str], n: int, hook: tuple[str, str] | None) -> list[dict[str, Any]]:
    """A pool of ``n`` worker processes reads every batch; this process decodes nothing.

    Two batches are queued per worker so that none waits for more. A worker
    that dies breaks the pool: the batches in flight are read again, each in
    a process of its own (:func:`~audit.images.isolate.read_isolated`), and a
    fresh pool reads the batches not yet handed out.
    """
    batches = _batches(paths, n)
    done: list[list[dict[str, Any]] | None] = [None] * len(batches)
    todo = deque(range(len(batches)))
    ctx = _mp_context()

    def progress() -> None:
        advance(sum(len(batches[i]) for i, d in enumerate(done) if d is not None))

    while todo:
        suspects: list[int] = []
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=tune_heap) as pool:
            inflight: dict[Any, int] = {}
            broken = False
            while inflight or (todo and not broken):
                while not broken and todo and len(inflight) < 2 * n:
                    b = todo.popleft()
                    try:
                        inflight[pool.submit(summarise_batch, batches[b], hook)] = b
                    except BrokenProcessPool:
                        todo.appendleft(b)
                        broken = True
                if not inflight:
                    break
                for fut in wait(list(inflight), return_when=FIRST_COMPLETED).done:
                    b = inflight.pop(fut)
                    try:
                        done[b] = fut.result()
                    except BrokenProcessPool:  # a worker died: this batch may hold the culprit
                        suspects.append(b)
                        broken = True
                progress()
        for b in sorted(suspects):
            done[b] = read_isolated(batches[b], ctx, hook)
            progress()
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


def _run_dask(paths: Sequence[str], scheduler: Any, hook: tuple[str, str] | None) -> list[dict[str, Any]]:
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
        futures = client.map(summarise_batch, batches, hook=hook, pure=False)
        out: list[dict[str, Any]] = []
        for fut, batch in zip(futures, batches):
            try:
                out.extend(fut.result())
            except Exception:  # a remote failure (a killed worker...): read its images one by one
                out.extend(_dask_one(client, p, hook) for p in batch)
            advance(len(out))
        return out
    finally:
        if own:
            client.close()


def _dask_one(client: Any, path: str, hook: tuple[str, str] | None) -> dict[str, Any]:
    """One image on its own Dask task; ``unreadable`` with Dask's reason when that task fails too."""
    try:
        (res,) = client.submit(summarise_batch, [path], hook, pure=False).result()
    except Exception as err:
        why = str(err).splitlines()[0][:200] if str(err) else ""
        return failed(path, f"the Dask worker reading it failed ({type(err).__name__}{': ' + why if why else ''})")
    return res  # type: ignore[no-any-return]
