"""The official validator over a whole dataset: one run, or shards of subjects merged into that run's result.

:func:`validate_with_shards` is what ``bidsaudit validate`` and ``audit``
call. It runs the validator once (:func:`audit.validator.run_validator`)
when the dataset has at most :data:`SHARD_MIN_SUBJECTS` subjects and neither
a shard size nor a scheduler asks for shards (:func:`should_shard`); otherwise it validates shards of
:data:`DEFAULT_SHARD_SIZE` subjects (``--shard-size``) and the top view in
parallel (:mod:`audit.validatorshards`), and merges them into the result of
one run. Why those numbers: one run of the validator needs more than 1 GiB
above a few thousand subjects and cannot write its JSON past about 1.2
million issues, and each shard pays a fixed cost of about 1.6 s of CPU
besides about 12.9 ms per subject; measured figures are in
``docs/validation.md``.

With a :class:`~audit.validatorstore.ShardStore` (on by default, beside the
hash cache), a shard whose files did not change since a stored run is not
validated again, and one whose subjects partly changed is validated for
those subjects only where :mod:`audit.validatorpatch` allows; the run says
how much was (:attr:`ValidatorRun.sharding`).

A shard that lacks a datatype the dataset has (say ``fmap``, which makes the
validator recommend ``B0FieldSource`` in every MRI sidecar) would be judged
by different rules than in one run; such a shard also sees *witness*
subjects that have the missing datatypes, whose own issues are dropped; so
does every shard without ``sub-emptyroom``, whose recordings MEG sidecars name
(``AssociatedEmptyRoom``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.errors import InputError, ValidatorError
from audit.hashing import HashCache
from audit.progress import stage
from audit.validator import (
    VALIDATOR_DEFAULT_MAX_ROWS,
    ValidatorRun,
    _check_config,
    _version,
    rows_option,
    run_validator,
    validator_command,
)
from audit.validatorpatch import changed_subjects, combine, fits, patchable, without
from audit.validatorshards import (
    ShardOptions,
    ShardResult,
    View,
    dask_runner,
    dataset_subjects,
    failed_summary,
    local_runner,
    merge,
    plan_shards,
    run_shard,
    run_views,
)
from audit.validatorstore import ShardStore, subject_digests, view_ident, view_key

__all__ = ["DEFAULT_MEMORY_MIB", "DEFAULT_SHARD_SIZE", "SHARD_MIN_SUBJECTS", "should_shard", "subject_datatypes",
           "sharded_run", "validate_with_shards", "witnesses_for"]

#: Above this many subjects validation is sharded by default.
SHARD_MIN_SUBJECTS = 1000
#: Subjects per shard by default.
DEFAULT_SHARD_SIZE = 1000
#: Subjects whose files other subjects' sidecars name (MEG's ``AssociatedEmptyRoom``): a witness in every shard.
REFERENCED_SUBJECTS = ("sub-emptyroom",)
#: The V8 heap of one shard's validator process, MiB, by default.
DEFAULT_MEMORY_MIB = 1024


def subject_datatypes(dataset: Path, subjects: Sequence[str]) -> dict[str, frozenset[str]]:
    """The datatype folders (``anat``, ``fmap``...) of each subject, sessions looked into."""
    out: dict[str, frozenset[str]] = {}
    for sub in subjects:
        found: set[str] = set()
        stack = [Path(dataset) / sub]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for e in it:
                        if e.is_dir():
                            if e.name.startswith("ses-"):
                                stack.append(Path(e.path))
                            else:
                                found.add(e.name)
            except OSError:
                continue
        out[sub] = frozenset(found)
    return out


def witnesses_for(subjects: Sequence[str], datatypes: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    """Subjects outside ``subjects`` that bring the datatypes the dataset has and they lack (first in order).

    >>> dt = {"sub-1": frozenset({"anat"}), "sub-2": frozenset({"anat", "fmap"}), "sub-3": frozenset({"anat"})}
    >>> witnesses_for(["sub-1"], dt), witnesses_for(["sub-2", "sub-3"], dt)
    (('sub-2',), ())
    >>> witnesses_for(["sub-1"], {"sub-1": frozenset({"meg"}), "sub-emptyroom": frozenset({"meg"})})
    ('sub-emptyroom',)
    """
    have: set[str] = set().union(*(datatypes.get(s, frozenset()) for s in subjects))
    missing = set().union(*datatypes.values()) - have
    chosen: list[str] = []
    inside = set(subjects)
    for sub in sorted(datatypes):
        if not missing:
            break
        if sub not in inside and datatypes[sub] & missing:
            chosen.append(sub)
            missing -= datatypes[sub]
    for sub in REFERENCED_SUBJECTS:  # other subjects' sidecars point into it (AssociatedEmptyRoom)
        if sub in datatypes and sub not in inside and sub not in chosen:
            chosen.append(sub)
    return tuple(chosen)


def should_shard(n_subjects: int, *, shard_size: int | None = None, scheduler: Any = None) -> bool:
    """Shard when asked (a shard size, a scheduler), never with ``shard_size=0``, else above
    :data:`SHARD_MIN_SUBJECTS` subjects.

    >>> should_shard(20_000), should_shard(16), should_shard(16, shard_size=4), should_shard(20_000, shard_size=0)
    (True, False, True, False)
    """
    if shard_size == 0 or n_subjects == 0:
        return False
    return shard_size is not None or scheduler is not None or n_subjects > SHARD_MIN_SUBJECTS


def validate_with_shards(dataset: Path, *, ignore_nifti_headers: bool = False, config: Path | None = None,
                         timeout: float | None = None, n_files: int | None = None, shard_size: int | None = None,
                         jobs: int | None = None, scheduler: Any = None, memory_mib: int | None = None,
                         store: ShardStore | None = None, cache: HashCache | None = None,
                         keep_issues: bool = False) -> ValidatorRun:
    """Validate ``dataset`` with the official validator, sharded when that pays (see the module's docstring).

    Parameters
    ----------
    shard_size
        Subjects per shard; ``0`` runs the validator once; ``None`` chooses.
    jobs
        Validator processes at once on this machine (default: the CPU count).
    scheduler
        A ``dask.distributed`` address or client: shards run on its workers.
    memory_mib
        The V8 heap limit of each shard's validator process (default
        :data:`DEFAULT_MEMORY_MIB`); a shard over it is split and retried.
    store
        Stored shard results (default: the one beside the hash cache).
    """
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputError(dataset, "no such folder", expected="a BIDS dataset folder")
    if shard_size is not None and shard_size < 0:
        raise InputError(None, field="--shard-size", expected="0 (one validator run) or a number of subjects",
                         got=str(shard_size))
    subjects = dataset_subjects(dataset)
    if not should_shard(len(subjects), shard_size=shard_size, scheduler=scheduler):
        return run_validator(dataset, ignore_nifti_headers=ignore_nifti_headers, config=config, timeout=timeout,
                             n_files=n_files)
    with stage("running the official BIDS validator on shards of subjects"):
        return sharded_run(dataset, subjects, ignore_nifti_headers=ignore_nifti_headers, config=config, timeout=timeout,
                        shard_size=shard_size or DEFAULT_SHARD_SIZE, jobs=jobs or os.cpu_count() or 1,
                        scheduler=scheduler, memory_mib=memory_mib or DEFAULT_MEMORY_MIB, store=store,
                        cache=cache, keep_issues=keep_issues)[0]


def sharded_run(dataset: Path, subjects: list[str], *, ignore_nifti_headers: bool = False, config: Path | None = None,
                timeout: float | None = None, shard_size: int = DEFAULT_SHARD_SIZE, jobs: int = 1,
                scheduler: Any = None, memory_mib: int = DEFAULT_MEMORY_MIB, store: ShardStore | None = None,
                cache: HashCache | None = None, keep_issues: bool = False
                ) -> tuple[ValidatorRun, list[dict[str, Any]] | None]:
    """Validate ``subjects`` of ``dataset`` in shards and merge; also every issue of the merged run
    (with ``keep_issues``, which also bypasses the store: tests compare them file for file)."""
    t0 = time.perf_counter()
    if config is not None:
        _check_config(Path(config))
    cmd = validator_command()
    max_rows, corrections = rows_option(dataset)
    options = ShardOptions(command=tuple(cmd), ignore_nifti_headers=ignore_nifti_headers,
                           config=str(Path(config).resolve()) if config else None, max_rows=max_rows,
                           memory_mib=memory_mib, timeout=timeout, keep_issues=keep_issues)
    digests: dict[str, str] = {}
    if store is None:
        store = ShardStore()
    if keep_issues:
        datatypes = subject_datatypes(dataset, subjects)
    else:
        top_digest, digests, datatypes = subject_digests(dataset, subjects, cache or HashCache.default(), store)
    shards = [View(s, witnesses=witnesses_for(s, datatypes)) for s in plan_shards(subjects, shard_size)]
    alone = sorted({v.witnesses for v in shards if v.witnesses})
    views = [View((), top=True), *shards, *(View(w) for w in alone)]
    n = len(shards)

    # incremental: stored results of views whose files are unchanged
    keys: list[str | None] = [None] * len(views)
    idents: list[str | None] = [None] * len(views)
    stored: dict[int, ShardResult] = {}
    if not keep_issues:
        opts = {"validator": _version(cmd), "ignore_nifti_headers": ignore_nifti_headers, "max_rows": max_rows,
                "config": _config_digest(config)}
        every_datatype = set().union(*datatypes.values()) if datatypes else set()
        for i, v in enumerate(views):
            if v.top:
                keys[i] = view_key(opts, top_digest, [], kind="top")
            else:
                keys[i] = view_key(opts, top_digest, {s: digests[s] for s in (*v.subjects, *v.witnesses)},
                                   kind="witnessed:" + ",".join(v.witnesses) if v.witnesses else "shard")
                if 0 < i <= n:
                    idents[i] = view_ident(opts, top_digest, v.subjects, v.witnesses, every_datatype)
            found = store.get(keys[i]) if keys[i] else None
            if found is not None:
                stored[i] = found
    # a changed shard whose stored result can be kept for its unchanged subjects: only the changed ones run
    patched: dict[int, tuple[ShardResult, tuple[str, ...]]] = {}
    if 0 in stored:
        for i in range(1, n + 1):
            if i not in stored:
                patch = _patch(store, idents[i], views[i], digests, stored[0])
                if patch is not None:
                    patched[i] = patch
    todo = [i for i in range(len(views)) if i not in stored]
    run_as = [View(patched[i][1], witnesses=witnesses_for(patched[i][1], datatypes)) if i in patched else views[i]
              for i in todo]

    if scheduler is not None:
        runner, close = dask_runner(dataset, options, scheduler)
    else:
        runner, close = local_runner(dataset, options, jobs), (lambda: None)
    per_view: dict[int, list[ShardResult]] = {i: [r] for i, r in stored.items()}
    try:
        fresh, retries = run_views(run_as, runner, lambda subs: witnesses_for(subs, datatypes))
        whole_again = []  # patched shards whose changed subjects disagree with the rest on a top-level issue
        for i, results in zip(todo, fresh):
            if i in patched and not fits(patched[i][0], results, per_view[0][0]):
                whole_again.append(i)
                del patched[i]
            else:
                per_view[i] = [patched[i][0], *results] if i in patched else results
        if whole_again:
            again, more = run_views([views[i] for i in whole_again], runner,
                                    lambda subs: witnesses_for(subs, datatypes))
            retries += more
            per_view.update(zip(whole_again, again))
    finally:
        close()
    for i in todo:
        results = per_view[i]
        if i in patched:
            whole = combine(results[0], results[1], per_view[0][0], views[i].subjects)
        else:
            whole = results[0] if len(results) == 1 and results[0].failure is None else None
        if whole is not None and keys[i]:  # a view validated whole (or patched cleanly) is stored under its key
            store.put(keys[i], whole, ident=idents[i],
                      digests={s: digests[s] for s in (*views[i].subjects, *views[i].witnesses)} if idents[i] else None)
        for r in results:
            r.parts, r.packed = {}, b""  # stored; the merge does not need them
    top = per_view[0][0]
    if top.failure is not None:
        raise ValidatorError(f"the official BIDS validator gave no result on the dataset's top level: {top.failure}")
    shard_results = [r for i in range(1, n + 1) for r in per_view[i]]
    alone_runs = {views[i].subjects: per_view[i][0] for i in range(n + 1, len(views))
                  if per_view[i] and per_view[i][0].failure is None}
    for r in shard_results:  # a witnessed shard whose witnesses' own run failed: its witnesses' share stays
        if r.witnesses and r.witnesses not in alone_runs:
            alone_runs[r.witnesses] = _solo(dataset, r.witnesses, options)
    ok = [r for r in shard_results if r.failure is None]
    failed = [r for r in shard_results if r.failure is not None]
    codes, kept = merge(top, ok, alone_runs)
    lost = failed_summary(failed)
    if lost is not None:
        codes[lost.code] = lost
        corrections.append(f"the validator gave no result for {sum(len(r.subjects) for r in failed):,} subjects "
                           f"in {len(failed)} shard(s), each retried alone and split: reported as {lost.code}")
    validated_shards = [i for i in todo if 0 < i <= n]
    sharding = {
        "subjects": len(subjects), "shard_size": shard_size, "shards": n,
        "validated_shards": len(validated_shards), "reused_shards": n - len(validated_shards),
        "validated_subjects": sum(len(patched[i][1]) if i in patched else len(views[i].subjects)
                                  for i in validated_shards),
        "patched_shards": len(patched),
        "top_view": "validated" if 0 in todo else "reused", "witness_views": len(alone),
        "retries": retries, "failed_shards": len(failed), "jobs": None if scheduler is not None else jobs,
        "scheduler": None if scheduler is None else str(getattr(scheduler, "scheduler", scheduler)),
        "memory_mib": memory_mib, "store": str(store.path) if store.path else "memory",
    }
    corrections.append(
        f"validated as {n:,} shard(s) of up to {shard_size:,} subjects and a top-level view, merged into the "
        f"result of one run; {len(validated_shards):,} shard(s) ({sharding['validated_subjects']:,} subjects) "
        f"validated now, {n - len(validated_shards):,} reused from stored results of unchanged files"
        + (f"; {len(patched):,} of those validated for their changed subjects only, the rest of each reused"
           if patched else ""))
    if store.problem:
        corrections.append(store.problem)
    errors = any(s.reported("error") for s in codes.values())
    summary = {k: v for k, v in top.summary.items() if k != "totalFiles"}  # the top view's count is not the dataset's
    run = ValidatorRun(version=_version(cmd), exit_code=16 if errors else 0, seconds=time.perf_counter() - t0,
                       codes=codes, corrections=tuple(corrections), output_format="json", summary=summary,
                       max_rows=VALIDATOR_DEFAULT_MAX_ROWS if max_rows is None else max_rows,
                       command=("--shard-size", str(shard_size), str(dataset)), sharding=sharding)
    issues = [i for r in ok for i in (r.issues or [])] + kept if keep_issues else None
    return run, issues


def _patch(store: ShardStore, ident: str | None, view: View, digests: Mapping[str, str], top: ShardResult
           ) -> tuple[ShardResult, tuple[str, ...]] | None:
    """The stored result of ``view``'s shard without its changed subjects, and those subjects; or ``None``
    when the shard must be validated whole (:func:`audit.validatorpatch.patchable`)."""
    old_key = store.latest(ident) if ident else None
    old = store.get(old_key) if old_key else None
    found = store.parts(old_key) if old is not None and old_key else None
    if old is None or found is None:
        return None
    old.parts, old_digests = found
    changed = changed_subjects(view.subjects, view.witnesses, old_digests, digests)
    if changed is None or tuple(old.subjects) != view.subjects or not patchable(old, top, changed):
        return None
    return without(old, changed), tuple(changed)


def _solo(dataset: Path, witnesses: tuple[str, ...], options: ShardOptions) -> ShardResult:
    return run_shard(str(dataset), witnesses, options)


def _config_digest(config: Path | None) -> str | None:
    import hashlib

    if config is None:
        return None
    return hashlib.sha256(Path(config).read_bytes()).hexdigest()
