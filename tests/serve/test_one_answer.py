"""One answer per film: `score`, `serve` and `explain` give the same probability to the bit and
the same verdict, from the same model (the export `score --model RUN` picks, or an ensemble)
and the same pixels (an upload's bytes against the file the loader reads)."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from cxr_fast.explain.explain_stage import ExplainConfig, run_explain
from cxr_fast.explain.explainer import Explainer
from cxr_fast.export import export_run, sidecar_path
from cxr_fast.export.int8 import QUANTIZED_ENGINE
from cxr_fast.scoring.score import ScoreConfig, run_score
from cxr_fast.serve.app import create_app
from cxr_fast.serve.predictor import Predictor
from tests.conftest import IMAGES, KAGGLE, SAMPLES

# Kaggle films, full-resolution JPEG/PNG samples, DICOMs, and a DICOM without its preamble
# (score reads it by its .dcm name, serve by its content).
FILMS = [
    *sorted((KAGGLE / "train" / "PNEUMONIA").glob("*.jpeg"))[:2],
    *sorted((KAGGLE / "train" / "NORMAL").glob("*.jpeg"))[:2],
    SAMPLES / "16747_3_1.jpg",
    SAMPLES / "h0001.png",
    SAMPLES / "siim_sample.dcm",
    IMAGES / "dicom" / "dx_lateral_no_preamble.dcm",
]


@pytest.fixture(scope="module")
def run_with_int8(trained_run, synth_small, tmp_path_factory) -> Path:
    """A copy of the trained cnn run holding the int8 export `score --model RUN` picks."""
    if QUANTIZED_ENGINE not in torch.backends.quantized.supported_engines:
        pytest.skip("no x86 int8 kernels in this PyTorch")
    run = tmp_path_factory.mktemp("one-answer") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "last.pt"))
    int8 = export_run(run, "torchscript", precision="int8", data=synth_small).path
    # The rule, not this host's timing: faster than eager where it was built, so auto takes it.
    side = sidecar_path(int8)
    sidecar = json.loads(side.read_text())
    sidecar["speed"]["speedup_vs_eager"] = 2.5
    side.write_text(json.dumps(sidecar))
    return run


def _archive(tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    archive.mkdir()
    for film in FILMS:
        shutil.copy(film, archive / film.name)
    return archive


def _post(client, film: Path, query: str = "") -> dict:
    # A name that hides the format: serve sniffs it from the bytes.
    data = {"file": (io.BytesIO(film.read_bytes()), f"upload-{film.stem}.bin")}
    answer = client.post(f"/api/predict{query}", data=data, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _check_one_answer(
    run: Path, tmp_path: Path, precision: str, backend: str, batch_size: int | None = None
) -> None:
    archive = _archive(tmp_path)
    out = tmp_path / "preds.parquet"
    config = ScoreConfig(
        archive=archive, model=run, out=out, device="cpu", workers=0, precision=precision
    )
    summary = run_score(replace(config, batch_size=batch_size))
    assert summary.backend == backend and summary.ok == len(FILMS)
    rows = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}

    predictor = Predictor(Explainer(run, device="cpu", precision=precision))
    client = create_app(predictor).test_client()
    assert client.get("/api/model").get_json()["backend"] == backend
    explained = run_explain(
        ExplainConfig(run, (archive,), out=tmp_path / "cams", device="cpu", precision=precision)
    )
    assert explained.backend == backend and f"probabilities from {backend}" in explained.summary()
    by_name = {Path(o.source).name: o.explanation for o in explained.outcomes}

    for film in FILMS:
        row = rows[film.name]
        plain, with_cam = _post(client, film), _post(client, film, "?cam=1")
        explanation = by_name[film.name]
        # To the bit: the same model on the same pixels.
        assert plain["prob_pneumonia"] == row["prob_pneumonia"], film.name
        assert with_cam["prob_pneumonia"] == row["prob_pneumonia"], film.name
        assert explanation.prob == row["prob_pneumonia"], film.name
        assert plain["pred"] == with_cam["pred"] == explanation.pred == row["pred"], film.name
        assert plain["backend"] == backend
        assert plain["threshold"] == pytest.approx(row["threshold"], abs=1e-7)  # Parquet: fp32


def test_a_run_with_an_int8_export_gives_its_answer_everywhere(run_with_int8, tmp_path):
    # Integer arithmetic: a film's answer is the same whatever batch `score` put it in.
    _check_one_answer(run_with_int8, tmp_path, "auto", "torchscript-int8")


def test_an_ensemble_gives_one_answer_everywhere(tiny_ensemble, tmp_path):
    # An eager model's float rounding depends on the batch a film is in (fp32: the last bits;
    # bf16: the third decimal), so `score` scores one film at a time here, as serve does; and
    # fp32, so that the bits are this test's on any CPU (docs/serving.md).
    _check_one_answer(tiny_ensemble, tmp_path, "fp32", "eager", batch_size=1)
