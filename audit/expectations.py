"""A user's Great Expectations suites, run on the participants table and on the per-image table.

``--expectations SUITE.json`` (on ``audit``, ``validate`` and ``readiness``;
the option may be repeated) names an expectation suite saved as JSON.
Each expectation that fails becomes an ``expectations.failed`` finding
(:mod:`audit.checks.expectations`) with Great Expectations' own result in
evidence. great_expectations is imported only when a suite is given (its
import takes seconds), and it is an optional dependency: the
``expectations`` extra (``pip install 'bidsaudit[expectations]'``).

Suite files
    Either format is accepted:

    * Great Expectations 1.x (what ``suite.to_json_dict()`` writes)::

        {"name": "participants_suite",
         "expectations": [{"type": "expect_column_values_to_be_between",
                           "kwargs": {"column": "age", "min_value": 18, "max_value": 100}}],
         "meta": {"bidsaudit": {"table": "participants"}}}

    * the classic (0.x) format, converted on reading::

        {"expectation_suite_name": "...",
         "expectations": [{"expectation_type": "...", "kwargs": {...}}]}

    An expectation may carry ``"severity": "critical" | "warning" | "info"``
    (Great Expectations 1.x): ``warning`` and ``info`` give findings of that
    severity; ``critical`` (the default) gives the check's configured
    severity (``error`` unless ``bidsaudit.toml`` says otherwise).

Which table a suite checks
    ``meta.bidsaudit.table``: ``"participants"`` (the default) or
    ``"images"``. Without it, a suite whose name ends in ``images`` checks
    the images table, any other the participants table.

The tables (:func:`participants_table`, :func:`images_table`)
    *participants*: ``participants.tsv`` (without a dataset: the rows of the
    split files, with their ``split`` column). ``n/a`` and empty cells are
    missing values; a column whose every present value is a number is
    numeric, the others text.

    *images*: one row per NIfTI image of the dataset: ``path``,
    ``participant_id``, ``session_id``, ``datatype``, ``suffix``,
    ``extension``, each BIDS entity by its key (``task``, ``acq``, ``run``...,
    as text), every scalar field of the image's sidecar by its BIDS name
    (``RepetitionTime``, ``Manufacturer``...; lists and objects are left
    out), and, when images are read (not ``--ignore-nifti-headers``), the
    image pass's summary: ``status``, ``size``, ``dtype``, ``orientation``,
    ``dim_x``/``dim_y``/``dim_z``/``n_volumes``, ``voxel_x``/``voxel_y``/
    ``voxel_z`` (mm), ``min``, ``max``, ``mean``, ``std``, ``p01``, ``p50``,
    ``p99``, ``foreground_fraction``, ``nonzero_fraction`` and the quality
    metrics of :mod:`audit.images.features` (``snr``, ``snr_dietrich``,
    ``cnr``, ``cjv``, ``fg_volume_ml``, ``fg_p01`` ... ``fg_p99``).

Bad input (exit code 2, one line naming the file and where): a suite file
that is missing, not valid JSON (line and column), not of the shape above,
or naming an expectation type Great Expectations does not know or
arguments it rejects.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.bidsindex import entity_pairs, read_json
from audit.errors import InputError, did_you_mean
from audit.stats import is_missing

if TYPE_CHECKING:
    import pandas as pd

    from audit.context import AuditContext

__all__ = ["TABLES", "Suite", "load_suite", "load_suites", "participants_table", "images_table", "run_suite"]

TABLES = ("participants", "images")
#: Unexpected values (and their rows) kept in a finding's evidence.
MAX_UNEXPECTED = 20
_SEVERITIES = {"critical": None, "warning": "warning", "info": "info"}
_EXPECTED_SHAPE = ('a JSON object {"name": ..., "expectations": [{"type": ..., "kwargs": {...}}, ...]} '
                   '(or the classic {"expectation_suite_name": ..., "expectations": [{"expectation_type": ..., '
                   '"kwargs": {...}}]})')


@dataclass(frozen=True)
class Suite:
    """An expectation suite read from a file (plain data; no Great Expectations object)."""

    path: str
    name: str
    table: str
    expectations: tuple[dict[str, Any], ...]  # {"type", "kwargs", "meta", "severity"}
    format: str  # "gx1" | "classic"


# --------------------------------------------------------------------------- reading
def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and shape-check one suite file (no Great Expectations import).

    Raises
    ------
    InputError
        Missing or unreadable file, invalid JSON (with line and column), wrong shape.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file", field="--expectations", expected="an expectation suite JSON file")
    if not p.is_file():
        raise InputError(p, "is not a file", field="--expectations", expected="an expectation suite JSON file")
    data = read_json(p)
    if not isinstance(data, dict):
        raise InputError(p, expected=_EXPECTED_SHAPE, got=f"a JSON {_json_type(data)}")
    classic = "expectation_suite_name" in data or any(
        isinstance(e, dict) and "expectation_type" in e for e in data.get("expectations") or [])
    name = data.get("expectation_suite_name") if classic else data.get("name")
    if name is None:
        name = p.stem
    if not isinstance(name, str):
        raise InputError(p, field="name" if not classic else "expectation_suite_name", expected="a string",
                         got=repr(name))
    items = data.get("expectations")
    if not isinstance(items, list):
        raise InputError(p, field="expectations", expected="a list of expectations",
                         got="nothing" if items is None else f"a JSON {_json_type(items)}")
    expectations = []
    type_key = "expectation_type" if classic else "type"
    for i, item in enumerate(items):
        where = f"expectations[{i}]"
        if not isinstance(item, dict):
            raise InputError(p, field=where, expected="an object with 'type' and 'kwargs'",
                             got=f"a JSON {_json_type(item)}")
        etype = item.get(type_key, item.get("type") if classic else None)
        if not isinstance(etype, str) or not etype:
            raise InputError(p, field=f"{where}.{type_key}", expected="the expectation type, e.g. "
                             "'expect_column_values_to_not_be_null'", got=repr(etype))
        kwargs = item.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise InputError(p, field=f"{where}.kwargs", expected="an object", got=f"a JSON {_json_type(kwargs)}")
        meta = item.get("meta") or {}
        if not isinstance(meta, dict):
            raise InputError(p, field=f"{where}.meta", expected="an object", got=f"a JSON {_json_type(meta)}")
        severity = item.get("severity", "critical")
        if severity not in _SEVERITIES:
            raise InputError(p, field=f"{where}.severity", expected="critical, warning or info", got=repr(severity))
        expectations.append({"type": etype, "kwargs": kwargs, "meta": meta, "severity": severity})
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(p, field="meta", expected="an object", got=f"a JSON {_json_type(meta)}")
    ours = meta.get("bidsaudit") or {}
    if not isinstance(ours, dict):
        raise InputError(p, field="meta.bidsaudit", expected='an object such as {"table": "images"}',
                         got=f"a JSON {_json_type(ours)}")
    table = ours.get("table")
    if table is None:
        table = "images" if name.lower().endswith("images") else "participants"
    if table not in TABLES:
        raise InputError(p, field="meta.bidsaudit.table", expected=" or ".join(repr(t) for t in TABLES),
                         got=repr(table))
    return Suite(str(p), name, table, tuple(expectations), "classic" if classic else "gx1")


def _json_type(x: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(x), type(x).__name__)


def load_suites(paths: Sequence[str | os.PathLike[str]]) -> tuple[Suite, ...]:
    """Read every suite and check each expectation against Great Expectations (imports it).

    Raises
    ------
    InputError
        As :func:`load_suite`; also great_expectations missing, an unknown
        expectation type, or arguments Great Expectations rejects.
    """
    suites = tuple(load_suite(p) for p in paths)
    if suites:
        for s in suites:
            _build(s)
    return suites


# --------------------------------------------------------------------------- Great Expectations
def _gx() -> Any:
    """Import great_expectations quietly (no usage statistics, no deprecation noise, no log tracebacks)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import great_expectations as gx
    except ImportError as err:
        raise InputError(None, f"--expectations needs great_expectations ({err}); install it with "
                         "pip install 'bidsaudit[expectations]'", field="--expectations") from None
    # Great Expectations logs a traceback when it rejects a configuration; we report that ourselves
    logging.getLogger("great_expectations").setLevel(logging.CRITICAL + 1)
    return gx


