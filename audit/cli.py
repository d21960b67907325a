"""The ``bidsaudit`` command line: parse options, call the library, print.

Every command body is short: it builds options, calls a function of
:mod:`audit.api` (or another library module), writes the result and the
report atomically, prints a summary and exits 0 (pass), 1 (an error finding:
the gate is closed) or 2 (could not run; the code is the exception class's
``exit_code``, see :mod:`audit.errors`).

This module is the program's entry point, and the one module that imports
the library inside its functions: each command imports what it calls when it
runs, so that ``bidsaudit --help`` (and typer building the commands) loads
typer and nothing of the library (about 0.1 s instead of 0.45 s of CPU for
the ~120 modules and numpy). ``tests/test_layout.py`` allows this for
``audit.cli`` and its two parts (:mod:`audit.clibase`, :mod:`audit.clitrain`)
alone; every library module imports the project at module level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from audit import __version__
from audit.clibase import (
    ConfigOpt,
    ExpectationsOpt,
    FormatOpt,
    HtmlOpt,
    IgnoreHeadersOpt,
    JobsOpt,
    JsonOpt,
    JunitOpt,
    OutDirOpt,
    OutputFormat,
    QuietOpt,
    SarifOpt,
    ShardSizeOpt,
    ValidatorConfigOpt,
    ValidatorMemoryOpt,
    busy,
    configured,
    reported_errors,
    suite_paths,
)
from audit.clitrain import cache_app, export, predict, train

__all__ = ["app", "main"]

app = typer.Typer(
    name="bidsaudit",
    help="Audit a BIDS dataset and its train/validation/test splits before deep learning: "
    "BIDS validity, image quality, leakage, confounds, shift and readiness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bidsaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """bidsaudit: stop neuroimaging deep learning from fooling itself."""


@app.command()
def validate(
    dataset: Annotated[Path, typer.Argument(help="The BIDS dataset folder.")],
    ignore_nifti_headers: IgnoreHeadersOpt = False,
    validator_config: ValidatorConfigOpt = None,
    no_validator: Annotated[bool, typer.Option("--no-validator", help="Skip the official validator.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Image reader processes (default: "
                                                   "all cores); 1 reads in this process: no crash isolation.")]
    = None,
    shard_size: ShardSizeOpt = None,
    jobs: JobsOpt = None,
    validator_memory: ValidatorMemoryOpt = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="A dask.distributed scheduler address "
                                                     "for the validator's shards and the image pass.")] = None,
    config: ConfigOpt = None,
    expectations: ExpectationsOpt = None,
    json_out: JsonOpt = None,
    html_out: HtmlOpt = None,
    junit_out: JunitOpt = None,
    sarif_out: SarifOpt = None,
    fmt: FormatOpt = OutputFormat.text,
    out_dir: OutDirOpt = Path("bidsaudit-reports"),
    quiet: QuietOpt = False,
) -> None:
    """BIDS validity (the official validator) plus the checks that need no split."""
    from audit.clioutput import emit
    from audit.api import validate_dataset
    from audit.errors import InputError

    with reported_errors():
        if validator_config is not None and not validator_config.is_file():
            raise InputError(validator_config, "no such file", field="--validator-config",
                             expected="the validator's JSON config file")
        options = configured(dataset if dataset.is_dir() else None, None, config, quiet=quiet,
                               ignore_nifti_headers=ignore_nifti_headers, validator_config=validator_config,
                               run_validator=not no_validator, workers=workers,
                               expectations=suite_paths(expectations), shard_size=shard_size,
                               validator_jobs=jobs, validator_memory_mib=validator_memory, scheduler=scheduler)
        with busy(f"validating {dataset} (validator, images, tables)", quiet=quiet, json_out=json_out, fmt=fmt):
            result = validate_dataset(dataset, options)
        emit(result, json_out=json_out, html_out=html_out, out_dir=out_dir, stem="validate", quiet=quiet,
             junit_out=junit_out, sarif_out=sarif_out, fmt=fmt)
    raise typer.Exit(result.exit_code)


@app.command()
def audit(
    dataset: Annotated[Optional[Path], typer.Argument(help="The BIDS dataset folder (omit to audit split files alone).")]
    = None,
    splits: Annotated[Path, typer.Option("--splits", help="Split files: a folder of TSV/CSV, one table with a "
                                         "'split' column, a ClinicaDL split-N/ layout, nnU-Net splits_final.json or "
                                         "dataset.json, a MONAI datalist, or image-path lists.")]
    = Path("--"),
    id_pattern: Annotated[Optional[str], typer.Option("--id-pattern", help="Participant id in each image path: a "
                                                      "regular expression (its first group, or the whole match).")]
    = None,
    path_column: Annotated[Optional[str], typer.Option("--path-column", help="The column (or datalist key) of "
                                                       "image paths (default: image, path, filename or file).")]
    = None,
    label: Annotated[Optional[str], typer.Option("--label", help="Label column (default: diagnosis if present).")]
    = None,
    site: Annotated[Optional[str], typer.Option("--site", help="Site/scanner column (default: from sidecars).")]
    = None,
    group: Annotated[Optional[str], typer.Option("--group", help="Related participants that must stay together.")]
    = None,
    pretrain: Annotated[Optional[Path], typer.Option("--pretrain", help="Participants used for pretraining: any "
                                                     "split input (a MONAI datalist, a path list, a participant "
                                                     "TSV) or a model folder with train+validation.tsv.")] = None,
    ignore_nifti_headers: IgnoreHeadersOpt = False,
    validator_config: ValidatorConfigOpt = None,
    no_validator: Annotated[bool, typer.Option("--no-validator", help="Skip the official validator.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Image reader processes (default: "
                                                   "all cores); 1 reads in this process: no crash isolation.")]
    = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="A dask.distributed scheduler address "
                                                     "for the image pass and the validator's shards.")] = None,
    shard_size: ShardSizeOpt = None,
    jobs: JobsOpt = None,
    validator_memory: ValidatorMemoryOpt = None,
    certificate: Annotated[Optional[Path], typer.Option("--certificate", help="Where to write the certificate on "
                                                        "pass (default: bidsaudit-certificate.json beside the "
                                                        "split files).")] = None,
    no_certificate: Annotated[bool, typer.Option("--no-certificate", help="Do not write a certificate.")] = False,
    config: ConfigOpt = None,
    expectations: ExpectationsOpt = None,
    json_out: JsonOpt = None,
    html_out: HtmlOpt = None,
    junit_out: JunitOpt = None,
    sarif_out: SarifOpt = None,
    fmt: FormatOpt = OutputFormat.text,
    out_dir: OutDirOpt = Path("bidsaudit-reports"),
    quiet: QuietOpt = False,
) -> None:
    """Everything: validation, leakage, confounds, shift; without DATASET, every check the split tables allow."""
    from audit.clioutput import emit
    from audit.api import audit_splits, certify
    from audit.certificate import certificate_target
    from audit.errors import InputError
    from audit.policy import certificate_refusal

    with reported_errors():
        if str(splits) == "--":
            raise InputError(None, "missing option", field="--splits", expected="the split files to audit")
        options = configured(dataset if dataset is not None and dataset.is_dir() else None, splits, config,
                               quiet=quiet, label=label, site=site, group=group,
                               pretrain=str(pretrain) if pretrain else None,
                               id_pattern=id_pattern, path_column=path_column,
                               ignore_nifti_headers=ignore_nifti_headers, validator_config=validator_config,
                               run_validator=not no_validator, workers=workers, scheduler=scheduler,
                               expectations=suite_paths(expectations), shard_size=shard_size,
                               validator_jobs=jobs, validator_memory_mib=validator_memory)
        target = certificate_target(splits, certificate, reviewer=dataset is None, out_dir=out_dir)
        with busy(f"auditing {splits}" + (f" against {dataset}" if dataset else ""), quiet=quiet, json_out=json_out,
                  fmt=fmt):
            result = audit_splits(dataset, splits, options)
        emit(result, json_out=json_out, html_out=html_out, out_dir=out_dir, stem="audit", quiet=quiet,
             junit_out=junit_out, sarif_out=sarif_out, fmt=fmt)
        refusal = None if no_certificate else certificate_refusal(result.status, result.coverage, options.config)
        if result.status == "pass" and refusal is not None:
            typer.echo(f"Certificate not written: {refusal}", err=True)
        elif result.status == "pass" and not no_certificate:
            try:
                path = certify(result, options, splits, target)
            except OSError as err:
                if certificate is not None:  # asked for: not writing it is a failure to run
                    raise InputError(certificate, f"cannot write the certificate: {err.strerror or err}") from None
                # the default place is beside the split files, which a reviewer may not own (a published,
                # read-only folder): the audit's verdict stands, and the message says how to get one
                typer.echo(f"Certificate not written: cannot write beside the split files ({err.strerror or err}); "
                           "give --certificate PATH", err=True)
            else:
                if json_out != "-" and not quiet:
                    typer.echo(f"Certificate: {path}")
    raise typer.Exit(result.exit_code)


@app.command()
def readiness(
    dataset: Annotated[Path, typer.Argument(help="The BIDS dataset folder.")],
    label: Annotated[Optional[str], typer.Option("--label", help="The label column of the learning task.")]
    = None,
    site: Annotated[Optional[str], typer.Option("--site", help="Site/scanner column (default: from sidecars).")]
    = None,
    ignore_nifti_headers: IgnoreHeadersOpt = False,
    no_validator: Annotated[bool, typer.Option("--no-validator", help="Skip the official validator.")] = False,
    config: ConfigOpt = None,
    expectations: ExpectationsOpt = None,
    json_out: JsonOpt = None,
    html_out: HtmlOpt = None,
    junit_out: JunitOpt = None,
    sarif_out: SarifOpt = None,
    fmt: FormatOpt = OutputFormat.text,
    out_dir: OutDirOpt = Path("bidsaudit-reports"),
    quiet: QuietOpt = False,
) -> None:
    """Data readiness score (0-100) and level for a learning task on label column COL."""
    from audit.clioutput import emit
    from audit.api import readiness_dataset

    with reported_errors():
        options = configured(dataset if dataset.is_dir() else None, None, config, quiet=quiet,
                               label=label or "diagnosis",
                               site=site, ignore_nifti_headers=ignore_nifti_headers,
                               run_validator=not no_validator, expectations=suite_paths(expectations))
        with busy(f"measuring readiness of {dataset}", quiet=quiet, json_out=json_out, fmt=fmt):
            result = readiness_dataset(dataset, options)
        emit(result, json_out=json_out, html_out=html_out, out_dir=out_dir, stem="readiness", quiet=quiet,
             junit_out=junit_out, sarif_out=sarif_out, fmt=fmt)
    raise typer.Exit(result.exit_code)


@app.command()
def split(
    dataset: Annotated[Path, typer.Argument(help="The BIDS dataset folder.")],
    label: Annotated[str, typer.Option("--label", help="Label column to stratify on.")] = "diagnosis",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the split files into.")]
    = Path("splits"),
    group: Annotated[Optional[str], typer.Option("--group", help="Participants of one group stay together.")]
    = None,
    test_size: Annotated[float, typer.Option("--test-size", help="Fraction held out for testing.")] = 0.2,
    val_size: Annotated[float, typer.Option("--val-size", help="Fraction for validation (train/val/test).")] = 0.2,
    folds: Annotated[int, typer.Option("--folds", min=0, help="k-fold over the non-test pool (0: one "
                                       "train/validation/test split).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same split).")] = 0,
    balance: Annotated[str, typer.Option("--balance", help="Comma-separated covariates to balance.")]
    = "age,sex,site",
    layout: Annotated[str, typer.Option("--layout", help="folder, clinicadl or both.")] = "both",
    leave_site_out: Annotated[bool, typer.Option("--leave-site-out", help="One fold per site, that site held out "
                                                 "as the fold's validation set (ClinicaDL layout).")] = False,
) -> None:
    """Write leak-free, stratified, subject-level (or group-level) splits."""
    from audit.splits import SplitPlan, split_dataset, summary as split_summary

    with reported_errors():
        if leave_site_out:
            from audit.splits.sitefolds import split_by_site

            result, files = split_by_site(dataset, output, label=label, layout=layout, group=group)
            for name, site in result.params["held_out_sites"].items():
                typer.echo(f"{name}: site {site} held out ({result.params['sizes'][site]} participants)")
            typer.echo(f"wrote {len(files)} files under {output}")
            return
        plan = SplitPlan(label=label, group=group, test_size=test_size, val_size=val_size, folds=folds, seed=seed,
                         balance=tuple(c.strip() for c in balance.split(",") if c.strip()))
        result, files = split_dataset(dataset, plan, output, layout=layout)
        for line in split_summary(result):
            typer.echo(line)
        typer.echo(f"wrote {len(files)} files under {output}")


app.command()(train)
app.command()(predict)
app.command()(export)


@app.command()
def report(
    result_json: Annotated[Path, typer.Argument(metavar="RESULT.json", help="A saved JSON result.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML report.")],
) -> None:
    """Render a saved JSON result as a self-contained HTML page."""
    from audit.bidsindex import read_json
    from audit.errors import InputError
    from audit.fsutil import atomic_write_text
    from reports import render as html_report

    with reported_errors():
        if not result_json.is_file():
            raise InputError(result_json, "no such file", expected="a JSON result written by --json")
        data = read_json(result_json)
        if not isinstance(data, dict) or "findings" not in data:
            raise InputError(result_json, expected="a bidsaudit JSON result (with a 'findings' list)")
        _check_result_schema(result_json, data)
        path = atomic_write_text(output, html_report.render_report(data))
        typer.echo(f"HTML report: {path}")


def _check_result_schema(path: Path, data: dict) -> None:  # type: ignore[type-arg]
    from audit.errors import InputError
    from schemas import json_schema

    import jsonschema

    try:
        jsonschema.validate(data, json_schema("result"))
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise InputError(path, err.message, field=where, expected="a result matching schemas/result.schema.json") \
            from None


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    root: Annotated[Optional[list[Path]], typer.Option("--root", help="A folder the server may read datasets "
                                                       "and split files from (repeatable; none: uploads only).")]
    = None,
    database: Annotated[Optional[str], typer.Option("--database", help="SQLAlchemy URL: sqlite:///FILE or "
                                                    "postgresql://USER@HOST/DB (default: a SQLite file in the "
                                                    "state folder).")] = None,
    state_dir: Annotated[Optional[Path], typer.Option("--state-dir", help="Where the default database and "
                                                      "uploaded split files live (default: "
                                                      "$XDG_STATE_HOME/bidsaudit).")] = None,
    tokens_file: Annotated[Optional[Path], typer.Option("--tokens-file", help="Bearer tokens allowed to submit, "
                                                        "one a line (name:token); also BIDSAUDIT_TOKEN.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Reading results and pages needs a token too.")]
    = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Audits run at once.")] = 2,
    audit_timeout: Annotated[Optional[float], typer.Option("--audit-timeout", min=1, help="Seconds an audit may "
                                                           "run before it is stopped and marked failed.")] = None,
    allowed_host: Annotated[Optional[list[str]], typer.Option("--allowed-host", help="A Host header to accept "
                                                              "(repeatable; default on loopback: 127.0.0.1, "
                                                              "localhost, ::1; elsewhere: any).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="A dask.distributed scheduler address: "
                                                     "every audit's image pass runs on that cluster.")] = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option("--ssl-certfile", help="Serve HTTPS: the PEM "
                                                         "certificate (chain), with --ssl-keyfile.")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option("--ssl-keyfile", help="The certificate's PEM private "
                                                        "key.")] = None,
    rate_limit: Annotated[float, typer.Option("--rate-limit", min=0, help="Requests a minute per client address "
                                              "(0: none; per server process).")] = 600,
    token_rate_limit: Annotated[float, typer.Option("--token-rate-limit", min=0, help="Requests a minute per token "
                                                    "(0: none; per server process).")] = 600,
    retention_days: Annotated[Optional[float], typer.Option("--retention-days", min=0, help="Finished audits older "
                                                            "than this lose their result and uploads (default: "
                                                            "kept).")] = None,
    retention_size: Annotated[Optional[str], typer.Option("--retention-size", help="Results and uploads kept at "
                                                          "most, e.g. 500M or 20G; the oldest go first.")] = None,
) -> None:
    """HTTP service: submit audits, browse results, reports and each dataset's history."""
    from audit.service.settings import (
        TOKEN_ENV,
        Settings,
        default_state_dir,
        parse_size,
        read_tokens_file,
        require_service_extra,
    )

    with reported_errors():
        require_service_extra(database)
        from audit.service.app import serve as run_server

        tokens = dict(read_tokens_file(tokens_file)) if tokens_file else {}
        if os.environ.get(TOKEN_ENV):
            tokens[os.environ[TOKEN_ENV]] = frozenset({"admin"})  # the operator's own token
        settings = Settings(roots=tuple(root or ()), state_dir=state_dir or default_state_dir(),
                            database_url=database, tokens=tokens, public_read=not private,
                            workers=workers, audit_timeout=audit_timeout,
                            allowed_hosts=tuple(allowed_host or ()), scheduler=scheduler,
                            rate_per_address=rate_limit, rate_per_token=token_rate_limit,
                            retention_days=retention_days,
                            retention_bytes=parse_size(retention_size, "--retention-size") if retention_size else None)
        run_server(settings, host=host, port=port, echo=lambda m: typer.echo(m, err=True),
                   ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile)


app.add_typer(cache_app, name="cache")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to write the demo dataset and reports.")]
    = Path("bidsaudit-demo"),
    subjects: Annotated[int, typer.Option("--subjects", min=8, max=2000, help="Number of subjects.")] = 40,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing demo folder.")] = False,
) -> None:
    """Make a small synthetic multi-site BIDS dataset and run the pipeline on it."""
    from audit.demo import run_demo

    with reported_errors():
        code = run_demo(directory, subjects=subjects, seed=seed, force=force, echo=typer.echo)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
