"""Headless Chromium for the HTML report's tests: the page loaded the way a user opens it (scripts run), its DOM
dumped or a screenshot taken. Tests that need it are marked `needs_chromium`."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless check needs Debian's chromium "
                                    "(/usr/bin/chromium): apt-get install -y chromium")


def chromium(url: str, tmp_path: Path, *args: str) -> str:
    """Load `url` in headless Chromium the way a user would (scripts run) and return its stdout."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
