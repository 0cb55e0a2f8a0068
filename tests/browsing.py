"""A pytest plugin (tests/conftest.py loads it): pages a person looks at, in headless
Chromium driven by Playwright (the system's
Chromium: `make test` installs Debian's package as root). Every page is screenshotted under
build/screenshots/, and a page with an uncaught JavaScript error, a failed request or an
HTTP error fails its test. Without Chromium the tests are skipped with how to install it,
once; in CI (CI=true) that is an error instead."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# beside the checkout's build output, whatever the working directory (a test may change it)
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
TIMINGS = SCREENSHOTS / "timings.jsonl"
INSTALL_HINT = "headless Chromium is missing: `apt-get install chromium` (make test does, as root)"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    executable = chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


@dataclass
class CheckedPage:
    """A page that records what went wrong on it: uncaught errors, failed requests, HTTP
    errors; `screenshot()` keeps what it showed."""

    page: object
    name: str
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # by the page itself: not failures

    def allow(self, pattern: str, why: str) -> None:
        """A known defect of a page we do not own (`why` says which), matched by regex."""
        assert why
        self.allowed.append(re.compile(pattern))

    def failed(self, request) -> None:
        """A request that did not complete. net::ERR_ABORTED is a cancel, not a failure:
        the page's own (an AbortController's abort(); Superset dropped a list request and
        a log request so in CI) or the test's, leaving a page that still loads (reported
        so at times); kept apart in `cancelled`. Anything else (refused, reset, blocked,
        timed out) is a problem. tests/browser/test_page_checks.py shows both."""
        if "ERR_ABORTED" in (request.failure or ""):
            self.cancelled.append(request.url)
        else:
            self.problems.append(f"request failed: {request.url} ({request.failure})")

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def timed(self, label: str, **more: float) -> dict:
        """Call once the page shows what it is for: its first contentful paint and that
        moment (ms since navigation), with `more` figures, kept in
        build/screenshots/timings.jsonl (the session's summary prints them)."""
        figures = self.page.evaluate(
            """() => ({
                first_contentful_paint_ms: Math.round((performance.getEntriesByType('paint')
                    .find(e => e.name === 'first-contentful-paint') || {}).startTime || -1),
                meaningful_ms: Math.round(performance.now()),
            })"""
        )
        figures = {"page": f"{self.name}{label}", **figures, **more}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with TIMINGS.open("a") as out:
            out.write(json.dumps(figures) + "\n")
        return figures

    def screenshot(self, suffix: str = "") -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}{suffix}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def checked_page(browser, request) -> Iterator[CheckedPage]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    checked = CheckedPage(page, name)
    page.on("pageerror", lambda error: checked.problems.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda r: checked.failed(r))
    page.on(
        "response",
        lambda r: r.status >= 400 and checked.problems.append(f"HTTP {r.status}: {r.url}"),
    )
    yield checked
    checked.screenshot()
    problems = checked.unexpected()  # before closing, which cancels what is still loading
    context.close()
    assert problems == []


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller: this session's timings only
        TIMINGS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Each page's first contentful paint and the moment it showed its content."""
    if hasattr(config, "workerinput") or not TIMINGS.exists():
        return
    terminalreporter.section("pages in the browser (ms since navigation)")
    for line in TIMINGS.read_text().splitlines():
        page = json.loads(line)
        extra = "".join(
            f", {key} {value:.0f}"
            for key, value in page.items()
            if key not in ("page", "first_contentful_paint_ms", "meaningful_ms")
        )
        terminalreporter.write_line(
            f"{page['page']}: first paint {page['first_contentful_paint_ms']}, "
            f"content {page['meaningful_ms']}{extra}"
        )
