"""confound.label_site and shift.* on small synthetic datasets and in-memory split sets.

Positive cases (a confounded dataset, an old test set, a one-site test set),
negative cases (the default demo, balanced splits), bad input (missing,
empty or single-class labels, one site, one-subject splits, non-numeric
ages) and the evidence (never NaN, fields used for the scanner identity).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import pytest

from audit.bidsindex import index_dataset
from audit.catalogue import EFFECT_EVIDENCE
from audit.context import AuditContext, AuditOptions
from audit.findings import Finding
from audit.runner import run_checks
from audit.scanner import from_sidecars, scanner_identity
from audit.splits import SplitRow, SplitSet, SplitTable
from audit.synthetic import make_dataset
from tests.builders import make_bids

N = 45  # subjects of the synthetic datasets: 15 per site


# --------------------------------------------------------------------------- builders
def split_set(assign: Mapping[str, Iterable[str]], columns: Mapping[str, Mapping[str, str]] | None = None,
              label: str | None = "diagnosis", fold: int | None = None) -> SplitSet:
    tables = []
    for name, pids in assign.items():
        rows = []
        for i, p in enumerate(pids):
            extra = {c: v[p] for c, v in (columns or {}).items() if p in v}
            rows.append(SplitRow(p, None, extra.get(label) if label else None, f"{name}.tsv", i + 2,
                                 MappingProxyType(extra)))
        tables.append(SplitTable(name, fold, f"{name}.tsv", rows, columns=["participant_id", *(columns or {})],
                                 label_column=label if columns and label in columns else None))
    return SplitSet(format="folder", root="", files=tuple(t.path for t in tables), tables=tuple(tables))


def audit(*, index: Any = None, splits: SplitSet | None = None, families: Sequence[str] = ("confound", "shift"),
          images: bool = False, **options: Any) -> list[Finding]:
    ctx = AuditContext(options=AuditOptions(check_images=images, workers=1, **options), index=index, splits=splits)
    findings, _skipped = run_checks(ctx, families)
    for f in findings:  # never NaN, always JSON
        json.dumps(f.to_dict(), allow_nan=False)
    return findings


def of(findings: list[Finding], check: str, severity: str | None = None) -> list[Finding]:
    return [f for f in findings if f.check == check and (severity is None or f.severity == severity)]


def alarms(findings: list[Finding]) -> list[str]:
    return [f"{f.check}: {f.message}" for f in findings if f.severity in ("warning", "error")]


def participants(index: Any) -> dict[str, dict[str, str]]:
    t = index.participants
    return {c: dict(zip(t["participant_id"], t[c])) for c in t.columns if c != "participant_id"}


def balanced(cols: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """A 60/20/20 split dealt round-robin in (site, diagnosis, sex, age) order: balanced by construction."""
    pids = sorted(cols["site"], key=lambda p: (cols["site"][p], cols["diagnosis"][p], cols["sex"][p],
                                               float(cols["age"][p])))
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for i, p in enumerate(pids):
        out[("train", "train", "train", "validation", "test")[i % 5]].append(p)
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain") / "ds"
    make_dataset(root, n_subjects=N, seed=1)
    return index_dataset(root)


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    root = tmp_path_factory.mktemp("confounded") / "ds"
    make_dataset(root, n_subjects=N, seed=1, confounded=True)
    return index_dataset(root)


# --------------------------------------------------------------------------- confound.label_site
def test_confounded_demo_is_an_error_with_the_table_in_evidence(confounded):
    findings = audit(index=confounded, families=("confound",), label="diagnosis")
    (f,) = of(findings, "confound.label_site", "error")
    ev = f.evidence
    assert ev["association"]["cramers_v"] >= 0.4 and ev["association"]["p_value"] < 0.05
    assert ev["site_only_classifier"]["balanced_accuracy"] > 0.75
    assert ev["table"]["labels"] == ["AD", "CN"] and len(ev["table"]["sites"]) == 3
    assert sum(map(sum, ev["table"]["counts"])) == N
    assert ev["site_source"]["source"] == "sidecars"
    assert ev["site_source"]["fields_used"] == ["Manufacturer", "ManufacturersModelName", "MagneticFieldStrength"]
    assert "network can learn the scanner" in f.message


def test_default_demo_has_no_confound(plain):
    findings = audit(index=plain, families=("confound",), label="diagnosis")
    assert alarms(findings) == []
    (f,) = of(findings, "confound.label_site")
    assert f.severity == "info" and "not notably associated" in f.message


def test_thresholds_are_configurable_and_bad_overrides_are_reported(confounded):
    config = {"thresholds": {"confound.label_site": {"cramers_v_error": 0.99, "accuracy_gain_error": 0.99,
                                                     "alpha": "often"}}}
    findings = audit(index=confounded, families=("confound",), label="diagnosis", config=config)
    (f,) = of(findings, "confound.label_site", "warning")
    assert f.evidence["thresholds"]["v_large"] == 0.99  # cramers_v_error is read as v_large for one release
    assert any("alpha" in s for s in f.evidence["ignored_overrides"])


def test_site_column_option_and_training_split(confounded):
    cols = participants(confounded)
    findings = audit(index=confounded, splits=split_set(balanced(cols)), families=("confound",),
                     label="diagnosis", site="site")
    (f,) = of(findings, "confound.label_site", "error")
    assert f.evidence["site_source"] == {**f.evidence["site_source"], "source": "column", "column": "site"}


def test_confounded_training_split_of_an_unconfounded_dataset(plain):
    cols = participants(plain)
    # train: siteA all AD, siteB all CN; the rest elsewhere: the dataset is balanced, train is not
    train = [p for p in cols["site"] if (cols["site"][p], cols["diagnosis"][p]) in (("siteA", "AD"), ("siteB", "CN"))]
    rest = sorted(set(cols["site"]) - set(train))
    findings = audit(index=plain, splits=split_set({"train": train, "test": rest}), families=("confound",),
                     label="diagnosis")
    scopes = {f.evidence.get("scope"): f.severity for f in of(findings, "confound.label_site")}
    assert scopes == {"dataset": "info", "train": "error"}


@pytest.mark.parametrize(("rows", "label", "words"), [
    ({"01": {"diagnosis": "CN"}, "02": {"diagnosis": "CN"}, "03": {"diagnosis": "CN"}}, "diagnosis", "single class"),
    ({"01": {"diagnosis": "n/a"}, "02": {"diagnosis": "n/a"}, "03": {"diagnosis": "n/a"}}, "diagnosis", "no values"),
    ({"01": {"diagnosis": "CN"}, "02": {"diagnosis": "AD"}, "03": {"diagnosis": "CN"}}, "group", "not a column"),
])
def test_bad_labels_give_a_clear_info_finding(tmp_path, rows, label, words):
    rows = {k: {**v, "site": ["X", "Y", "Z"][i % 3]} for i, (k, v) in enumerate(
        {f"{i:02d}": {"diagnosis": list(rows.values())[i % 3]["diagnosis"]} for i in range(1, 10)}.items())}
    index = index_dataset(make_bids(tmp_path / "ds", subjects=list(rows), participants=rows, images=False))
    findings = audit(index=index, families=("confound",), label=label, site="site")
    (f,) = of(findings, "confound.label_site")
    assert f.severity == "info" and words in f.message, f.message


def test_single_site_gives_a_clear_info_finding(tmp_path):
    rows = {f"{i:02d}": {"diagnosis": "AD" if i % 2 else "CN"} for i in range(1, 11)}
    index = index_dataset(make_bids(tmp_path / "ds", subjects=list(rows), participants=rows, images=False))
    findings = audit(index=index, families=("confound",), label="diagnosis")
    (f,) = of(findings, "confound.label_site")
    assert f.severity == "info" and "single site" in f.message and "Siemens Prisma 3T" in f.message


# --------------------------------------------------------------------------- scanner identity
def test_scanner_spellings_are_normalised_and_fields_reported(tmp_path):
    spellings = [("SIEMENS", "Prisma", 2.89, "cni"), ("Siemens", "Prisma", 3, "CNI"),
                 ("GE MEDICAL SYSTEMS", "DISCOVERY_MR750", 3.0, "cni"), ("GE", "DISCOVERY MR750", 3, "CNI"),
                 ("Siemens", "Prisma", 3, "UCLA"), ("Siemens Healthineers", "Prisma", "3", "ucla")]
    subs = [f"{i:02d}" for i in range(1, len(spellings) + 1)]
    root = make_bids(tmp_path / "ds", subjects=subs, images=False)
    for s, (man, model, field, inst) in zip(subs, spellings):
        (root / f"sub-{s}" / "anat" / f"sub-{s}_T1w.json").write_text(json.dumps(
            {"Manufacturer": man, "ManufacturersModelName": model, "MagneticFieldStrength": field,
             "InstitutionName": inst}))
    ident = from_sidecars(index_dataset(root))
    assert ident.fields == ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength", "InstitutionName")
    assert ident.by_subject == {
        "sub-01": "Siemens Prisma 3T @ CNI", "sub-02": "Siemens Prisma 3T @ CNI",
        "sub-03": "GE DISCOVERY MR750 3T @ CNI", "sub-04": "GE DISCOVERY MR750 3T @ CNI",
        "sub-05": "Siemens Prisma 3T @ UCLA", "sub-06": "Siemens Prisma 3T @ UCLA"}
    ev = ident.evidence()
    assert ev["fields_used"][-1] == "InstitutionName" and "CNI" in ev["spellings_merged"]
    json.dumps(ev, allow_nan=False)


def test_majority_scanner_per_participant(tmp_path):
    root = make_bids(tmp_path / "ds", subjects=["01"], images=False, sessions={"01": ["1", "2", "3"]})
    for ses, man in (("1", "GE"), ("2", "Philips"), ("3", "Philips")):
        (root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.json").write_text(json.dumps(
            {"Manufacturer": man}))
    ident = from_sidecars(index_dataset(root))
    assert ident.by_subject == {"sub-01": "Philips"} and ident.mixed_subjects == ("sub-01",)


def test_no_site_information_at_all(tmp_path):
    rows = {f"{i:02d}": {"diagnosis": "AD" if i % 2 else "CN"} for i in range(1, 8)}
    index = index_dataset(make_bids(tmp_path / "ds", subjects=list(rows), participants=rows, images=False,
                                    sidecar={"RepetitionTime": 2.0}))
    ctx = AuditContext(options=AuditOptions(check_images=False), index=index)
    assert scanner_identity(ctx).source == "none"
    findings = audit(index=index, families=("confound",), label="diagnosis")
    assert "no site or scanner information" in of(findings, "confound.label_site")[0].message


# --------------------------------------------------------------------------- shift.*
def test_balanced_splits_raise_no_shift_warning(plain):
    findings = audit(index=plain, splits=split_set(balanced(participants(plain))), label="diagnosis",
                     families=("shift",))
    assert alarms(findings) == []
    summaries = {f.check: f for f in findings if f.severity == "info"}
    assert set(summaries) == {"shift.label", "shift.covariate", "shift.acquisition"}
    cov = summaries["shift.covariate"].evidence
    assert {t["variable"] for t in cov["tests"]} == {"age", "sex"}
    assert all({"p_value", "p_adjusted", "effect", "equivalence_p", "balanced"} <= set(t) for t in cov["tests"])
    assert summaries["shift.acquisition"].evidence["site_source"]["source"] == "sidecars"
    # small splits: the summary says how large a shift would have to be to be seen
    assert cov["detectable_smd"]["smd"] > 1 and "can be detected" in summaries["shift.covariate"].message


def test_old_test_set_is_a_covariate_shift_on_age(plain):
    cols = participants(plain)
    by_age = sorted(cols["age"], key=lambda p: float(cols["age"][p]))
    findings = audit(index=plain, splits=split_set({"train": by_age[:31], "validation": by_age[31:36],
                                                   "test": by_age[36:]}), label="diagnosis", families=("shift",))
    warned = of(findings, "shift.covariate", "warning")
    assert {f.evidence["variable"] for f in warned} == {"age"}
    f = next(f for f in warned if f.splits == ("train", "test"))
    assert "test is older" in f.message and f.evidence["worst"]["effect"]["smd"] > 1
    assert f.evidence["worst"]["p_adjusted"] <= f.evidence["thresholds"]["shared"]["fdr"] == EFFECT_EVIDENCE["fdr"]


def test_one_site_test_set_is_an_acquisition_shift(plain):
    cols = participants(plain)
    site_a = sorted(p for p in cols["site"] if cols["site"][p] == "siteA")
    rest = sorted(p for p in cols["site"] if cols["site"][p] != "siteA")
    findings = audit(index=plain, splits=split_set({"train": rest + site_a[:4], "test": site_a[4:]}),
                     label="diagnosis", families=("shift",))
    (f,) = of(findings, "shift.acquisition", "warning")
    assert "Siemens Prisma 3T" in f.message and f.splits == ("train", "test")
    assert f.evidence["site_source"]["fields_used"][0] == "Manufacturer"
    assert f.evidence["worst"]["test"] in ("chi_square", "permutation_chi_square")


def test_reviewer_split_files_only_with_odd_values():
    ages = {f"sub-{i:02d}": str(60 + i) for i in range(1, 31)}
    ages["sub-30"] = "89+"
    ages["sub-29"] = "old"
    ages["sub-28"] = "n/a"
    cols = {"age": ages, "sex": {p: "MF"[i % 2] for i, p in enumerate(ages)},
            "diagnosis": {p: ("AD" if i % 3 else "CN") for i, p in enumerate(ages)},
            "notes": {p: f"note {i}" for i, p in enumerate(ages)}}
    pids = sorted(ages)
    splits = split_set({"train": pids[0:30:2] + pids[1:10:2], "test": pids[11:30:2], "holdout": ["sub-01x"]},
                       cols)
    findings = audit(splits=splits, label="diagnosis")
    assert of(findings, "confound.label_site")[0].severity == "info"  # no site anywhere: says so
    cov = next(f for f in of(findings, "shift.covariate", "info") if "variables" in f.evidence)
    age = cov.evidence["variables"]["age"]
    assert age["kind"] == "continuous" and age["notes"]["censored"] == 1 and age["notes"]["non_numeric"] == 1
    assert cov.evidence["variables"]["notes"]["kind"] == "skipped"
    assert any("not numbers" in f.message and "'old'" in f.message for f in of(findings, "shift.covariate"))
    # the one-participant split is not tested, and the summary says so
    assert any(u["splits"] == ["train", "holdout"] for u in cov.evidence["untested"])
    assert "not tested" in cov.message
    assert "acquisition shift not measured" in of(findings, "shift.acquisition")[0].message


def test_mostly_text_ages_and_a_single_class_label_are_explained_not_compared():
    pids = [f"sub-{i:02d}" for i in range(1, 21)]
    junk = ["62", "sixty", "70s", "abc", "unknown", "n/a"]
    cols = {"age": {p: junk[i % len(junk)] for i, p in enumerate(pids)},
            "sex": {p: "MF"[i % 2] for i, p in enumerate(pids)},
            "diagnosis": {p: "CN" for p in pids}}
    findings = audit(splits=split_set({"train": pids[:14], "test": pids[14:]}, cols), label="diagnosis")
    cov = next(f for f in of(findings, "shift.covariate", "info") if "variables" in f.evidence)
    age = cov.evidence["variables"]["age"]
    assert age["kind"] == "skipped" and "should hold numbers" in age["not_tested"]
    assert "not compared: age (should hold numbers" in cov.message and "'sixty'" in cov.message
    (lab,) = of(findings, "shift.label", "info")
    assert "a single value in every split (nothing can differ): diagnosis" in lab.message
    assert alarms(findings) == []


def test_single_split_and_k_fold_views_run():
    cols = {"age": {f"sub-{i:02d}": str(50 + i) for i in range(1, 21)}}
    one = split_set({"train": sorted(cols["age"])}, cols, label=None)
    findings = audit(splits=one, families=("shift",))
    assert "fewer than two splits" in of(findings, "shift.covariate")[0].message
    pids = sorted(cols["age"])
    tables = []
    for fold in (0, 1):
        val = pids[fold * 5:(fold + 1) * 5]
        train = [p for p in pids[:10] if p not in val]
        tables += split_set({"train": train, "validation": val}, cols, label=None, fold=fold).tables
    tables += split_set({"test": pids[10:]}, cols, label=None).tables
    kfold = SplitSet(format="clinicadl", root="", files=tuple(t.path for t in tables), tables=tuple(tables))
    findings = audit(splits=kfold, families=("shift",))
    (cov,) = of(findings, "shift.covariate", "info")
    assert cov.evidence["comparisons"] == 4  # per fold: train/validation and train/test
    warned = of(findings, "shift.covariate", "warning")
    assert warned and all(f.evidence["variable"] == "age" for f in warned)  # the test set is the oldest half


def test_shift_thresholds_override(plain):
    cols = participants(plain)
    by_age = sorted(cols["age"], key=lambda p: float(cols["age"][p]))
    splits = split_set({"train": by_age[:31], "test": by_age[31:]})
    config = {"thresholds": {"shift.covariate": {"smd": 50.0, "wasserstein": 50.0}}}
    findings = audit(index=plain, splits=splits, label="diagnosis", families=("shift",), config=config)
    assert of(findings, "shift.covariate", "warning") == []


def test_images_site_signature_and_image_shift(plain):
    cols = participants(plain)
    site_a = sorted(p for p in cols["site"] if cols["site"][p] == "siteA")
    rest = sorted(p for p in cols["site"] if cols["site"][p] != "siteA")
    findings = audit(index=plain, splits=split_set({"train": rest, "test": site_a}), label="diagnosis", images=True)
    sig = [f for f in of(findings, "confound.label_site") if "classifier" in f.evidence]
    assert sig and sig[0].severity == "info" and "scanner signature" in sig[0].message
    # three sites: cross-validated balanced accuracy against the majority-class baseline (1 / sites)
    assert "balanced accuracy" in sig[0].message and "majority-class baseline 0.33" in sig[0].message
    assert sig[0].evidence["classifier"]["score"] > 0.5 and sig[0].evidence["baseline"]["accuracy"] == pytest.approx(1 / 3, abs=1e-3)
    (img,) = of(findings, "shift.image", "warning")
    assert img.evidence["effect"]["auc"] >= 0.7 and img.evidence["p_adjusted"] <= 0.025
    assert "driven by" in img.message and img.evidence["features"][0]["feature"]
    summary = of(findings, "shift.image", "info")[0]
    assert {"thumbnail_pc1", "histogram_pc1", "snr", "snr_dietrich", "cnr", "cjv",
            "foreground_volume"} <= set(summary.evidence["features"])
    assert "not_available" not in summary.evidence
    # the drivers are named, ranked by |SMD|, with their permutation importance (AUC lost when shuffled)
    drivers = img.evidence["features"]
    smds = [abs(d["smd"]) for d in drivers]
    assert smds == sorted(smds, reverse=True) and smds[0] > 1
    assert all(d["auc_drop"] is not None for d in drivers) and max(d["auc_drop"] for d in drivers) > 0
    assert f"{drivers[0]['feature']} (AUC drop" in img.message


def test_the_image_pass_runs_once(plain, monkeypatch):
    import importlib

    imaging = importlib.import_module("audit.images.summary")
    calls = []
    real = imaging.summarise_images

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(imaging, "summarise_images", counting)
    cols = participants(plain)
    audit(index=plain, splits=split_set(balanced(cols)), label="diagnosis", images=True)
    assert len(calls) == 1


def test_checks_skip_with_reasons_without_splits_or_label(plain):
    ctx = AuditContext(options=AuditOptions(check_images=False), index=None, splits=None)
    findings, skipped = run_checks(ctx, ("confound", "shift"))
    assert findings == []
    assert {s["check"] for s in skipped} == {"confound.label_site", "shift.label", "shift.covariate",
                                             "shift.acquisition", "shift.image"}


def test_nested_published_labels_count_as_their_most_specific_label():
    """AD-DL's train/MCI.tsv is the union of sMCI.tsv and pMCI.tsv; its test files hold pMCI and sMCI apart.

    Each participant counts once, under the most specific label it carries, in every split alike; otherwise
    train's pMCI participants would count as MCI and the label distributions would differ by construction.
    """
    from audit.scanner import participant_values

    def table(split: str, parts: Sequence[tuple[str, Sequence[str], str]]) -> SplitTable:
        rows = [SplitRow(p, "ses-M00", lab, file, i + 2, MappingProxyType({"diagnosis": lab}))
                for file, pids, lab in parts for i, p in enumerate(pids)]
        return SplitTable(split, None, parts[0][0], rows, columns=["participant_id", "session_id", "diagnosis"],
                          label_column="diagnosis")

    train_p, train_s, train_m = ["sub-01", "sub-02"], ["sub-03", "sub-04", "sub-05"], ["sub-06"]
    train = [("train/MCI.tsv", train_m + train_p + train_s, "MCI"), ("train/pMCI.tsv", train_p, "pMCI"),
             ("train/sMCI.tsv", train_s, "sMCI")]
    test = [("test/pMCI.tsv", ["sub-11"], "pMCI"), ("test/MCI.tsv", ["sub-12"], "MCI")]
    tables = (table("train", train), table("test", test))
    splits = SplitSet(format="clinicadl", root="", files=("train/MCI.tsv", "test/pMCI.tsv"), tables=tables)
    ctx = AuditContext(options=AuditOptions(label="diagnosis", workers=1), splits=splits)
    values = participant_values(ctx, "diagnosis", label=True)
    assert values == {"sub-01": "pMCI", "sub-02": "pMCI", "sub-03": "sMCI", "sub-04": "sMCI", "sub-05": "sMCI",
                      "sub-06": "MCI", "sub-11": "pMCI", "sub-12": "MCI"}
    # file order does not matter
    tables = (table("train", train[::-1]), table("test", test[::-1]))
    ctx = AuditContext(options=AuditOptions(label="diagnosis", workers=1),
                       splits=SplitSet(format="clinicadl", root="", files=splits.files, tables=tables))
    assert participant_values(ctx, "diagnosis", label=True) == values
