"""The predict report in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) loads every page from a local HTTP server with no console
error, every figure decodes, and clicking a column title sorts the station table.

Skipped where Chromium is absent, except under CI (``CI=true``), where that is a failure:
``.ci/chromium-setup.sh`` installs it there.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from deepvs30.report import chromium_paths, headless_chromium
from model_fixture import shared_models
from report_helpers import build_report

pytestmark = pytest.mark.browser


def missing_browser() -> list[str]:
    missing = [path for path in chromium_paths() if not Path(path).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    return missing


@pytest.fixture(scope="module", autouse=True)
def _needs_browser() -> None:
    missing = missing_browser()
    if missing:
        reason = (f"headless Chromium needs {', '.join(missing)} "
                  "(bash .ci/chromium-setup.sh installs chromium, chromium-driver)")  # fmt: skip
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_dataset) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        models = shared_models(tmp_path_factory, tiny_dataset)
        built = build_report(tmp_path_factory.mktemp("browser_report"), models, tiny_dataset)
    assert built.exit_code == 0
    return built.dir


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def base_url(report_dir: Path):
    handler = functools.partial(QuietHandler, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


IMAGES_JS = """
return Array.from(document.images).map(function (i) {
  return [i.getAttribute("src"), i.complete, i.naturalWidth];
});
"""


def load(browser, url: str) -> list:
    """Open ``url``, wait for the page and its images; the images' [src, complete, width]."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(function (i) { return i.complete; })"
        )
    )
    return browser.execute_script(IMAGES_JS)


def test_every_page_loads_without_console_errors_and_its_figures_render(
    browser, base_url, report_dir
) -> None:
    pages = ["index.html", *sorted(p.name for p in report_dir.glob("station-*.html"))]
    n_images = 0
    for name in pages:
        images = load(browser, f"{base_url}/{name}")
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], name
        assert browser.title, name
        broken = [src for src, complete, width in images if not complete or width <= 0]
        assert broken == [], name
        n_images += len(images)
    assert len(pages) == 4 and n_images == 1 + (2 + 1) + (2 + 1)  # map; windows + H/V


def _column(browser, col: int) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#stations tbody tr')).map(function (r) {"
        f"  var c = r.cells[{col}]; return c.hasAttribute('data-value') ? "
        "c.getAttribute('data-value') : c.textContent; });"
    )


def test_clicking_a_column_title_sorts_the_station_table(browser, base_url) -> None:
    from selenium.webdriver.common.by import By

    load(browser, f"{base_url}/index.html")
    heads = browser.find_elements(By.CSS_SELECTOR, "#stations thead th")
    titles = [h.text for h in heads]
    vs30 = heads[titles.index("Vs30 (m/s)")]
    col = titles.index("Vs30 (m/s)")
    values = _column(browser, col)
    numbers = sorted(float(v) for v in values if v)
    assert len(numbers) == 2 and values.count("") == 1

    vs30.click()
    assert vs30.get_attribute("aria-sort") == "ascending"
    assert _column(browser, col) == [repr(v) for v in numbers] + [""]  # blank last
    vs30.click()
    assert vs30.get_attribute("aria-sort") == "descending"
    assert _column(browser, col) == [repr(v) for v in numbers[::-1]] + [""]

    station = heads[titles.index("station")]
    station.click()
    station.click()  # descending by text
    assert _column(browser, 0) == ["TK.9003", "TK.9002", "TK.9001"]
    assert vs30.get_attribute("aria-sort") is None
