"""Debian's headless Chromium for the browser tests (driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
