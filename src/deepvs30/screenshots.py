"""``make ui-screenshots``: the README's pictures of the MLflow model card and the Optuna dashboard.

``python -m deepvs30.screenshots [--params params.yaml] [--out docs/img]`` starts ``mlflow ui``
over the tracking store (params.yaml ``mlflow``; ``$MLFLOW_TRACKING_URI`` overrides) on a free
local port, opens the page of the latest version of the registered model, waits for its
description (the card of :mod:`deepvs30.model_card`) and saves ``model-card.png``; then starts
``optuna-dashboard`` over the study storage of ``make dashboard`` (:mod:`deepvs30.dashboard`)
and saves the study's History plot (``dashboard-history.png``), the per-epoch validation
values of its trials, where the pruned ones stop (``dashboard-intermediate.png``), and its trial
list beside the best trial (``dashboard-trials.png``). ``--only`` takes
one of the two; ``--storage``, ``--study``, ``--model``, ``--version`` point it elsewhere.

The browser is :func:`deepvs30.report.headless_chromium` (selenium, a dev extra, with Debian's
chromium and chromium-driver); the servers are stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deepvs30.config import DEFAULT_PARAMS_PATH, load_params

WIDTH_PX = 1400
HEIGHT_PX = 1000
SERVER_START_S = 120.0  # mlflow ui on a busy machine takes a while (migrations, workers)
RENDER_S = 60.0  # a page's content, once the server answers
# optuna-dashboard's cards on a study's top page, photographed: (heading, file name part).
# "Hyperparameter Importance" is there too, but with the families' conditional sizes it lists
# some 40 parameters and plotly drops most of their labels.
DASHBOARD_CARDS = (("History", "history"), ("Intermediate values", "intermediate"))
CARD_TEXT = "Intended use"  # a line every model_card() has (deepvs30.model_card)


# --- what to open -----------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def model_version_url(base: str, name: str, version: int | str) -> str:
    """The MLflow UI page of one registered model version (MLflow 3's hash routes)."""
    return f"{base.rstrip('/')}/#/models/{urllib.parse.quote(name, safe='')}/versions/{version}"


def latest_version(versions: Sequence[dict]) -> int:
    """The highest version number among MLflow REST ``model_versions`` entries."""
    if not versions:
        raise LookupError("the registered model has no version")
    return max(int(v["version"]) for v in versions)


def study_id(studies: Sequence[dict], name: str) -> int:
    """The id of study ``name`` in optuna-dashboard's ``/api/studies`` list."""
    for study in studies:
        if study["study_name"] == name:
            return int(study["study_id"])
    known = ", ".join(sorted(s["study_name"] for s in studies)) or "none"
    raise LookupError(f"no study {name!r} in the storage (studies: {known})")


def dashboard_url(base: str, study: int, page: str = "") -> str:
    """An optuna-dashboard page of a study: "" (top: History, Importance, Timeline,
    Intermediate values), "analytics",
    "trials" (the trial list), "trialTable"."""
    return f"{base.rstrip('/')}/dashboard/studies/{study}" + (f"/{page}" if page else "")


def check_sqlite(url: str, hint: str) -> None:
    """Refuse a SQLite URL whose file is not there: the servers would create an empty one."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            raise FileNotFoundError(f"{url}: no such file {path}; {hint}")


def tool(name: str) -> str:
    """The console script beside this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not installed (pip install -e '.[dev]')")
    return found


def get_json(url: str, timeout_s: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode("utf-8"))


# --- the servers ------------------------------------------------------------------------------


@contextmanager
def server(
    command: list[str],
    ready_url: str,
    timeout_s: float = SERVER_START_S,
    env: dict[str, str] | None = None,
) -> Iterator:
    """Run ``command`` (in its own process group, with ``env`` if given) until the block ends;
    wait first until ``ready_url`` answers 200. Its output goes to a log file, shown if it fails
    to start."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            wait_until_up(proc, ready_url, timeout_s, log)
            yield proc
        finally:
            stop(proc)


def wait_until_up(proc: subprocess.Popen, url: str, timeout_s: float, log) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}: no answer after {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(log, n_chars: int = 3000) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-n_chars:]


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group ``server`` started, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the pictures -----------------------------------------------------------------------------


def wait_for(driver, xpath: str, timeout_s: float = RENDER_S):
    """The first element matching ``xpath`` once it is displayed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(
        ec.visibility_of_element_located((By.XPATH, xpath))
    )


def settle(driver, quiet_s: float = 1.0, timeout_s: float = 15.0) -> None:
    """Wait until the page's size stops changing for ``quiet_s`` (plots resize as they draw)."""
    script = "return [document.body.scrollHeight, document.body.innerHTML.length]"
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = driver.execute_script(script)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.25)


