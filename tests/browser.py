"""A real headless Chromium for the tests: the Debian binary, driven by Playwright.

Playwright (a Python dependency) only drives the browser: it is given the distribution's
Chromium through ``executable_path`` and never downloads one. ``make browser``
(``scripts/install-chromium.sh``) installs it; when it is missing a test skips locally and
fails under CI (:mod:`tests.requirements`).

Every page load is held to 127.0.0.1: a request anywhere else is aborted and recorded in
:attr:`Session.outside`, so a test can assert that a page needs nothing from outside (the
landing pages must work offline on a ship).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

from tests.requirements import require

#: where test artefacts (screenshots) go: ``test-artefacts/`` at the top of the checkout
ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artefacts"
_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
_LOCAL = frozenset({"127.0.0.1", "localhost", "::1"})


def chromium_path() -> str | None:
    """The Chromium binary: ``$HALODB_CHROMIUM`` if set, else the first of chromium,
    chromium-browser, google-chrome on PATH; None when there is none."""
    explicit = os.environ.get("HALODB_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((p for p in map(shutil.which, _NAMES) if p), None)


def require_chromium() -> str:
    """The Chromium binary, or skip (locally) / fail (under CI) naming how to get it."""
    path = chromium_path()
    require(path is not None, "headless Chromium is missing: run `make browser` (scripts/install-chromium.sh, "
                              "Debian package chromium) or set HALODB_CHROMIUM")
    assert path is not None
    return path


@dataclass
class Session:
    """One browser context: ``page`` to drive, ``outside``: URLs it tried to reach beyond 127.0.0.1."""

    context: BrowserContext
    page: Page
    outside: list[str] = field(default_factory=list)


@contextmanager
def chromium(*, javascript: bool = True, width: int = 1200, height: int = 900) -> Iterator[Session]:
    """A fresh headless Chromium with one page (JavaScript on or off), closed afterwards."""
    executable = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(java_script_enabled=javascript,
                                          viewport={"width": width, "height": height})
            context.set_default_timeout(20_000)
            session = Session(context, context.new_page())

            def only_loopback(route: Route) -> None:
                host = urlsplit(route.request.url).hostname or ""
                if route.request.url.startswith(("data:", "about:", "file:")) or host in _LOCAL:
                    route.continue_()
                else:
                    session.outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_loopback)
            yield session
            context.close()
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``test-artefacts/NAME.png`` and return its path."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def is_png(path: Path) -> bool:
    """True when ``path`` is a non-empty PNG with a header and an image size above zero."""
    data = path.read_bytes()
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width > 0 and height > 0
