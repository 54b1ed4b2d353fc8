"""A content check fitted on the committed real Kaggle films, and the non-chest corpus."""

from pathlib import Path

import pytest

from cxr_fast.contract import PreprocessContract


@pytest.fixture(scope="session")
def real_gate(kaggle_dir):
    """The input gate of a 64 px contract fitted on the committed real films (39 of them)."""
    from cxr_fast.data.discover import discover
    from cxr_fast.gate import InputGate
    from cxr_fast.gate.fit import fit_gate

    contract = PreprocessContract(image_size=64)
    return InputGate(contract, fit_gate(discover(kaggle_dir), contract, workers=2))


@pytest.fixture(scope="session")
def non_chest(tmp_path_factory, kaggle_dir) -> dict[str, list[Path]]:
    """bench/ood_corpus.py's inputs that are not chest radiographs, by category."""
    from bench.ood_corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("ood-corpus"), chest=kaggle_dir)
