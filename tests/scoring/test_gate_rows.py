"""score with a run whose input gate is fitted: films that are not chest X-rays get no verdict."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from bench.ood_corpus import build_corpus
from cxr_fast.export.sidecar import read_sidecar
from cxr_fast.run_folder import read_run
from tests.cli_in_process import run_main

# The 16 inputs of the report that asked for the gate, as the corpus names them.
REPORTED = [
    "photo/flower.jpeg",
    "text/page-0.png",
    "pattern/grey.png",
    "pattern/white.png",
    "pattern/black.png",
    "pattern/gradient-h.png",
    "pattern/checkerboard.png",
    "photo/china-grey.jpeg",
    "photo/grace_hopper-grey.png",
    "other-modality/CT_small.dcm",
    "other-modality/MR_small.dcm",
    "other-modality/ExplVR_BigEnd.dcm",
    "pattern/noise-uniform.png",
    "photo/flower-grey.jpeg",
    "pattern/gradient-v.png",
    "text/page-1.png",
]


@pytest.fixture(scope="module")
def gated_run(trained_run, kaggle_dir, tmp_path_factory):
    """The shared small run with its gate fitted by `cxr-fast ood-fit` on the real films."""
    run = tmp_path_factory.mktemp("gated") / "run"
    shutil.copytree(trained_run, run)
    return run


def test_ood_fit_then_score(gated_run, kaggle_dir, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(
        monkeypatch, capsys, "ood-fit", str(gated_run), "--data", str(kaggle_dir)
    )
    assert code == 0, err
    assert "input gate: fitted on 39 films" in out
    assert "gate" in read_run(gated_run)[1].meta

    archive = tmp_path / "archive"
    corpus = tmp_path / "corpus"
    build_corpus(corpus)
    for name in REPORTED:
        target = archive / name.replace("/", "-")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / name, target)
    films = sorted(kaggle_dir.rglob("*.jpeg"))[:6]
    for film in films:
        shutil.copyfile(film, archive / film.name)

    out_file = tmp_path / "p.parquet"
    code, out, err = run_main(
        monkeypatch, capsys, "score", str(archive), "--model", str(gated_run),
        "--out", str(out_file),
        "--workers", "0",
    )  # fmt: skip
    assert code == 0, err
    assert "(6 ok, 16 not_cxr," in out
    table = pq.read_table(out_file).to_pylist()
    refused = [r for r in table if r["status"] == "not_cxr"]
    assert len(refused) == 16
    assert all(r["prob_pneumonia"] is None and r["pred"] is None and r["error"] for r in refused)
    assert all(r["ood_score"] is not None for r in table)
    assert {r["path"].rsplit("/", 1)[1] for r in table if r["status"] == "ok"} == {
        f.name for f in films
    }
    metadata = pq.read_schema(out_file).metadata
    assert json.loads(metadata[b"cxr_fast_not_cxr"]) == 16
    assert json.loads(metadata[b"cxr_fast_gate"])["threshold"] > 0

    accepted = tmp_path / "accepted.parquet"
    code, out, err = run_main(
        monkeypatch, capsys, "score", str(archive), "--model", str(gated_run),
        "--out", str(accepted),
        "--workers", "0", "--accept-ood",
    )  # fmt: skip
    assert code == 0, err
    rows = pq.read_table(accepted).to_pylist()
    assert all(r["status"] == "ok" and r["pred"] for r in rows)
    flagged = [r for r in rows if r["warnings"] and "--accept-ood" in r["warnings"]]
    assert len(flagged) == 16
    # --resume of that output with the gate on is refused: its rows were made another way.
    code, _, err = run_main(
        monkeypatch, capsys, "score", str(archive), "--model", str(gated_run),
        "--out", str(accepted),
        "--resume",
    )  # fmt: skip
    assert code == 2


def test_ood_fit_carries_the_gate_into_exports(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    exported = sorted((run / "export").glob("*.json"))
    if not exported:
        code, _, err = run_main(monkeypatch, capsys, "export", str(run), "--format", "torchscript")
        assert code == 0, err
        exported = sorted((run / "export").glob("*.json"))
    model_file = exported[0].with_suffix("")
    code, out, err = run_main(monkeypatch, capsys, "ood-fit", str(run), "--data", str(kaggle_dir))
    assert code == 0, err
    assert model_file.name in out
    sidecar = read_sidecar(model_file)  # the seal holds, gate included
    assert sidecar["gate"] == read_run(run)[1].meta["gate"]
    # An edit of the gate breaks the seal like an edit of the threshold.
    side = model_file.with_name(model_file.name + ".json")
    data = json.loads(side.read_text())
    data["gate"]["threshold"] = 1e9
    side.write_text(json.dumps(data))
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "score",
        str(kaggle_dir),
        "--model",
        str(model_file),
        "--out",
        str(tmp_path / "x.parquet"),
    )
    assert code == 2 and "edited" in err
