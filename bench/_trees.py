"""Synthetic BIDS trees for the benchmarks, made once with ``../shared/make_synthetic_bids.py`` and reused."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKER = Path(__file__).resolve().parents[1].parent / "shared" / "make_synthetic_bids.py"


def make_tree(root: Path, n: int, sessions: int = 2, *, maker: Path = MAKER) -> Path:
    """Write the tree of ``n`` subjects at ``root``: made beside it, then renamed, so a half-made tree is never left."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(maker), str(tmp / "ds"), "--subjects", str(n), "--sessions", str(sessions)],
                   check=True, capture_output=True)
    if root.exists():
        shutil.rmtree(root)
    (tmp / "ds").rename(root)
    tmp.rmdir()
    print(f"# made {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root
