"""The audit context: what every check reads, and the data the checks share, each computed once.

The runner builds one :class:`AuditContext` per audit. Besides the inputs
(options, dataset index, splits, validator run) it holds the shared data
of the audit as typed, lazily computed attributes: a check asks for
``ctx.images`` or ``ctx.scanner_identity`` and the first use computes it,
so no image is read twice in one audit and the checks may run in any
order. Data that a check module computes for other checks (the image
features, the shift family) is kept with :meth:`AuditContext.once`, keyed
by the computing function itself (no string keys).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from audit import hashing, scanner
from audit.config import AuditConfig, AuditOptions
from audit.images import confirmpairs, nullcache
from audit.images import summary as image_pass

if TYPE_CHECKING:
    import pandas as pd

    from audit.bidsindex import DatasetIndex
    from audit.splits import SplitSet, SplitTable
    from audit.validator import ValidatorRun

__all__ = ["AuditOptions", "AuditContext"]

T = TypeVar("T")


@dataclass
class AuditContext:
    """Everything a check may look at.

    ``index`` is ``None`` when no dataset was given (a reviewer's audit of
    published split files), ``splits`` when no split was given.
    ``checks_ran`` is filled by the runner (the ids of the checks that ran).
    """

    options: AuditOptions = field(default_factory=AuditOptions)
    index: DatasetIndex | None = None
    splits: SplitSet | None = None
    validator: ValidatorRun | None = None
    pretrain_subjects: frozenset[str] | None = None
    checks_ran: tuple[str, ...] = ()
    _once: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _frames: dict[tuple[str, int | None], tuple[SplitTable, pd.DataFrame]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def missing(self, need: str) -> str | None:
        """Why ``need`` is not available (``None`` when it is)."""
        if need == "dataset" and self.index is None:
            return "no dataset given"
        if need == "splits" and self.splits is None:
            return "no splits given"
        if need == "validator" and self.validator is None:
            return "no dataset given" if self.index is None else "the BIDS validator was not run"
        if need == "images":
            if self.index is None:
                return "no dataset given"
            if not self.options.check_images:
                return "image checks were turned off"
        if need == "participants" and (self.index is None or self.index.participants is None):
            return "no dataset given" if self.index is None else "the dataset has no readable participants.tsv"
        if need == "group" and not self.options.group:
            return "no --group given"
        if need == "expectations" and not self.options.expectations:
            return "no --expectations given"
        if need == "pretrain" and self.pretrain_subjects is None:
            return "no --pretrain given"
        if need == "label" and not self.label_column:
            return "no label column (--label) given or found"
        return None

    @property
    def config(self) -> AuditConfig:
        """The validated configuration of this audit."""
        return self.options.config

    def thresholds(self, key: str, defaults: dict[str, Any]) -> dict[str, Any]:
        """``defaults`` with the configured overrides of ``key`` (validated when the configuration was read)."""
        out = dict(defaults)
        for k, v in self.options.config.thresholds.get(key, {}).items():
            d = defaults.get(k)
            out[k] = type(d)(v) if isinstance(d, (int, float)) and not isinstance(d, bool) else v
        return out

    @property
    def label_column(self) -> str | None:
        if self.options.label:
            return self.options.label
        if self.index is not None and self.index.participants is not None and "diagnosis" in self.index.participants:
            return "diagnosis"
        if self.splits is not None:
            for table in self.splits.tables:
                if table.label_column:
                    return table.label_column
        return None

    # ------------------------------------------------------------------ shared data, computed on first use
    @cached_property
    def images(self) -> image_pass.ImageSummaries:
        """The per-image pass (headers, decoded-content hashes, statistics): one read of every image."""
        assert self.index is not None
        return image_pass.summarise_images(self.index, ignore_headers=self.options.ignore_nifti_headers,
                                           workers=self.options.workers, scheduler=self.options.scheduler)

    def image_summaries(self) -> image_pass.ImageSummaries:
        """:attr:`images` (kept for callers of the method)."""
        return self.images

    @cached_property
    def fingerprint(self) -> hashing.Fingerprint:
        """The dataset's content fingerprint (every file hashed once, through the on-disk hash cache)."""
        assert self.index is not None
        return hashing.dataset_fingerprint(self.index, hashing.HashCache.default())

    @cached_property
    def scanner_identity(self) -> scanner.ScannerIdentity:
        """The site/scanner identity of every participant (:mod:`audit.scanner`)."""
        return scanner.identify(self)

    def confirmations(self, candidates: tuple[confirmpairs.Candidate, ...], settings: tuple[tuple[str, Any], ...],
                      ) -> tuple[list[confirmpairs.Verdict], dict[str, confirmpairs.GroupNull], dict[str, Any]]:
        """The confirmation stage's verdicts on near-duplicate candidate pairs, computed once per audit.

        Reads only the images of the candidate pairs and of each candidate
        group's random distinct pairs (:func:`audit.images.confirmpairs.confirm_candidates`);
        nothing when there is no candidate.
        """
        return self.once(_confirm_stage, candidates, settings)

    def split_frame(self, table: SplitTable) -> pd.DataFrame:
        """``table.to_frame()`` (participant_id, session_id, label, file, line, ...), built once per audit."""
        key = (table.name, table.fold)
        hit = self._frames.get(key)
        if hit is None or hit[0] is not table:
            hit = self._frames[key] = (table, table.to_frame())
        return hit[1]

    def once(self, compute: Callable[..., T], *args: Hashable) -> T:
        """``compute(self, *args)``, computed on the first call and kept for the rest of the audit."""
        key = (compute, *args)
        if key not in self._once:
            self._once[key] = compute(self, *args)
        hit: T = self._once[key]
        return hit

    def computed(self, compute: Callable[..., T], *args: Hashable) -> T | None:
        """What :meth:`once` kept for ``compute(*args)``, or ``None`` when no check asked for it."""
        hit: T | None = self._once.get((compute, *args))
        return hit


def _confirm_stage(ctx: AuditContext, candidates: tuple[confirmpairs.Candidate, ...],
                   settings: tuple[tuple[str, Any], ...],
                   ) -> tuple[list[confirmpairs.Verdict], dict[str, confirmpairs.GroupNull], dict[str, Any]]:
    if not candidates or ctx.index is None:
        return [], {}, {"candidates": 0, "confirmations": 0, "images_read": 0, "seconds": 0.0}
    groups = {c.group for c in candidates}
    members: dict[str, list[tuple[str, str]]] = {g: [] for g in groups}
    for s in ctx.images:
        group = s.suffix or "?"
        if group in members and s.status == "ok" and s.subject:
            members[group].append((s.path, s.subject))
    hashes = {s.path: s.content_hash for s in ctx.images if s.content_hash}
    return confirmpairs.confirm_candidates(ctx.index.root, candidates, members, settings=dict(settings),
                                           hashes=hashes, null_cache=nullcache.NullCache(),
                                           workers=ctx.options.workers)