def save_element(driver, element, path: Path, pad_px: int = 8, trim: bool = False) -> Path:
    """A PNG of the viewport cropped to ``element`` (plus ``pad_px``), at most the window;
    ``trim``: up to its last drawn content only (no empty space below)."""
    from io import BytesIO

    from PIL import Image

    # a window taller than the element, the element in its middle: clear of fixed app bars
    height = driver.execute_script("return arguments[0].getBoundingClientRect().height", element)
    size = driver.get_window_size()
    if size["height"] < height + 300:
        driver.set_window_size(size["width"], int(height) + 300)
        settle(driver)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.3)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.right, r.bottom, window.devicePixelRatio];",
        element,
    )
    left, top, right, bottom, ratio = rect
    if trim:
        driver.execute_script(HIDE_FLOATING_JS, element)
    image = Image.open(BytesIO(driver.get_screenshot_as_png()))
    box = [round(v * ratio) for v in (left - pad_px, top - pad_px, right + pad_px, bottom + pad_px)]
    box = [max(box[0], 0), max(box[1], 0), min(box[2], image.width), min(box[3], image.height)]
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image.crop(box)
    (trim_bottom(image) if trim else image).save(path)
    return path


# hide what floats over arguments[0] (fixed-position buttons), so that only its content is drawn
HIDE_FLOATING_JS = """
for (const e of document.querySelectorAll('*')) {
  if (getComputedStyle(e).position === 'fixed' && !e.contains(arguments[0]))
    e.style.visibility = 'hidden'; }
"""


def trim_bottom(image, pad_px: int = 16, edge_px: int = 12, tolerance: int = 8):
    """``image`` without the rows of plain background below its last drawn row, but
    ``pad_px`` of them. The background is the commonest colour of the bottom row; ``edge_px``
    at each side (a frame's border, its rounded corners) are not looked at."""
    from PIL import Image, ImageChops

    rgb = image.convert("RGB")
    inner = rgb.crop((edge_px, 0, rgb.width - edge_px, rgb.height - edge_px))
    bottom = inner.crop((0, inner.height - 1, inner.width, inner.height))
    background = max(bottom.getcolors(inner.width))[1]
    plain = Image.new("RGB", inner.size, background)
    drawn = ImageChops.difference(inner, plain).convert("L").point(lambda v: v > tolerance and 255)
    box = drawn.getbbox()
    if box is None:
        return image
    return image.crop((0, 0, image.width, min(box[3] + pad_px, image.height)))


def model_card_shot(
    tracking_uri: str,
    artifact_root: str,
    model: str,
    out: Path,
    version: int | None = None,
) -> Path:
    """``model-card.png``: the MLflow UI page of ``model``'s version (latest by default)."""
    from deepvs30.report import headless_chromium

    check_sqlite(tracking_uri, "run `make reproduce`, or give --tracking-uri")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [tool("mlflow"), "ui", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", tracking_uri, "--default-artifact-root", artifact_root,
               "--workers", "1"]  # fmt: skip
    with server(command, f"{base}/health"):
        if version is None:
            query = urllib.parse.urlencode({"filter": f"name='{model}'"})
            found = get_json(f"{base}/ajax-api/2.0/mlflow/model-versions/search?{query}")
            version = latest_version(found.get("model_versions", []))
        with headless_chromium(WIDTH_PX, HEIGHT_PX) as driver:
            driver.get(model_version_url(base, model, version))
            wait_for(driver, f"//*[contains(text(), '{CARD_TEXT}')]")
            close_assistant(driver)
            settle(driver)
            page = driver.find_element("css selector", "main")
            grow_to(driver, page)
            return save_element(driver, page, out / "model-card.png", pad_px=0, trim=True)


def close_assistant(driver) -> None:
    """Close MLflow 3's "MLflow Assistant" side panel, where it is open."""
    for button in driver.find_elements("xpath", "//button[@aria-label='Close']"):
        if button.is_displayed():
            button.click()
            time.sleep(0.5)


