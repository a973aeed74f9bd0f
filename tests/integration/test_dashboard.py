"""Acceptance (issue 22, point 1): the dashboard in a real browser (Debian's chromium,
headless, driven by Selenium with Debian's chromedriver): log in with an admin token, look
at the overview, search as two identities and see what each may see, open a dead letter
and re-drive it. Screenshots go to `test-output/dashboard/` (MEMSTREAM_TEST_OUTPUT)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memstream.broker import BrokerHandle
from memstream.schemas.topics import MEMORIES
from memstream.services.auth import TokenStore
from tests.integration.conftest import Worker
from tests.integration.test_api import _auth

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _browser_binaries() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed with apt-get where missing (as root);
    the test is skipped, saying why, where they cannot be."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found  # type: ignore[return-value]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium/chromedriver, and not root with apt-get to install them")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
    ):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if done.returncode != 0:
            pytest.skip(f"could not install chromium: {done.stderr[-500:]}")
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        pytest.skip("apt-get ran but chromium or chromedriver is still missing")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _browser_binaries()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-gpu",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _shots() -> Path:
    out = Path(os.environ.get("MEMSTREAM_TEST_OUTPUT", ROOT / "test-output")) / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


async def _bad_event(bootstrap: str, tenant: str) -> None:
    """Well-formed JSON with the tenant readable but an empty text: a dead letter of this
    tenant that keeps its original bytes (so it can be re-driven)."""
    from aiokafka import AIOKafkaProducer

    event = {
        "kind": "memory",
        "tenant": tenant,
        "agent_id": "rogue",
        "scope": "tenant",
        "payload": {"text": ""},
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(MEMORIES.name, json.dumps(event).encode(), key=tenant.encode())
    finally:
        await producer.stop()


def _wait_for(predicate, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


def test_dashboard_login_search_as_and_redrive_in_chromium(
    worker: Worker, topics: BrokerHandle, browser
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait as wait

    tenant = f"dash-{uuid.uuid4().hex[:6]}"
    tokens = TokenStore(worker.data_dir / "tokens.db")
    admin = tokens.create(tenant, "ops", clearance=["admin"])
    alice = tokens.create(tenant, "alice")
    bob = tokens.create(tenant, "bob", teams=["red"])
    outsider = tokens.create(f"{tenant}-other", "eve")
    said = [
        (alice, "tenant", "the dashboard shows the tenant wide lighthouse memory"),
        (bob, "private", "the dashboard hides bob's private lighthouse diary"),
        (bob, "team:red", "the dashboard shows team red its lighthouse plan"),
        (outsider, "tenant", "another tenant's lighthouse never shows here"),
    ]
    with httpx.Client(base_url=worker.url, timeout=30) as api:
        for token, scope, text in said:
            r = api.post("/v1/memories", json={"text": text, "scope": scope}, headers=_auth(token))
            assert r.status_code == 202, r.text
        assert _wait_for(
            lambda: (
                len(
                    api.get(
                        "/v1/search", params={"q": "lighthouse", "k": 10}, headers=_auth(bob)
                    ).json()["results"]
                )
                == 3
            )
        ), "the memories were never indexed"
        r = api.post(
            "/v1/subscriptions",
            json={"query": "lighthouse news", "min_score": 0.3},
            headers=_auth(bob),
        )
        assert r.status_code == 200, r.text
        assert _wait_for(lambda: api.get("/v1/subscriptions", headers=_auth(bob)).json())
    asyncio.run(_bad_event(topics.bootstrap, tenant))
    shots = _shots()

    browser.get(f"{worker.url}/")
    assert "log in" in browser.title
    browser.save_screenshot(str(shots / "01-login.png"))

    def log_in_with(token: str, then: str) -> None:
        browser.find_element(By.NAME, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait(browser, 30).until(lambda d: then in d.page_source)  # the next page, loaded

    log_in_with("not-a-token", "that token is not valid")
    log_in_with(alice, "no admin scope")  # valid, but not an admin's
    log_in_with(admin, "Consumer lag")
    assert "overview" in browser.title
    assert "Pipeline stages" in browser.page_source and "Privacy actions" in browser.page_source
    assert tenant in browser.page_source
    browser.save_screenshot(str(shots / "02-overview.png"))

    def search_as(agent: str, teams: str = "") -> str:
        browser.get(f"{worker.url}/dashboard/search")
        browser.find_element(By.NAME, "agent").send_keys(agent)
        if teams:
            browser.find_element(By.NAME, "teams").send_keys(teams)
        browser.find_element(By.NAME, "q").send_keys("lighthouse")
        browser.find_element(By.ID, "search").click()
        wait(browser, 30).until(lambda d: "sees:" in d.page_source)
        return browser.find_element(By.TAG_NAME, "main").text

    seen_by_carol = search_as("carol")  # in no team: the tenant-wide memory only
    assert "tenant wide lighthouse" in seen_by_carol
    assert "private lighthouse diary" not in seen_by_carol
    assert "team red" not in seen_by_carol and "another tenant" not in seen_by_carol
    browser.save_screenshot(str(shots / "03-search-as-carol.png"))
    seen_by_bob = search_as("bob", "red")
    assert "private lighthouse diary" in seen_by_bob and "team red its lighthouse" in seen_by_bob
    assert "another tenant" not in seen_by_bob
    assert "author's reputation" in seen_by_bob and "usefulness" in seen_by_bob
    assert "Subscriptions of bob" in seen_by_bob and "lighthouse news" in seen_by_bob
    assert "lighthouse news" not in seen_by_carol  # bob's, not carol's
    browser.save_screenshot(str(shots / "04-search-as-bob.png"))

    def letters() -> list[object]:
        browser.get(f"{worker.url}/dashboard/dead-letters")
        return browser.find_elements(By.CSS_SELECTOR, "table a")

    found = _wait_for(letters, 60)
    assert found and len(found) == 1, browser.page_source[-2000:]
    browser.save_screenshot(str(shots / "05-dead-letters.png"))
    found[0].click()
    wait(browser, 30).until(lambda d: "invalid_fields" in d.page_source)
    assert "rogue" in browser.page_source
    browser.find_element(By.ID, "redrive").click()
    wait(browser, 30).until(lambda d: "re-driven: 1 record" in d.page_source)
    browser.save_screenshot(str(shots / "06-redriven.png"))
    # the original went through the pipeline again and, still invalid, came back
    assert _wait_for(lambda: len(letters()) == 2, 60), browser.page_source[-2000:]
    browser.save_screenshot(str(shots / "07-dead-letter-again.png"))
