"""Headless Chromium for the browser tests (Selenium with Debian's chromium + chromium-driver).

Without a browser the tests skip, saying why; with MASKCLS_REQUIRE_BROWSER=1 (set by CI) a
missing browser is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def missing_browser(reason: str) -> None:
    message = f"{reason}; install Debian's chromium and chromium-driver to run the browser tests"
    if os.environ.get("MASKCLS_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (MASKCLS_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@contextmanager
def headless_chromium(width: int = 1200, height: int = 900) -> Iterator:
    """A Selenium driver for a fresh headless Chromium with no network chatter."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_browser("selenium is not installed")
    browser = next((shutil.which(name) for name in BROWSER_NAMES if shutil.which(name)), None)
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        missing_browser("no chromium" if browser is None else "no chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="maskcls-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()
