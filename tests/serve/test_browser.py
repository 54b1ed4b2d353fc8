"""End to end in headless Chromium: upload a real X-ray on the page, wait for the verdict.

Debian's chromium and chromium-driver (`make browser` installs them). Without them the test is
skipped, except under CI (CI=true), where a missing browser is a failure.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest

from cxr_fast.explain.explainer import Explainer
from cxr_fast.serve.app import create_app
from cxr_fast.serve.predictor import Predictor

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Where the README's screenshot comes from: set to a path to keep a copy of the capture.
SCREENSHOT_ENV = "CXR_FAST_SCREENSHOT"
RUN_ENV = "CXR_FAST_SCREENSHOT_RUN"

pytestmark = pytest.mark.browser


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = f"no browser for the end-to-end test: {', '.join(missing)} missing"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install them: make browser)")
        pytest.skip(message)


@pytest.fixture
def server(trained_run):
    from werkzeug.serving import make_server

    # The README's screenshot serves the real Kaggle run instead of the small test run.
    run = Path(os.environ.get(RUN_ENV, trained_run))
    app = create_app(Predictor(Explainer(run, device="cpu")))
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    thread.join(timeout=10)


def test_upload_in_headless_chromium(server, kaggle_dir, tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
        film = sorted((kaggle_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
        driver.find_element(By.ID, "file").send_keys(str(film))
        verdict = wait.until(ec.visibility_of_element_located((By.ID, "verdict")))
        assert verdict.text in ("NORMAL", "PNEUMONIA")
        numbers = driver.find_element(By.ID, "numbers").text
        assert "p(pneumonia) = " in numbers and film.name in numbers
        loaded = driver.execute_script(
            "return ['original', 'cam'].every(id => document.getElementById(id).naturalWidth > 0)"
        )
        assert loaded, "the X-ray and its overlay did not both render"
        shot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copy(shot, Path(os.environ[SCREENSHOT_ENV]))
    finally:
        driver.quit()
