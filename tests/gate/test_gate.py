"""The input gate on real films and on inputs that are not chest radiographs."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.ood_gate import judge_files
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import read_image
from cxr_fast.errors import UserInputError
from cxr_fast.gate import InputGate
from cxr_fast.gate.content import ContentGate
from cxr_fast.gate.metadata import metadata_reason
from cxr_fast.gate.pixels import span_reason


def test_every_non_chest_input_is_refused(real_gate, non_chest):
    judged = judge_files(real_gate, [str(p) for files in non_chest.values() for p in files])
    # The one corpus input that may pass a 39-film fit is a film turned sideways: still a
    # chest film. Everything else, photos, pages, patterns and other modalities, is refused.
    passed = [p for p, j in judged if not j.refused and "non-frontal" not in p]
    assert passed == []
    assert len(judged) >= 50


def test_real_chest_films_pass(real_gate, kaggle_dir, samples_dir):
    judged = judge_files(real_gate, sorted(str(p) for p in kaggle_dir.rglob("*.jpeg")))
    assert all(not j.refused for _, j in judged)
    dicoms = judge_files(
        real_gate, sorted(str(p) for p in (kaggle_dir.parent / "dicom").glob("cr_*.dcm"))
    )
    assert dicoms and all(not j.refused for _, j in dicoms)
    # Films of other hospitals at full resolution (NIH PNG, a JPEG): not refused by a gate fitted
    # on 39 Kaggle films either.
    others = judge_files(
        real_gate, [str(samples_dir / n) for n in ("00000001_000.png", "16747_3_1.jpg")]
    )
    assert [j.refused for _, j in others] == [False, False]


def test_ood_score_separates(real_gate, kaggle_dir, non_chest):
    from sklearn.metrics import roc_auc_score

    chest = [
        j.ood_score for _, j in judge_files(real_gate, sorted(map(str, kaggle_dir.rglob("*.jpeg"))))
    ]
    other = [
        j.ood_score
        for _, j in judge_files(real_gate, [str(p) for f in non_chest.values() for p in f])
    ]
    y = np.r_[np.zeros(len(chest)), np.ones(len(other))]
    assert roc_auc_score(y, np.r_[chest, other]) > 0.98


@pytest.mark.parametrize(
    ("info", "refused"),
    [
        ({"modality": "CT"}, "Modality CT"),
        ({"modality": "MR", "body_part_examined": "CHEST"}, "Modality MR"),
        ({"modality": "CR", "body_part_examined": "SKULL"}, "BodyPartExamined SKULL"),
        ({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.2.1"}, "is CT"),
        ({"modality": "DX", "body_part_examined": "PORT CHEST"}, None),
        ({"modality": "CR", "body_part_examined": "THORAX"}, None),
        ({"modality": "CR", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_metadata(info, refused):
    reason = metadata_reason(info)
    assert (reason is None) if refused is None else (refused in reason)


def test_modalities_widen():
    assert metadata_reason({"modality": "RG"}) is not None
    assert metadata_reason({"modality": "RG"}, ("CR", "DX", "RG")) is None


def test_near_constant_and_real_film(kaggle_dir):
    film = next(kaggle_dir.rglob("*.jpeg"))
    grey = np.full((1, 64, 64), 0.5)
    faint = 0.5 + np.random.default_rng(0).uniform(0, 0.01, (1, 64, 64))
    real = np.asarray(Image.open(film).convert("L").resize((64, 64)))[None] / 255
    reasons = span_reason(np.concatenate([grey, faint, real]))
    assert "near-constant" in reasons[0] and "near-constant" in reasons[1]
    assert reasons[2] is None


def test_colour_is_measured_where_decoded(tmp_path, kaggle_dir):
    contract = PreprocessContract(image_size=64)
    yy, xx = np.mgrid[0:256, 0:256]
    colour = np.stack([xx, yy, 255 - xx], axis=-1).astype(np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    film = np.asarray(Image.open(next(kaggle_dir.rglob("*.jpeg"))).convert("L"))
    Image.fromarray(film).convert("RGB").save(tmp_path / "grey-as-rgb.png")
    assert read_image(str(tmp_path / "colour.png"), contract).info["chroma"] > 100
    assert read_image(str(tmp_path / "grey-as-rgb.png"), contract).info["chroma"] == 0
    gate = InputGate(contract, None)
    read = read_image(str(tmp_path / "colour.png"), contract)
    (judgement,) = gate.judge(stack_gray([read.pixels], contract), [read.info])
    assert "colour picture" in judgement.reason


def test_judgement_is_the_same_for_any_layout(real_gate, kaggle_dir):
    films = sorted(kaggle_dir.rglob("*.jpeg"))[:4]
    x = stack_gray(
        [read_image(str(f), real_gate.contract).pixels for f in films], real_gate.contract
    )
    a = real_gate.judge(x, [None] * 4)
    b = real_gate.judge(x.contiguous(), [None] * 4)
    assert [j.ood_score for j in a] == [j.ood_score for j in b]


def test_stored_gate_round_trips_and_damage_is_one_line(real_gate):
    stored = real_gate.content.to_dict()
    again = ContentGate.from_dict(stored)
    x = torch.rand(3, 1, 64, 64)
    gate = InputGate(real_gate.contract, again)
    assert [j.ood_score for j in gate.judge(x, [None] * 3)] == pytest.approx(
        [j.ood_score for j in real_gate.judge(x, [None] * 3)], rel=1e-5
    )
    with pytest.raises(UserInputError, match="damaged"):
        ContentGate.from_dict({**stored, "precision": "AAAA"})
    with pytest.raises(UserInputError, match="ood-fit"):
        ContentGate.from_dict({**stored, "descriptor_version": 0})
