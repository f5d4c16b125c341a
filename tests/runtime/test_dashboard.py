"""The live dashboard in a real browser: headless Debian chromium (selenium + chromedriver)
loads the page from a server process; the numbers on the page change as requests arrive."""

from __future__ import annotations

import shutil

import httpx
import pytest

from edgeintel.runtime.protocol import encode_request
from tests.runtime.conftest import ServerProcess, sample_digits

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _number(browser, element_id: str) -> float:
    text = browser.find_element("id", element_id).text
    return float(text) if text not in ("", "-") else -1.0


def test_dashboard_numbers_change_as_requests_arrive(server: ServerProcess, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"http://{server.url}/dashboard")
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    wait.until(lambda b: b.find_element("id", "status").text.startswith("up "))
    before = _number(browser, "requests")
    body, hl = encode_request({"input": sample_digits(1)})
    for _ in range(25):
        r = httpx.post(
            f"http://{server.url}/v2/models/digits/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(hl)},
        )
        assert r.status_code == 200
    wait.until(lambda b: _number(b, "requests") >= before + 25)
    assert _number(browser, "p50") > 0  # latency percentiles filled in
    assert _number(browser, "batch") >= 1
    r = httpx.post(
        f"http://{server.url}/v1/results",
        json={"device": "kiosk-7", "records": [{"key": "kiosk-7:0", "seq": 1, "t_s": 0.0}]},
    )
    assert r.status_code == 200
    wait.until(lambda b: "kiosk-7" in b.find_element("id", "fleet").text)
    wait.until(lambda b: _number(b, "delivered") >= 1)


def test_dashboard_with_an_operator_token(model_repo, tmp_path, browser) -> None:
    """With tokens the page needs an operator's: ``?token=`` once, then a cookie carries it
    to the page's /v2/stats polls; without it the node answers 401."""
    import json

    from selenium.webdriver.support.ui import WebDriverWait

    tokens = tmp_path / "tokens.json"
    admin, device = "admin-token-0123456789", "phone-token-0123456789"
    tokens.write_text(json.dumps({"devices": {"phone-0": device}, "operators": {"op": admin}}))
    srv = ServerProcess(model_repo, tmp_path, "--tokens", str(tokens)).start()
    try:
        browser.get(f"http://{srv.url}/dashboard")
        assert "missing or invalid operator token" in browser.page_source
        browser.get(f"http://{srv.url}/dashboard?token={admin}")
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        wait.until(lambda b: b.find_element("id", "status").text.startswith("up "))
        before = _number(browser, "requests")
        body, hl = encode_request({"input": sample_digits(1)})
        for _ in range(5):
            r = httpx.post(
                f"http://{srv.url}/v2/models/digits/infer",
                content=body,
                headers={
                    "Inference-Header-Content-Length": str(hl),
                    "Authorization": f"Bearer {device}",
                },
            )
            assert r.status_code == 200
        wait.until(lambda b: _number(b, "requests") >= before + 5)
        assert httpx.get(f"http://{srv.url}/v2/stats").status_code == 401
    finally:
        srv.stop()
