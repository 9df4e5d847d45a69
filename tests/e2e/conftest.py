"""Fixtures of the browser suite: a starter run, the app served by `streamlit run`, Chromium.

On a failed test, a screenshot of every page it opened and the server's log are saved under
`test-artifacts/`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page, expect, sync_playwright

from tests import needs
from tests.e2e.server import CHROMIUM_ARGS, ROOT, drawings_dir, running_app, train_run

ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1400, "height": 1000}

expect.set_options(timeout=30_000)  # ms; a rerun may wait for TensorFlow on a busy machine


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can tell whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(item: pytest.Item) -> bool:
    return any(
        getattr(getattr(item, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _artifact_name(item: pytest.Item) -> str:
    return re.sub(r"[^\w.-]+", "_", item.name)


def _skip_unless_runnable() -> None:
    needs.require_mnist()
    needs.require_chromium()


@pytest.fixture(scope="session")
def starter_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run store holding one quick MLP run (2 epochs on real MNIST), and that run's id."""
    _skip_unless_runnable()
    runs_dir = tmp_path_factory.mktemp("e2e-runs")
    return runs_dir, train_run(runs_dir)


@pytest.fixture
def kept_drawings_removed(starter_runs: tuple[Path, str]) -> Iterator[None]:
    """Drawings a test keeps through the app are removed after it, so the shared app's other
    tests find the set as they left it."""
    folder = drawings_dir(starter_runs[0])
    before = set(folder.glob("*")) if folder.exists() else set()
    yield
    for path in set(folder.glob("*")) - before if folder.exists() else ():
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-server") / "streamlit.log"


@pytest.fixture(scope="session")
def app_url(starter_runs: tuple[Path, str], server_log: Path, browser: Browser) -> Iterator[str]:
    """Base URL of the app, served for the whole session from the starter run store."""
    with running_app(starter_runs[0], server_log) as url:
        # The first visit of a fresh server must be the entry page, see
        # test_first_visit_to_a_page_link_shows_the_app.
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_role("link", name="Sketch").first).to_be_visible()
        page.close()
        yield url


@pytest.fixture
def fresh_app(
    starter_runs: tuple[Path, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """Base URL of a newly started app that nobody has visited yet."""
    log = tmp_path / "streamlit.log"
    with running_app(starter_runs[0], log) as url:
        yield url
    if _failed(request.node):
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / f"{_artifact_name(request.node)}.fresh-server.log")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the session."""
    _skip_unless_runnable()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=needs.CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(
    browser: Browser, server_log: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Page]]:
    """Open a page in a fresh browser context (a separate visitor) each time it is called."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    if _failed(request.node):
        ARTIFACTS.mkdir(exist_ok=True)
        name = _artifact_name(request.node)
        for number, context in enumerate(contexts):
            for page in context.pages:
                with contextlib.suppress(Error):  # a crashed page must not hide the failure
                    page.screenshot(path=ARTIFACTS / f"{name}-{number}.png", full_page=True)
        if server_log.exists():
            shutil.copy(server_log, ARTIFACTS / f"{name}.server.log")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    """A page in a fresh browser context: a new visitor with an empty session."""
    return new_page()
