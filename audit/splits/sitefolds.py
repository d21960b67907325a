"""``bidsaudit split --leave-site-out``: one fold per site, that site held out as the fold's validation set.

Fold ``i`` (ClinicaDL's ``split-i/``) trains on every other site's
participants and validates on site ``i``'s, so the trainer's per-fold
results are leave-one-site-out results (the trainer recognises such folds
and reports them beside the pooled ones). The sites are the
``participants.tsv`` column ``site`` when it has one, else each subject's
scanner from its sidecars (:func:`audit.scanner.from_sidecars`, as the
audit's checks identify it). Every participant of a site is on one side
only, and a participant without a site or a label is left out (listed in
``split_params.json``). There is no separate test split (every site is
evaluated once, as validation of its fold: that validation set also chooses
the fold's best epoch, so hold out a test site of your own for an unbiased
figure); ``test.tsv`` is written empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit import __version__
from audit.bidsindex import index_dataset
from audit.scanner import from_sidecars, from_values
from audit.splits.plan import LAYOUTS, SplitError, SplitResult, _cell
from audit.splits.write import write_splits
from audit.values import is_missing, normalise_participant

__all__ = ["leave_site_out_result", "split_by_site"]


def leave_site_out_result(sites: dict[str, str], labels: dict[str, str], *, source: str,
                          excluded: dict[str, str] | None = None) -> SplitResult:
    """Folds that each hold out one site: ``sites`` and ``labels`` by participant.

    >>> r = leave_site_out_result({"sub-1": "A", "sub-2": "A", "sub-3": "B", "sub-4": "B", "sub-5": "C"},
    ...                           {f"sub-{i}": "x" for i in range(1, 6)}, source="t")
    >>> [sorted(p for p, s in f.items() if s == "validation") for f in r.folds]
    [['sub-1', 'sub-2'], ['sub-3', 'sub-4'], ['sub-5']]
    """
    excluded = dict(excluded or {})
    for p in sorted(set(labels) - set(sites)):
        excluded.setdefault(p, "no site")
    pool = sorted(p for p in sites if p in labels)
    for p in sorted(set(sites) - set(labels)):
        excluded.setdefault(p, "no label value")
    names = sorted({sites[p] for p in pool})
    if len(names) < 2:
        raise SplitError(None, f"leave-site-out needs two sites or more; found {len(names)} ({', '.join(names)})",
                         field="--leave-site-out", expected="participants from several sites (a 'site' column "
                         "in participants.tsv, or scanner fields in the sidecars)")
    folds = tuple({p: "validation" if sites[p] == s else "train" for p in pool} for s in names)
    params: dict[str, Any] = {"method": "leave-site-out", "tool": {"name": "bidsaudit", "version": __version__},
                              "site_source": source, "folds": len(folds),
                              "held_out_sites": {f"split-{i}": s for i, s in enumerate(names)},
                              "sizes": {s: sum(sites[p] == s for p in pool) for s in names},
                              "excluded": excluded}
    return SplitResult({p: "train+validation" for p in pool}, folds, frozenset(), {}, params, excluded,
                       ("site",), {p: {"site": sites[p]} for p in pool})


def split_by_site(dataset: str | Path, output: str | Path, *, label: str, layout: str = "clinicadl",
                  group: str | None = None) -> tuple[SplitResult, list[Path]]:
    """Index ``dataset`` and write its leave-one-site-out folds to ``output`` (ClinicaDL layout).

    With ``group`` (``--group``), a group whose participants were scanned at
    two sites would sit on both sides of a fold: that is refused, naming it.
    """
    if layout not in LAYOUTS:
        raise SplitError(None, None, field="layout", expected=" or ".join(LAYOUTS), got=repr(layout))
    index = index_dataset(dataset)
    table = index.participants
    if table is None:
        raise SplitError(index.root / "participants.tsv", "no readable participants.tsv",
                         expected="a participants.tsv with participant_id and the label column")
    if label not in table.columns:
        raise SplitError(index.root / "participants.tsv", f"no column '{label}'", field="--label",
                         expected="a column of participants.tsv: " + ", ".join(map(str, table.columns)))
    pids = [normalise_participant(_cell(p), validate=False) if _cell(p) else "" for p in table["participant_id"]]
    labels = {p: str(v) for p, v in zip(pids, table[label]) if p and not is_missing(v)}
    if "site" in table.columns and label != "site":
        ident = from_values({p: v for p, v in zip(pids, table["site"]) if p}, column="site")
        source = "participants.tsv column 'site'"
    else:
        ident = from_sidecars(index)
        source = f"the sidecars ({ident.describe()})"
    folders = set(index.subjects)
    excluded = {p: "listed in participants.tsv but has no folder in the dataset" for p in labels if p not in folders}
    sites = {p: s for p, s in ident.by_subject.items() if p in folders}
    if group is not None:
        if group not in table.columns:
            raise SplitError(index.root / "participants.tsv", f"no column '{group}'", field="--group",
                             expected="a column of participants.tsv: " + ", ".join(map(str, table.columns)))
        spans: dict[str, set[str]] = {}
        for p, g in zip(pids, table[group]):
            if p in sites and not is_missing(g):
                spans.setdefault(str(g), set()).add(sites[p])
        split_groups = sorted(g for g, s in spans.items() if len(s) > 1)
        if split_groups:
            raise SplitError(index.root / "participants.tsv", f"{len(split_groups)} group(s) of '{group}' span "
                             f"several sites ({', '.join(split_groups[:10])}): holding out one site would put a "
                             "group on both sides", field="--group", expected="groups scanned at one site each")
    result = leave_site_out_result(sites, {p: v for p, v in labels.items() if p in folders}, source=source,
                                   excluded=excluded)
    result.params["dataset"] = {"path": str(index.root), "name": index.name}
    result.params["label"] = label
    return result, write_splits(result, index, output, layout="clinicadl" if layout == "folder" else layout)
