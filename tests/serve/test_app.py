"""The web API through Flask's test client: answers equal `cxr-fast score`, bad input is a 4xx."""

import base64
import io
import shutil

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cxr_fast.explain.explainer import Explainer
from cxr_fast.scoring.score import ScoreConfig, run_score
from cxr_fast.serve.app import create_app
from cxr_fast.serve.predictor import Predictor, roc_auc_label
from tests.bad_files import write_bad_files


@pytest.fixture(scope="module")
def predictor(trained_run):
    # fp32: equal answers to the last digit. Under bf16 autocast (the default on a CPU with
    # native bf16) oneDNN's rounding depends on the batch and the thread count, which serve and
    # score choose differently (seen: 0.07056 vs 0.07013); tests/test_precision.py bounds that.
    return Predictor(Explainer(trained_run, device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def client(predictor):
    return create_app(predictor).test_client()


def _post(client, data: bytes, name: str = "x.jpeg", query: str = ""):
    return client.post(
        f"/api/predict{query}",
        data={"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_health_model_and_page(client, trained_run):
    assert client.get("/healthz").get_json()["status"] == "ok"
    model = client.get("/api/model").get_json()
    assert model["arch"] == "cnn" and model["contract"]["image_size"] == 64
    assert 0 < model["threshold"] < 1 and "roc_auc" in model["metrics"]
    assert model["roc_auc_label"] == "validation ROC-AUC"
    page = client.get("/")
    assert page.status_code == 200 and b'id="file"' in page.data
    assert b"m.roc_auc_label" in page.data and b"validation ROC-AUC" not in page.data


def test_roc_auc_label_says_out_of_fold_for_an_ensemble():
    assert roc_auc_label({"split": "out-of-fold", "roc_auc": 0.9}) == "out-of-fold ROC-AUC"
    assert roc_auc_label({"split": "validation"}) == "validation ROC-AUC"
    assert roc_auc_label({"split": "site sample"}) == "ROC-AUC (site sample)"


def test_predict_equals_score_for_the_same_files(client, trained_run, kaggle_dir, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    films = sorted((kaggle_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:3]
    films += sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]
    for film in films:
        shutil.copy(film, archive / film.name)
    out = tmp_path / "preds.parquet"
    config = ScoreConfig(
        archive=archive, model=trained_run, out=out, device="cpu", workers=0, precision="fp32"
    )
    run_score(config)
    scored = {r["path"]: r for r in pq.read_table(out).to_pylist()}
    for film in films:
        answer = _post(client, film.read_bytes(), film.name).get_json()
        row = scored[str(archive / film.name)]
        assert answer["prob_pneumonia"] == pytest.approx(row["prob_pneumonia"], abs=1e-6)
        assert answer["pred"] == row["pred"]
        assert (answer["width"], answer["height"]) == (row["width"], row["height"])
        assert set(answer) == {
            *("prob_pneumonia", "pred", "threshold", "model", "backend", "width", "height"),
            *("prob_text", "threshold_text", "ood_score", "warnings"),
        }
        assert answer["ood_score"] == row["ood_score"]  # None: this run has no fitted gate
        assert float(answer["prob_text"]) == pytest.approx(answer["prob_pneumonia"], abs=1e-3)


def test_cam_adds_png_overlay_and_original(client, samples_dir):
    answer = _post(client, (samples_dir / "16747_3_1.jpg").read_bytes(), query="?cam=1")
    assert answer.status_code == 200
    body = answer.get_json()
    overlay = Image.open(io.BytesIO(base64.b64decode(body["cam_png"])))
    original = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    assert overlay.format == "PNG" and overlay.size == original.size
    # The film's own resolution (1036x885): between DISPLAY_MIN_SIDE and DISPLAY_MAX_SIDE.
    assert overlay.size == (1036, 885) and overlay.mode == "RGB"


def test_formats_are_sniffed_not_taken_from_the_name(client, samples_dir):
    dicom = _post(client, (samples_dir / "siim_sample.dcm").read_bytes(), "scan.jpeg")
    png = _post(client, (samples_dir / "h0001.png").read_bytes(), "photo.dcm")
    assert dicom.status_code == 200 and png.status_code == 200
    # A DICOM without its preamble (as `score` reads it from a .dcm name).
    headerless = samples_dir.parent / "dicom" / "dx_lateral_no_preamble.dcm"
    assert _post(client, headerless.read_bytes(), "lateral").status_code == 200


def test_every_bad_kind_is_a_clear_json_error(client, samples_dir, tmp_path):
    expected = write_bad_files(tmp_path, samples_dir)
    for name, status in expected.items():
        path = tmp_path / name
        if not path.exists() or name == "locked.jpeg":
            continue  # a dangling link or an unreadable file cannot be uploaded
        answer = _post(client, path.read_bytes(), name)
        body = answer.get_json()
        if status == "ok":
            assert answer.status_code == 200, (name, body)
        else:
            assert answer.status_code in (413, 422), (name, body)
            assert body["error"].startswith(name) and body["status"] == answer.status_code
    assert _post(client, (tmp_path / "bomb.jpeg").read_bytes()).status_code == 413
    assert "empty" in _post(client, b"").get_json()["error"]


def test_upload_limit_method_field_and_route(predictor, samples_dir):
    client = create_app(predictor, max_upload_mb=0.1).test_client()
    big = _post(client, (samples_dir / "h0001.png").read_bytes(), "h.png")  # 331 KB
    assert big.status_code == 413 and "0.1 MB limit" in big.get_json()["error"]
    wrong = client.get("/api/predict")
    assert wrong.status_code == 405 and wrong.is_json
    missing = client.post("/api/predict", data={"other": "x"})
    assert missing.status_code == 400 and "'file'" in missing.get_json()["error"]
    assert client.get("/nope").status_code == 404 and client.get("/nope").is_json


def test_names_never_become_paths(client, samples_dir, tmp_path):
    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    answer = _post(client, b"junk", "../../etc/passwd")
    assert answer.status_code == 422 and answer.get_json()["error"].startswith("passwd:")
    assert _post(client, data, "../../x.jpeg").status_code == 200


def _dicom_bomb(samples_dir, **changes) -> bytes:
    """A real DICOM film whose header declares ``changes`` (Rows, Columns)."""
    import pydicom

    ds = pydicom.dcmread(samples_dir.parent / "dicom" / "cr_uncompressed.dcm")
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_a_dicom_header_bomb_is_413(client, samples_dir):
    import struct

    huge = _post(client, _dicom_bomb(samples_dir, Rows=65535, Columns=65535), "huge.dcm")
    assert huge.status_code == 413 and "65535x65535 pixels" in huge.get_json()["error"]
    # Pixel data that claims 4 GB: read from the upload, its value is just the file's rest.
    data = bytearray(_dicom_bomb(samples_dir))
    tag = data.rindex(b"\xe0\x7f\x10\x00OW")  # (7FE0,0010) PixelData, explicit VR
    struct.pack_into("<I", data, tag + 8, 0xFFFFFFF0)
    claimed = _post(client, bytes(data), "claimed.dcm")
    assert claimed.status_code == 413
    assert "element (7FE0,0010) declares 4,295 MB" in claimed.get_json()["error"]
    assert _post(client, _dicom_bomb(samples_dir), "fine.dcm").status_code == 200


def test_reasons_keep_their_words_whatever_the_upload_is_called(client, samples_dir):
    report = (samples_dir.parent / "dicom" / "sr_report.dcm").read_bytes()
    answer = _post(client, report, "e").get_json()  # the name once was cut out of the reason
    assert answer["error"] == "e: not an image: Basic Text SR Storage without pixel data"


def test_too_many_form_fields_is_a_413_that_says_so(client, predictor):
    fields = {f"field{i}": "x" for i in range(20_000)}
    answer = client.post("/api/predict", data=fields, content_type="multipart/form-data")
    assert answer.status_code == 413
    error = answer.get_json()["error"]
    assert "too many form fields (20,000" in error and "MB limit" not in error
    big_field = {"note": "x" * 600_000, "file": (io.BytesIO(b"x"), "x.jpeg")}
    answer = client.post("/api/predict", data=big_field, content_type="multipart/form-data")
    assert answer.status_code == 413
    assert "form field other than 'file'" in answer.get_json()["error"]
    # The upload limit keeps its own message.
    small = create_app(predictor, max_upload_mb=0.1).test_client()
    assert "0.1 MB limit" in small.post("/api/predict", data=fields).get_json()["error"]


def _raw_upload(client, data: bytes, filename: bytes):
    """A multipart upload whose part header carries ``filename`` as raw bytes."""
    boundary = b"cxrFastBoundary"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )  # fmt: skip
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    return client.post("/api/predict", data=body, content_type=content_type)


def test_a_file_name_that_is_not_utf8_is_still_the_upload(client, samples_dir):
    film = (samples_dir / "16747_3_1.jpg").read_bytes()
    latin1 = "radiografía-tórax.jpeg".encode("latin-1")  # as an older Windows client sends it
    answer = _raw_upload(client, film, latin1)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["prob_pneumonia"] == _post(client, film).get_json()["prob_pneumonia"]
    junk = _raw_upload(client, b"not an image", latin1)
    assert junk.status_code == 422
    assert junk.get_json()["error"].startswith("radiografía-tórax.jpeg: not an image")
