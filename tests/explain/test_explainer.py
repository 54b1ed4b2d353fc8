"""Explaining real X-rays with a trained run: overlays written, maps not uniform, errors kept."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cxr_fast.cli import cli
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import read_gray
from cxr_fast.explain.explainer import Explainer, explain_files, overlay_name
from cxr_fast.export.source import run_folder_for
from cxr_fast.fp32 import ieee_fp32
from cxr_fast.inference import sigmoid
from cxr_fast.scoring.model import load_scoring_model


@pytest.fixture(scope="module")
def explainer(trained_run):
    return Explainer(trained_run, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def pneumonia_film(kaggle_dir):
    return str(sorted((kaggle_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[0])


def test_overlay_of_a_pneumonia_film(explainer, pneumonia_film, tmp_path):
    [outcome] = explain_files(explainer, [pneumonia_film], tmp_path)
    assert outcome.error is None and outcome.out.is_file()
    e = outcome.explanation
    assert e.heat.shape == (64, 64)  # the run's contract size
    assert e.heat.min() >= 0.0 and e.heat.max() <= 1.0
    assert float(e.heat.var()) > 1e-3, "heat map is uniform"
    picture = Image.open(outcome.out)
    # Two panels of the display image side by side, and a caption strip under them.
    assert picture.width > 2 * e.display.width and picture.height > e.display.height
    # The overlay panel differs from the plain film where the map is hot.
    plain = np.asarray(e.display.convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(e.overlay, dtype=np.int16) - plain).max() > 50


def test_overlay_is_readable(explainer, pneumonia_film):
    """A 224 px film makes 1024 px panels; where the map is cold the film is untouched."""
    from cxr_fast.explain.overlay import DISPLAY_MIN_SIDE, HEAT_FLOOR, blend, colour_bar

    e = explainer.explain_file(pneumonia_film)
    assert (e.width, e.height) == (224, 224) and e.display.size == (DISPLAY_MIN_SIDE,) * 2
    # A map hot on the left, cold on the right: the right of the film is left as it is.
    heat = np.tile(np.linspace(1.0, 0.0, 64, dtype=np.float32), (64, 1))
    plain = np.asarray(e.display.convert("RGB"), dtype=np.int16)
    tinted = np.asarray(blend(e.display, heat), dtype=np.int16)
    cold = slice(int(DISPLAY_MIN_SIDE * (1 - HEAT_FLOOR)) + 16, None)
    assert np.abs(tinted - plain)[:, cold].max() <= 1
    assert np.abs(tinted - plain)[:, :64].max(axis=-1).min() > 20
    # The colour bar: red at the top, plain grey under the floor.
    bar = np.asarray(colour_bar(200, 10), dtype=np.int16)
    assert bar[0, 0, 0] > bar[0, 0, 2] + 50
    assert (bar[-int(200 * HEAT_FLOOR) + 2 :] == 128).all()
    assert e.picture.width > 2 * e.display.width + 10  # both panels and the bar


def test_small_and_large_films_get_inspectable_panels():
    from cxr_fast.explain.overlay import display_size

    assert display_size(472, 284) == (1024, 616)
    assert display_size(1036, 885) == (1036, 885)
    assert display_size(3000, 2500) == (2048, 1707)


def test_probability_is_the_scorers(explainer, trained_run, pneumonia_film):
    e = explainer.explain_file(pneumonia_film)
    model = load_scoring_model(trained_run, "eager", torch.device("cpu"), precision="fp32")
    pixels, _ = read_gray(pneumonia_film, model.contract)
    prob = float(sigmoid(model.logits(stack_gray([pixels], model.contract)).numpy())[0])
    assert e.prob == pytest.approx(prob, abs=1e-6)


def test_gradcam_plus_plus_and_dicom(trained_run, samples_dir, tmp_path):
    explainer = Explainer(trained_run, device="cpu", method="gradcam++")
    [outcome] = explain_files(explainer, [str(samples_dir / "siim_sample.dcm")], tmp_path)
    assert outcome.error is None and outcome.out.is_file()


def test_unreadable_file_is_an_outcome_not_a_crash(explainer, pneumonia_film, tmp_path):
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"not an image")
    outcomes = explain_files(explainer, [str(broken), pneumonia_film], tmp_path / "out")
    assert outcomes[0].out is None and "not an image" in outcomes[0].error
    assert outcomes[1].out is not None


def test_same_names_in_different_folders_do_not_collide():
    assert overlay_name("/a/NORMAL/x.jpeg") != overlay_name("/b/NORMAL/x.jpeg")


def test_exports_are_refused_with_the_reason(trained_run, tmp_path):
    from cxr_fast.export import export_run

    exported = export_run(trained_run, "torchscript", out=tmp_path / "m.ts", device="cpu").path
    with pytest.raises(ValueError, match="keep no gradients"):
        Explainer(exported)
    with pytest.raises(ValueError, match="keep no gradients"):
        run_folder_for(exported)  # not under RUN/export/: the run cannot be found


def test_cli_explain(trained_run, kaggle_dir, tmp_path):
    folder = kaggle_dir / "train" / "PNEUMONIA"
    result = CliRunner().invoke(
        cli, ["explain", str(trained_run), str(folder), "--out", str(tmp_path), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    written = sorted(tmp_path.glob("*.cam.png"))
    assert len(written) == len(list(folder.glob("*.jpeg")))
    assert "overlays in" in result.output
    bad = CliRunner().invoke(cli, ["explain", str(trained_run), str(folder), "--layer", "nope"])
    assert bad.exit_code != 0 and "no layer 'nope'" in str(bad.exception or bad.output)


@pytest.mark.gpu
def test_cuda_map_matches_the_cpu_one(trained_run, pneumonia_film):
    on_cpu = Explainer(trained_run, device="cpu").explain_file(pneumonia_film)
    with ieee_fp32():  # TF32 convolutions alone would move the probability by ~1e-3
        on_gpu = Explainer(trained_run, device="cuda").explain_file(pneumonia_film)
    assert on_gpu.prob == pytest.approx(on_cpu.prob, abs=1e-4)
    assert np.abs(on_gpu.heat - on_cpu.heat).max() < 0.02


def test_a_cropping_contract_shows_the_crop_under_the_map(trained_run, tmp_path):
    """With crop < 1 the picture shows the central region the model saw, not the whole film."""
    from dataclasses import replace

    cropping = Explainer(trained_run, device="cpu", precision="fp32")
    contract = replace(cropping.contract, crop=0.6)
    cropping.scoring = replace(cropping.scoring, contract=contract)
    side, frame = 400, 60
    pixels = np.tile(np.linspace(0, 120, side), (side, 1)).astype(np.uint8)
    pixels[:frame], pixels[-frame:], pixels[:, :frame], pixels[:, -frame:] = 255, 255, 255, 255
    path = tmp_path / "framed.png"
    Image.fromarray(pixels).save(path)
    e = cropping.explain_file(str(path))
    assert (e.width, e.height) == (side, side)  # the original size is still what is reported
    shown = np.asarray(e.display.convert("L"))
    assert shown.max() < 140, "the white frame outside the central 60% is not shown"
    whole = np.asarray(Explainer(trained_run, device="cpu").explain_file(str(path)).display)
    assert whole.max() > 250
