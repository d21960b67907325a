"""``bidsaudit train --nproc-per-node N``: torchrun's launcher, called in-process, without its tracebacks.

Starts N copies of ``bidsaudit train`` (the same arguments) through
``torch.distributed``'s elastic launcher with torchrun's ``--standalone``
settings (a c10d rendezvous on ``localhost:0``, i.e. a free port; no restarts),
and turns a failed child into bidsaudit's exit code: every rank prints its
own one-line message (``bidsaudit: refused: ...``), and the launcher's error
report, a Python traceback, is not shown. Exit 1 when a rank refused (the
gate, a leak), 2 for anything else (bad input, a rank killed by a signal).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Sequence

from audit.errors import InputError

__all__ = ["launch"]


def launch(nproc: int, argv: Sequence[str], *, echo: Callable[[str], None]) -> int:
    """Run ``python -m audit.cli <argv>`` on ``nproc`` local processes; the exit code to return."""
    if os.environ.get("WORLD_SIZE"):
        raise InputError(None, "already running under torchrun", field="--nproc-per-node",
                         expected="either torchrun or --nproc-per-node, not both")
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    except ImportError:
        raise InputError(None, "training needs PyTorch, which is not installed",
                         expected="pip install torch==2.13.0 and pip install 'bidsaudit[train]'") from None
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default: N processes do not oversubscribe the CPUs
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "audit.cli", *argv)
    except ChildFailedError as err:
        codes = {rank: f.exitcode for rank, f in err.failures.items()}
        if 2 in codes.values():
            return 2
        if 1 in codes.values():
            return 1  # a rank refused (the launcher stops the others with a signal)
        for rank, code in sorted(codes.items()):
            echo(f"bidsaudit: error: rank {rank} " + (f"was killed by signal {-code}" if code < 0
                                                       else f"exited with code {code}"))
        return 2
    finally:
        quiet.setLevel(level)
    return 0