def grow_to(driver, element, max_px: int = 2400) -> None:
    """Make the window tall enough that ``element``, a box that scrolls inside the page (as
    single-page apps do), shows all its content."""
    hidden = driver.execute_script(
        "return arguments[0].scrollHeight - arguments[0].clientHeight", element
    )
    size = driver.get_window_size()
    driver.set_window_size(size["width"], min(size["height"] + int(hidden) + 8, max_px))
    settle(driver)


def dashboard_shots(storage: str, study_name: str, out: Path) -> list[Path]:
    """``dashboard-<card>.png`` of :data:`DASHBOARD_CARDS` and ``dashboard-trials.png`` of
    study ``study_name`` in optuna-dashboard."""
    from deepvs30.report import headless_chromium

    check_sqlite(storage, "run `make tune`, or give --storage")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [tool("optuna-dashboard"), "--host", "127.0.0.1", "--port", str(port), storage]
    with server(command, f"{base}/api/studies"):
        sid = study_id(get_json(f"{base}/api/studies")["study_summaries"], study_name)
        paths = []
        with headless_chromium(WIDTH_PX, HEIGHT_PX) as driver:
            driver.get(dashboard_url(base, sid))
            for title, name in DASHBOARD_CARDS:
                card = wait_for(driver, _card_xpath(title))
                wait_for(driver, _card_xpath(title) + "//*[contains(@class, 'main-svg')]")
                hide_plotly_toolbar(driver)
                settle(driver)
                paths.append(save_element(driver, card, out / f"dashboard-{name}.png"))
            driver.set_window_size(WIDTH_PX, HEIGHT_PX)
            driver.get(dashboard_url(base, sid, "trials"))
            best = wait_for(driver, "//*[normalize-space(text())='Best Trial']")
            driver.execute_script(  # the list beside the best trial's details
                "const item = arguments[0].closest('[role=button]') || arguments[0];"
                "item.scrollIntoView({block: 'nearest'}); item.click();",
                best,
            )
            settle(driver)
            path = out / "dashboard-trials.png"
            driver.save_screenshot(str(path))
            paths.append(path)
    return paths


def hide_plotly_toolbar(driver) -> None:
    """Plotly's mode bar shows where the mouse happens to be: not in a picture."""
    driver.execute_script(
        "const s = document.createElement('style');"
        "s.textContent = '.modebar-container { display: none !important; }';"
        "document.head.appendChild(s);"
    )


def _card_xpath(title: str) -> str:
    """The smallest card (MUI Card) whose heading reads ``title``."""
    return (
        f"(//*[contains(@class, 'MuiCard-root')][.//*[normalize-space(text())='{title}']])[last()]"
    )


def main(argv: list[str] | None = None) -> int:
    from deepvs30.dashboard import study_storage

    parser = argparse.ArgumentParser(
        prog="python -m deepvs30.screenshots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH), help="parameter file")
    parser.add_argument("--out", default="docs/img", help="where the PNGs go (docs/img)")
    parser.add_argument("--only", choices=("model-card", "dashboard"), help="one of the two")
    parser.add_argument("--tracking-uri", help="MLflow store (default: mlflow.tracking_uri)")
    parser.add_argument("--artifact-root", help="MLflow artifacts (default: mlflow.artifact_root)")
    parser.add_argument("--model", help="registered model (default: mlflow.registered_model)")
    parser.add_argument("--version", type=int, help="model version (default: the latest)")
    parser.add_argument("--storage", help="Optuna storage (default: as `make dashboard`)")
    parser.add_argument("--study", help="study name (default: tune.study_name)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    mlflow, tune = params["mlflow"], params["tune"]
    out = Path(args.out)
    paths = []
    try:
        if args.only in (None, "model-card"):
            uri = (
                args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow["tracking_uri"]
            )
            root = args.artifact_root or mlflow["artifact_root"]
            model = args.model or mlflow["registered_model"]
            paths.append(model_card_shot(uri, root, model, out, args.version))
        if args.only in (None, "dashboard"):
            storage = args.storage or study_storage(params)
            paths += dashboard_shots(storage, args.study or tune["study_name"], out)
    except (FileNotFoundError, LookupError) as exc:  # nothing to photograph: say what
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
