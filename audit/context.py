"""The audit context: plain data every check reads, built once by the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex
    from audit.splits import SplitSet
    from audit.validator import ValidatorRun

__all__ = ["AuditOptions", "AuditContext"]


@dataclass(frozen=True)
class AuditOptions:
    """What the user asked for (CLI options, after validation)."""

    label: str | None = None
    site: str | None = None
    group: str | None = None
    pretrain: str | None = None
    ignore_nifti_headers: bool = False
    validator_config: Path | None = None
    run_validator: bool = True
    check_images: bool = True
    workers: int | None = None  # None: all local cores
    scheduler: str | None = None  # dask.distributed address
    expectations: tuple[str, ...] = ()  # Great Expectations suite files (--expectations)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditContext:
    """Everything a check may look at.

    ``index`` is ``None`` when no dataset was given (a reviewer's audit of
    published split files), ``splits`` when no split was given. ``cache``
    holds results computed once per audit and shared by checks (the image
    pass, for example), so no image is read twice in one audit.
    """

    options: AuditOptions = field(default_factory=AuditOptions)
    index: DatasetIndex | None = None
    splits: SplitSet | None = None
    validator: ValidatorRun | None = None
    pretrain_subjects: frozenset[str] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

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

    def image_summaries(self) -> Any:
        """The per-image pass (headers, decoded-content hashes, statistics), computed once."""
        if "images" not in self.cache:
            from audit.images.summary import summarise_images

            assert self.index is not None
            self.cache["images"] = summarise_images(
                self.index, ignore_headers=self.options.ignore_nifti_headers,
                workers=self.options.workers, scheduler=self.options.scheduler,
            )
        return self.cache["images"]
