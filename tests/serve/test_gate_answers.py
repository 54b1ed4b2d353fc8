"""serve and explain ask the input gate first: a film that is not a chest X-ray gets no verdict."""

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from cxr_fast.explain.explainer import Explainer, explain_files
from cxr_fast.gate.store import fit_and_store
from cxr_fast.serve.app import create_app
from cxr_fast.serve.predictor import Predictor


@pytest.fixture(scope="module")
def gated_run(trained_run, kaggle_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("gated-serve") / "run"
    shutil.copytree(trained_run, run)
    fit_and_store(run, kaggle_dir)
    return run


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client, data: bytes, name: str):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), name)})


def test_serve_answers_422_for_what_is_not_a_chest_film(gated_run, kaggle_dir):
    explainer = Explainer(gated_run, device="cpu")
    client = create_app(Predictor(explainer)).test_client()
    blank = _post(client, _png(np.full((400, 400), 128, np.uint8)), "blank.png")
    assert blank.status_code == 422
    assert "does not look like a chest X-ray" in blank.get_json()["error"]
    film = next(kaggle_dir.rglob("*.jpeg"))
    answer = _post(client, film.read_bytes(), film.name)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["pred"] in ("NORMAL", "PNEUMONIA") and body["ood_score"] > 0
    accepting = create_app(Predictor(explainer, accept_ood=True)).test_client()
    forced = _post(accepting, _png(np.full((400, 400), 128, np.uint8)), "blank.png").get_json()
    assert forced["pred"] in ("NORMAL", "PNEUMONIA")
    assert "--accept-ood" in forced["warnings"]


def test_explain_refuses_what_is_not_a_chest_film(gated_run, kaggle_dir, tmp_path):
    blank = tmp_path / "blank.png"
    blank.write_bytes(_png(np.full((400, 400), 0, np.uint8)))
    film = next(kaggle_dir.rglob("*.jpeg"))
    outcomes = explain_files(Explainer(gated_run, device="cpu"), [str(blank), str(film)], tmp_path)
    assert "does not look like a chest X-ray" in outcomes[0].error and outcomes[0].out is None
    assert outcomes[1].out is not None
    forced = explain_files(
        Explainer(gated_run, device="cpu", accept_ood=True), [str(blank)], tmp_path / "f"
    )
    assert forced[0].out is not None
