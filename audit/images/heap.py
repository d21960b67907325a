"""glibc heap tuning for the image pass: freed image-sized buffers kept for the next image (no-op without glibc).

:func:`tune_heap` raises glibc's ``mmap`` and trim thresholds so that the
20-100 MB buffers of one image are reused by the next instead of being
mapped, zeroed and unmapped each time; :class:`heap_for_images` does it for
the length of a pass in this process and then restores ordinary limits and
gives the memory back. Where there is no glibc (``mallopt`` missing), nothing
changes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["heap_for_images", "tune_heap"]

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: After the pass: where glibc's own sliding limits end up once large buffers have been freed (any mallopt
#: call turns the sliding off for good): buffers to 32 MB reused, free memory above 64 MB given back.
_GLIBC_AFTER = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20), (_M_TOP_PAD, 128 << 10))


def _mallopt(settings: Sequence[tuple[int, int]]) -> bool:
    """Set glibc malloc parameters; ``False`` where there is no glibc (nothing changes)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    for param, value in settings:
        mallopt(param, value)
    return True


def tune_heap() -> None:
    """Keep freed image-sized buffers in the heap for the next image.

    glibc gives every buffer over 32 MB its own fresh mapping and returns it
    on free, so each image paid page faults and the kernel's zeroing for
    its 20-100 MB of buffers (sys time 14 of about 145 ms per image at
    1 mm; 6 with this). Pool workers keep it; this process only during the pass.
    """
    _mallopt(((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))


class heap_for_images:
    """:func:`tune_heap` for the image pass in this process, then ordinary limits and the memory given back."""

    def __enter__(self) -> None:
        tune_heap()

    def __exit__(self, *exc: object) -> None:
        if _mallopt(_GLIBC_AFTER):
            import ctypes

            try:
                ctypes.CDLL(None).malloc_trim(0)
            except (OSError, AttributeError, TypeError):  # pragma: no cover - glibc has it
                pass
