"""The live dashboard in a real browser: headless Debian chromium (selenium + chromedriver)
loads the page from a server process; the numbers on the page change as requests arrive."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from edgeintel.runtime.protocol import encode_request
from tests.runtime.conftest import ServerProcess, sample_digits

pytestmark = pytest.mark.slow


def _chrome(home: Path | None = None):
    """Headless Debian chromium under selenium; ``home``: its $HOME (where Chromium on
    Linux keeps its NSS certificate database, ``.pki/nssdb``)."""
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

    env = None if home is None else dict(os.environ, HOME=str(home))
    return webdriver.Chrome(service=Service(driver_path, env=env), options=opts)


@pytest.fixture
def browser():
    drv = _chrome()
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


#: written by ``make chromium``: Chromium presents, to https://127.0.0.1 only, a
#: certificate issued by an "edgeintel scenario CA" without asking (no dialog headless)
CHROMIUM_POLICY = Path("/etc/chromium/policies/managed/edgeintel-tests.json")


def test_dashboard_over_mutual_tls_with_the_operators_bundle(model_repo, tmp_path) -> None:
    """The operator's PKCS#12 from ``edgeintel certs export-operator``, imported into a
    fresh browser profile's certificate store (pk12util, as a user imports it) with the
    scenario CA trusted for websites: the page loads over mutual TLS and its /v2/stats
    polls follow requests from a device; a browser without the bundle gets no page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    from typer.testing import CliRunner

    from edgeintel.cli import app
    from edgeintel.runtime.transport import HttpTransport, Request
    from edgeintel.security.pki import issue_deployment

    if shutil.which("pk12util") is None or shutil.which("certutil") is None:
        pytest.skip("libnss3-tools is not installed (make chromium)")
    if not CHROMIUM_POLICY.is_file():
        pytest.skip(f"{CHROMIUM_POLICY} is missing (make chromium)")
    run = tmp_path / "run"
    pki = issue_deployment(run / "runtime" / "pki", {"edge": ["127.0.0.1"]}, ["phone-0"])
    p12 = tmp_path / "operator.p12"
    r = CliRunner().invoke(app, ["certs", "export-operator", str(run), "--p12", str(p12)])
    assert r.exit_code == 0, r.output
    home, bare = tmp_path / "home", tmp_path / "bare"
    for profile, bundle in ((home, True), (bare, False)):
        db = f"sql:{profile / '.pki' / 'nssdb'}"
        (profile / ".pki" / "nssdb").mkdir(parents=True)
        steps = [
            ["certutil", "-N", "-d", db, "--empty-password"],
            ["certutil", "-A", "-d", db, "-n", "edgeintel CA", "-t", "C,,", "-i", str(pki.ca)],
        ]
        if bundle:
            steps.append(["pk12util", "-i", str(p12), "-d", db, "-w", f"{p12}.password"])
        for argv in steps:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
    srv = ServerProcess(model_repo, tmp_path, tls=pki.nodes["edge"]).start()
    device = HttpTransport(srv.url, tls=pki.devices["phone-0"])
    drv = _chrome(home)
    try:
        drv.get(f"https://{srv.url}/dashboard")
        wait = WebDriverWait(drv, 30, poll_frequency=0.2)
        wait.until(lambda b: b.find_element("id", "status").text.startswith("up "))
        before = _number(drv, "requests")
        body, hl = encode_request({"input": sample_digits(1)})
        headers = {"inference-header-content-length": str(hl)}
        infer = Request("POST", "/v2/models/digits/infer", body, headers)
        for _ in range(5):
            assert device.send(infer).status == 200
        wait.until(lambda b: _number(b, "requests") >= before + 5)
    finally:
        drv.quit()
        device.close()
    other = _chrome(bare)  # the CA trusted, no certificate of its own
    try:
        with contextlib.suppress(WebDriverException):  # a refused navigation may raise
            other.get(f"https://{srv.url}/dashboard")
        assert not other.find_elements("id", "status"), other.page_source[:300]
        assert "Privacy error" not in other.title  # the server is trusted: refused for want
        # of a client certificate, not because of the server's
    finally:
        other.quit()
        srv.stop()
