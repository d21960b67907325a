"""One scanner identity: ``bidsaudit split --balance site`` and ``confound.label_site`` count the same sites."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from audit.cli import app
from tests.builders import make_bids

runner = CliRunner()

GE_SHORT = {"Manufacturer": "GE", "ManufacturersModelName": "DISCOVERY_MR750", "MagneticFieldStrength": 3}
GE_LONG = {"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturersModelName": "Discovery MR750",
           "MagneticFieldStrength": 3.0}
SIEMENS = {"Manufacturer": "SIEMENS", "ManufacturersModelName": "Prisma", "MagneticFieldStrength": 2.89}


def test_split_balances_the_sites_the_audit_counts(tmp_path):
    subjects = [f"{i:02d}" for i in range(1, 19)]
    rows = {s: {"age": str(60 + i), "sex": "MF"[i % 2], "diagnosis": ["CN", "AD"][i % 2]}
            for i, s in enumerate(subjects)}
    root = make_bids(tmp_path / "ds", subjects, participants=rows, images=False)
    for i, s in enumerate(subjects):  # one GE scanner spelt two ways, and a Siemens
        meta = (GE_SHORT, GE_LONG, SIEMENS)[i % 3]
        (root / f"sub-{s}" / "anat" / f"sub-{s}_T1w.json").write_text(json.dumps(meta))
    out = tmp_path / "splits"
    made = runner.invoke(app, ["split", str(root), "--label", "diagnosis", "--balance", "site",
                               "--output", str(out), "--layout", "folder"])
    assert made.exit_code == 0, made.output
    params = json.loads((out / "split_params.json").read_text())
    assert params["covariates"] == {"site": "categorical"}
    split_sites = set(params["balance"]["splits"]["train"]["covariates"]["site"]["proportions"])

    report = tmp_path / "r.json"
    audited = runner.invoke(app, ["audit", str(root), "--splits", str(out), "--label", "diagnosis",
                                  "--no-validator", "--no-certificate", "--workers", "1", "--json", str(report)])
    assert audited.exit_code in (0, 1), audited.output
    findings = json.loads(report.read_text())["findings"]
    site_source = next(f["evidence"]["site_source"] for f in findings if f["check"] == "confound.label_site")
    audit_sites = set(site_source["counts"])
    assert len(split_sites) == len(audit_sites) == 2
    assert split_sites == audit_sites
