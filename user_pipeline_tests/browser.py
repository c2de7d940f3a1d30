"""Debian's Chromium driven by Playwright, for the browser acceptance tests.

Chromium comes from apt (`apt-get install chromium`, see `make system-deps`), never from
`playwright install`: this machine downloads no browsers. Screenshots go to
test-artifacts/browser/ (gitignored) so that CI keeps them; a failing step also leaves a
screenshot and the page's HTML there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from user_pipeline_tools.dagster_services import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium phones home (component updates, sync,
# QUIC probes) and the closed network refuses its connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1600, "height": 1000}


class BrowserUnavailable(Exception):
    """Chromium or Playwright is missing, or Chromium cannot start here: the reason is the message."""


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright, or BrowserUnavailable saying why not."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        raise BrowserUnavailable(
            f"the playwright package is not installed ({error}): pip install -e '.[test]'"
        ) from error
    if not CHROMIUM.exists():
        raise BrowserUnavailable(
            f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (make system-deps as root)"
        )
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except PlaywrightError as error:
            raise BrowserUnavailable(f"Chromium at {CHROMIUM} cannot start: {str(error).strip()[:2000]}") from error
        try:
            yield browser
        finally:
            browser.close()


def clear_artifacts(directory: Path = ARTIFACTS_DIR) -> None:
    """Removes the screenshots and pages of an earlier run, so the directory shows this run only."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if path.is_file() and path.suffix in {".png", ".html", ".txt"}:
            path.unlink()


class UiSession:
    """One browser page on a Dagster webserver, numbering its screenshots by step."""

    def __init__(self, browser: Any, base_url: str, artifacts_dir: Path = ARTIFACTS_DIR, prefix: str = ""):
        self.base_url = base_url.rstrip("/")
        self.artifacts_dir = artifacts_dir
        self.prefix = prefix
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.page.set_default_navigation_timeout(60_000)
        self._shots = 0
        self.step = "start"
        # The webserver shows a "Join the Dagster community" modal once per instance on
        # localhost; whenever it shows up in the way, dismiss it as a user would.
        self.page.add_locator_handler(
            self.page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
            lambda dialog: dialog.get_by_role("button", name="Skip").click(),
        )

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path, wait_until="domcontentloaded")

    def screenshot(self, name: str) -> Path:
        """Saves a full-page screenshot as NN-<prefix><name>.png and names the current step."""
        self._shots += 1
        self.step = name
        path = self.artifacts_dir / f"{self._shots:02d}-{self.prefix}{_slug(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def save_failure(self) -> list[Path]:
        """A screenshot and the HTML of the page as it is now, named after the step that failed."""
        stem = self.artifacts_dir / f"FAILED-{self.prefix}after-{_slug(self.step)}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        saved = []
        try:
            self.page.screenshot(path=f"{stem}.png", full_page=True, timeout=15_000)
            saved.append(Path(f"{stem}.png"))
        except Exception as error:  # the page may be gone; keep what can be kept
            Path(f"{stem}.screenshot-error.txt").write_text(repr(error))
        try:
            Path(f"{stem}.html").write_text(f"<!-- {self.page.url} -->\n{self.page.content()}")
            saved.append(Path(f"{stem}.html"))
        except Exception as error:
            Path(f"{stem}.html-error.txt").write_text(repr(error))
        return saved

    @contextmanager
    def failure_artifacts(self) -> Iterator[UiSession]:
        """On any exception inside, saves the failure screenshot and HTML, then re-raises."""
        try:
            yield self
        except BaseException:
            self.save_failure()
            raise

    def close(self) -> None:
        self.context.close()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"
