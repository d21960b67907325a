"""End to end in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
a reviewer uploads split files through the form, waits, opens the report and reads the verdict."""

from __future__ import annotations


import pytest

from tests.builders import chromium_driver
from tests.service.test_service_support import TOKEN, LiveServer, make_root

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    with chromium_driver(FLAGS) as driver:
        yield driver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    live = LiveServer(make_root(tmp), tmp / "state").start()
    try:
        yield live
    finally:
        live.stop()


def test_reviewer_uploads_through_the_form_and_reads_the_verdict(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    train = tmp_path / "train.tsv"
    test = tmp_path / "test.tsv"
    train.write_text("participant_id\tdiagnosis\nsub-01\tAD\nsub-02\tCN\nsub-03\tAD\n")
    test.write_text("participant_id\tdiagnosis\nsub-03\tAD\nsub-04\tCN\n")
    browser.get(server.url + "/upload")
    browser.find_element(By.ID, "files").send_keys(f"{train}\n{test}")
    browser.find_element(By.ID, "name").send_keys("Smith et al. <2024>")
    browser.find_element(By.ID, "label").send_keys("diagnosis")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/audits/"))
    audit_id = browser.current_url.rsplit("/", 1)[1]
    verdict = WebDriverWait(browser, 120).until(ec.presence_of_element_located((By.ID, "verdict")))
    assert verdict.text == "FAIL"  # sub-03 is in train and test
    assert "leakage.subject_overlap" in browser.find_element(By.ID, "findings").text
    browser.find_element(By.ID, "report-link").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/report"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "leakage.subject_overlap" in body and "sub-03" in body
    browser.get(server.url + "/")
    table = browser.find_element(By.ID, "datasets").text
    assert "Smith et al. <2024>" in table and "FAIL" in table
    browser.find_element(By.LINK_TEXT, "Smith et al. <2024>").click()
    assert browser.find_element(By.ID, "chart").tag_name == "svg"
    assert audit_id[:12] in browser.find_element(By.ID, "audits").text


def test_the_form_refuses_a_wrong_token_and_says_so(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    split = tmp_path / "splits.tsv"
    split.write_text("participant_id\tsplit\nsub-01\ttrain\nsub-02\ttest\n")
    browser.get(server.url + "/upload")
    browser.find_element(By.ID, "files").send_keys(str(split))
    browser.find_element(By.ID, "token").send_keys("not-the-token-0000000000")
    browser.find_element(By.ID, "submit").click()
    error = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "form-error")))
    assert "wrong token" in error.text
    assert "/upload" in browser.current_url
