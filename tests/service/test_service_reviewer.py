"""Issue #12 in the service: folders (zip, or files with relative paths) and every split format; the detected
format shown before the verdict; a layout not recognised is refused, never merged; unsafe archives refused."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from tests.builders import SHARED_DATA
from tests.service.test_service_support import AUTH, make_root, settings_for, wait_for

pytest.importorskip("fastapi", reason="the service extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

AD_DL = SHARED_DATA / "splits" / "AD-DL"


@pytest.fixture
def client(tmp_path):
    from audit.service.app import create_app

    with TestClient(create_app(settings_for(make_root(tmp_path), tmp_path / "state"))) as c:
        yield c


def post(client, files, **data):
    return client.post("/api/audits", files=[("files", f) for f in files], data=data, headers=AUTH)


def zipped(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buf.getvalue()


def ad_dl_files(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base.parent).as_posix(): p.read_bytes() for p in sorted(base.rglob("*.tsv"))}


def test_ad_dl_folder_as_zip_is_read_as_clinicadl_and_shown_before_the_verdict(client):
    if not AD_DL.is_dir():
        pytest.skip(f"the published AD-DL split lists are not at {AD_DL}")
    files = ad_dl_files(AD_DL / "ADNI")
    r = post(client, [("ADNI.zip", zipped(files))])
    assert r.status_code == 202, r.text
    body = wait_for(client, r.json()["id"], timeout=180)
    assert body["status"] == "done", body.get("error")
    assert body["result"]["splits"]["format"] == "clinicadl"
    page = client.get(f"/audits/{body['id']}").text
    assert 'id="detected"' in page and "clinicadl" in page
    assert page.index('id="detected"') < page.index('id="verdict"')


def test_ad_dl_uploaded_as_flat_files_is_refused_not_merged(client):
    if not AD_DL.is_dir():
        pytest.skip(f"the published AD-DL split lists are not at {AD_DL}")
    flat = [(p.name, p.read_bytes()) for p in sorted((AD_DL / "ADNI").glob("*.tsv"))]  # AD.tsv, CN.tsv, ...
    r = post(client, flat)
    assert r.status_code == 422 and "layout not recognised" in r.json()["detail"]
    assert client.get("/api/audits").json() == []


def test_folder_upload_keeps_relative_paths_and_datalists_are_detected(client):
    rows = {"split-0/train.tsv": b"participant_id\nsub-01\nsub-02\n", "split-0/validation.tsv": b"participant_id\nsub-03\n",
            "split-1/train.tsv": b"participant_id\nsub-02\nsub-03\n", "split-1/validation.tsv": b"participant_id\nsub-01\n"}
    r = post(client, [(f"published/{k}", v) for k, v in rows.items()])
    assert r.status_code == 202, r.text
    body = wait_for(client, r.json()["id"])
    assert body["result"]["splits"]["format"] == "clinicadl" and body["result"]["splits"]["folds"] == [0, 1]
    datalist = {"training": [{"image": f"sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz", "fold": i % 2} for i in range(1, 7)],
                "test": [{"image": "sub-09/anat/sub-09_T1w.nii.gz"}]}
    r = post(client, [("datalist.json", json.dumps(datalist).encode())])
    body = wait_for(client, r.json()["id"])
    assert body["status"] == "done" and body["result"]["splits"]["format"] == "monai"
    assert body["result"]["splits"]["id_rule"]["rule"] == "bids"
    assert "monai, 2 folds" in client.get(f"/audits/{body['id']}").text
    r = post(client, [("paths.csv", b"image,split\nscans/P1_a.png,train\nscans/P2_a.png,test\n")],
             id_pattern=r"(P\d+)_")
    body = wait_for(client, r.json()["id"])
    assert body["status"] == "done" and body["result"]["splits"]["id_rule"]["pattern"] == r"(P\d+)_"


@pytest.mark.parametrize(("entries", "links", "status", "words"), [
    ({"../evil/train.tsv": b"participant_id\nsub-01\n"}, None, 422, "leaves the archive"),
    ({"/etc/train.tsv": b"participant_id\nsub-01\n"}, None, 422, "leaves the archive"),
    ({"train.tsv": b"participant_id\nsub-01\n"}, {"test.tsv": "/etc/passwd"}, 422, "link"),
    ({"README.md": b"hello"}, None, 422, "no split files"),
])
def test_unsafe_or_empty_archives_are_refused(client, tmp_path, entries, links, status, words):
    r = post(client, [("splits.zip", zipped(entries, links))])
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert "Traceback" not in r.text
    uploads = tmp_path / "state" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    assert not (tmp_path / "evil").exists()


def test_archives_over_the_limits_are_413(tmp_path):
    from audit.service.app import create_app

    settings = settings_for(make_root(tmp_path), tmp_path / "state", max_file_bytes=4000, max_total_bytes=6000)
    with TestClient(create_app(settings)) as c:
        bomb = zipped({"train.tsv": b"participant_id\n" + b"sub-01\n" * 2000})  # small packed, 14 kB unpacked
        r = post(c, [("bomb.zip", bomb)])
        assert r.status_code == 413 and "bytes" in r.json()["detail"]
        many = zipped({f"s{i}/train.tsv": b"participant_id\n" + b"sub-01\n" * 100 for i in range(9)})
        r = post(c, [("many.zip", many)])
        assert r.status_code == 413 and "6000 bytes" in r.json()["detail"]  # 6.4 kB unpacked in all
        big = bytes(range(256)) * 30  # 7.7 kB that do not compress: the archive itself is over the limit
        r = post(c, [("big.zip", zipped({"train.tsv": big}))])
        assert r.status_code == 413
