"""Issue 15: ``cxr-fast report RUN`` renders one self-contained page with every section, for a
single run (with an evaluation), an ensemble and a site-calibrated run; in headless Chromium
every section is present and every inline image decodes."""

import os
import shutil

import pytest

from cxr_fast.calibrate import run_calibrate
from cxr_fast.errors import UserInputError
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.report import SECTIONS, write_report
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import run_train_folds

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TINY = dict(
    arch="cnn", image_size=64, batch_size=16, val_fraction=0.25, lr=3e-3, workers=0, export="none"
)


@pytest.fixture(scope="module")
def single(trained_run, kaggle_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("rep") / "single"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval", "export", "*.html"))
    run_evaluate(EvalConfig(run, kaggle_dir, device="cpu", workers=0, bootstrap=50))
    return run


@pytest.fixture(scope="module")
def ensemble(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "ensemble"
    config = TrainConfig(data=str(synth_small), out=str(out), epochs=1, folds=2, gate=False, **TINY)
    return run_train_folds(config, log=lambda _: None).run_dir


@pytest.fixture(scope="module")
def calibrated(trained_run, synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "site"
    run_calibrate(trained_run, synth_small, out, device="cpu", workers=0, bootstrap=50)
    return out


def _sections(page: str) -> list[str]:
    return [key for key, _ in SECTIONS if f'<section id="{key}">' in page]


def test_report_of_single_ensemble_and_calibrated_runs(single, ensemble, calibrated, tmp_path):
    pages = {}
    for name, run in (("single", single), ("ensemble", ensemble), ("site", calibrated)):
        result = write_report(run, tmp_path / f"{name}.html", cams=2)
        page = result.path.read_text()
        assert _sections(page) == [key for key, _ in SECTIONS], name
        assert "http://" not in page and "https://" not in page  # self-contained
        pages[name] = page
    assert "ROC-AUC" in pages["single"] and "data:image/png;base64," in pages["single"]
    assert pages["single"].count("<figure>") == 2  # the Grad-CAM overlays
    assert "Data <code>" in pages["single"]  # the evaluation with its plots
    assert "Out-of-fold predictions" in pages["ensemble"] and "fold-1" in pages["ensemble"]
    # An ensemble has no val folder: its data table says how it was validated, not "val 0 0 0 0".
    assert "<td>val</td><td>2-fold cross-validation</td>" in pages["ensemble"]
    assert "<td>val</td><td>0</td>" not in pages["ensemble"]
    assert "Before (the run as trained)" in pages["site"] and "temperature" in pages["site"]
    assert "strength 3.0000, centred on threshold" in pages["site"]
    # One overwrite policy: the same run's report is rewritten, another run's is not replaced.
    write_report(single, tmp_path / "single.html", cams=0)
    with pytest.raises(UserInputError, match="not a report of"):
        write_report(ensemble, tmp_path / "single.html", cams=0)
    write_report(ensemble, tmp_path / "single.html", cams=0, overwrite=True)


def test_report_renders_in_headless_chromium(single, tmp_path):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"no browser: {', '.join(missing)} missing (make browser)")
        pytest.skip(f"no browser for the report test: {', '.join(missing)} missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    path = write_report(single, tmp_path / "report.html", cams=2).path
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(path.as_uri())
        shown = [s.get_attribute("id") for s in driver.find_elements(By.TAG_NAME, "section")]
        assert shown == [key for key, _ in SECTIONS]
        for key, title in SECTIONS:
            heading = driver.find_element(By.CSS_SELECTOR, f"#{key} h2")
            assert heading.is_displayed() and heading.text == title
        sizes = driver.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth]);"
        )
        assert len(sizes) >= 1 + 4 + 2  # curves, the evaluation's plots, two overlays
        assert all(done and width > 0 for done, width in sizes), sizes
    finally:
        driver.quit()
