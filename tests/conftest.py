"""Shared fixtures: paths to real shipped data, a temporary store, headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geo_lead import settings

DATA = settings.SHIPPED_DATA_DIR
FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "lead.gpkg"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright (skips when Chromium is missing)."""
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (scripts/setup.sh installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def offline_page_factory(browser: object) -> Iterator[Callable[..., object]]:
    """Make pages in fresh contexts (keyword arguments go to ``browser.new_context``) that
    record every request and abort any to the network.

    ``page.external_requests`` lists URLs that are not file:// or data:/blob: (must stay empty
    for offline pages); ``page.console_errors`` collects console errors and page errors.
    """
    contexts: list[object] = []

    def make(**context_args: object) -> object:
        context = browser.new_context(**context_args)  # type: ignore[attr-defined]
        contexts.append(context)
        page = context.new_page()
        page.external_requests = []
        page.console_errors = []

        def route(r: object) -> None:
            url = r.request.url  # type: ignore[attr-defined]
            if url.startswith(("file:", "data:", "blob:")):
                r.continue_()  # type: ignore[attr-defined]
            else:
                page.external_requests.append(url)
                r.abort()  # type: ignore[attr-defined]

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        return page

    yield make
    for context in contexts:
        context.close()  # type: ignore[attr-defined]


@pytest.fixture
def offline_page(offline_page_factory: Callable[..., object]) -> object:
    """A page in a fresh context that records every request and aborts any to the network."""
    return offline_page_factory()