def _build(suite: Suite) -> list[Any]:
    """The Great Expectations expectation objects; bad types or arguments raise :class:`InputError`."""
    _gx()
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    out = []
    for i, e in enumerate(suite.expectations):
        where = f"expectations[{i}]"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                conf = ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=e["meta"] or None)
                out.append(conf.to_domain_obj())
        except Exception as err:  # Great Expectations raises its own errors and pydantic's
            raise InputError(suite.path, _gx_reason(e["type"], err), field=where) from None
    return out


def _gx_reason(etype: str, err: Exception) -> str:
    name = type(err).__name__
    if name == "ExpectationNotFoundError":
        try:
            from great_expectations.expectations.registry import (
                list_registered_expectation_implementations,
            )

            known = list(list_registered_expectation_implementations())
        except Exception:  # pragma: no cover - the registry moved
            known = []
        return f"unknown expectation type '{etype}'{did_you_mean(etype, known)}"
    text = " ".join(str(err).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{etype}: invalid arguments ({text})"


def run_suite(suite: Suite, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Validate ``table`` against ``suite``; one JSON-ready record per expectation, in suite order.

    Each record: ``success``, ``type``, ``kwargs``, ``severity``, ``result`` (Great Expectations'
    result dict, unexpected lists cut to :data:`MAX_UNEXPECTED`, non-finite numbers as ``None``),
    ``rows`` (0-based row numbers of the unexpected values, at most :data:`MAX_UNEXPECTED`) and
    ``exception`` (the message when the expectation could not be evaluated, e.g. a missing column).
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    built = _build(suite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        gsuite = gx.ExpectationSuite(name=suite.name, expectations=built)
        source = context.data_sources.add_pandas("bidsaudit")
        asset = source.add_dataframe_asset(suite.table)
        batch = asset.add_batch_definition_whole_dataframe("whole table")
        gsuite = context.suites.add(gsuite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"bidsaudit {suite.name}", data=batch, suite=gsuite))
        result = definition.run(batch_parameters={"dataframe": table},
                                result_format={"result_format": "SUMMARY",
                                               "partial_unexpected_count": MAX_UNEXPECTED})
    # Great Expectations does not keep the suite's order in its results: match them by expectation id
    ids = [getattr(e, "id", None) for e in gsuite.expectations]
    by_id = {}
    for r in result.results:
        d = r.to_json_dict()
        by_id[(d.get("expectation_config") or {}).get("id")] = d
    if None in ids or len(by_id) != len(ids) or set(ids) != set(by_id):  # pragma: no cover - a GE change
        raise RuntimeError(f"Great Expectations returned {len(by_id)} results for {len(ids)} expectations")
    records = []
    for e, eid in zip(suite.expectations, ids):
        d = by_id[eid]
        info = d.get("exception_info") or {}
        exception = _exception_message(info)
        res = _clean(d.get("result") or {})
        rows = res.pop("partial_unexpected_index_list", None)
        records.append({"success": bool(d.get("success")) and exception is None, "type": e["type"],
                        "kwargs": _clean(e["kwargs"]), "severity": e["severity"], "result": res,
                        "rows": [int(x) for x in rows if isinstance(x, int)][:MAX_UNEXPECTED]
                        if isinstance(rows, list) else [],
                        "exception": exception})
    return records


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """The first exception message of Great Expectations' exception info (flat or keyed by metric)."""
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for v in info.values():
        if isinstance(v, Mapping) and v.get("raised_exception"):
            return str(v.get("exception_message"))
    return None


def _clean(x: Any, depth: int = 0) -> Any:
    """JSON-safe: non-finite floats -> None, lists cut to MAX_UNEXPECTED, no tracebacks."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if depth > 6:
        return str(x)
    if isinstance(x, Mapping):
        return {str(k): _clean(v, depth + 1) for k, v in x.items() if "traceback" not in str(k)}
    if isinstance(x, (list, tuple)):
        return [_clean(v, depth + 1) for v in list(x)[:MAX_UNEXPECTED]]
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return _clean(x.item(), depth)
    except ImportError:  # pragma: no cover
        pass
    return str(x)


# --------------------------------------------------------------------------- tables
def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """``n/a`` and empty cells missing; all-number columns numeric."""
    import pandas as pd

    out = {}
    for c in df.columns:
        col = [None if v is None or (isinstance(v, str) and is_missing(v)) or (isinstance(v, float) and v != v)
               else v for v in df[c].tolist()]
        present = [v for v in col if v is not None]
        nums = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce") if present else None
        if present and nums is not None and not nums.isna().any() and not all(isinstance(v, bool) for v in present):
            out[c] = pd.to_numeric(pd.Series(col, dtype=object), errors="coerce")
        else:
            out[c] = pd.Series(col, dtype=object)
    return pd.DataFrame(out, columns=list(df.columns))


def participants_table(ctx: AuditContext) -> pd.DataFrame:
    """participants.tsv (or, without a dataset, the split files' rows), typed (module docstring)."""
    import pandas as pd

    if ctx.index is not None and ctx.index.participants is not None:
        return _typed(ctx.index.participants)
    rows: list[dict[str, Any]] = []
    if ctx.index is None and ctx.splits is not None:
        for t in ctx.splits.tables:
            for r in t.rows:
                rows.append({"participant_id": r.participant_id, "session_id": r.session_id, "split": t.name,
                             **({"fold": t.fold} if t.fold is not None else {}), **dict(r.extra)})
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["participant_id"]
    return _typed(pd.DataFrame(rows, columns=columns))


_SUMMARY_COLUMNS = ("status", "size", "dtype", "orientation", "min", "max", "mean", "std", "p01", "p50", "p99",
                    "foreground_fraction", "nonzero_fraction")
_IQM_COLUMNS = ("snr", "snr_dietrich", "cnr", "cjv", "fg_volume_ml", "fg_p01", "fg_p05", "fg_p25", "fg_p50",
                "fg_p75", "fg_p95", "fg_p99")


def images_table(ctx: AuditContext) -> pd.DataFrame:
    """One row per image (module docstring); empty without a dataset."""
    import pandas as pd

    if ctx.index is None:
        return pd.DataFrame({"path": []})
    summaries = ctx.image_summaries().by_path() if ctx.missing("images") is None else {}
    rows = []
    entity_keys: set[str] = set()
    for r in ctx.index.images():
        row: dict[str, Any] = {"path": r.path, "participant_id": f"sub-{r.subject}" if r.subject else None,
                               "session_id": f"ses-{r.session}" if r.session else None, "datatype": r.datatype,
                               "suffix": r.suffix, "extension": r.extension}
        for k, v in entity_pairs(r.entities):
            if k not in ("sub", "ses"):
                row.setdefault(k, v)
                entity_keys.add(k)
        for k, v in ctx.index.sidecar(r.path).items():
            if isinstance(v, (str, int, float, bool)) and k not in row:
                row[k] = v
        s = summaries.get(r.path)
        if s is not None:
            for k in _SUMMARY_COLUMNS:
                row[k] = getattr(s, k)
            shape = list(s.shape or [])
            zooms = list(s.zooms or [])
            for i, axis in enumerate("xyz"):
                row[f"dim_{axis}"] = shape[i] if i < len(shape) else None
                row[f"voxel_{axis}"] = zooms[i] if i < len(zooms) else None
            row["n_volumes"] = math.prod(shape[3:]) if len(shape) > 3 else (1 if shape else None)
            iqm = s.iqm or {}
            for k in _IQM_COLUMNS:
                row[k] = iqm.get(k)
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["path"]
    table = pd.DataFrame(rows, columns=columns)
    # entities and names stay text ("01" is a run label, not a number); sidecar and image figures are typed
    text = {"path", "participant_id", "session_id", "datatype", "suffix", "extension"} | entity_keys
    typed = _typed(table[[c for c in columns if c not in text]])
    for c in columns:
        if c in text:
            typed[c] = pd.Series(table[c].tolist(), dtype=object)
    return typed[columns]
