"""A real headless Chromium for the console's tests (Debian's ``chromium`` and ``chromium-driver``).

Missing browser or driver: a failure when CI is set, a skip naming the install command otherwise."""
from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = ("/usr/bin/chromium", "chromium")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = name if os.path.isabs(name) and os.path.exists(name) else shutil.which(name)
        if path:
            return path
    return None


def headless_chromium(width: int = 1280, height: int = 900) -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    binary, driver = _find(CHROMIUM), _find(DRIVER)
    if binary is None or driver is None:
        reason = "chromium / chromedriver not found (Debian/Ubuntu: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; they are required when CI is set")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def console_errors(driver: Any) -> list[str]:
    """The browser log's errors (script errors, CSP violations, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
