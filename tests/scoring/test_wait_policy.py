"""OpenMP's wait policy: `score` asks for PASSIVE before torch loads, and then gives the model
every core."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from cxr_fast.scoring import wait_policy
from cxr_fast.scoring.score import ScoreConfig, model_threads


def _policy_in_fresh_interpreter(env_value: str | None) -> str:
    code = (
        "import os; from cxr_fast.scoring import wait_policy; wait_policy.prefer_passive(); "
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {"PATH": ""} if env_value is None else {"OMP_WAIT_POLICY": env_value}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_passive_unless_the_user_chose_a_policy():
    assert _policy_in_fresh_interpreter(None) == "PASSIVE"
    assert _policy_in_fresh_interpreter("ACTIVE") == "ACTIVE"


def test_not_set_once_torch_has_read_it():
    env: dict[str, str] = {}
    wait_policy.prefer_passive(env)  # torch is loaded in this process
    assert env == {}


@pytest.mark.parametrize(
    ("value", "passive"), [("PASSIVE", True), (" passive ", True), ("ACTIVE", False), ("", False)]
)
def test_is_passive(value, passive):
    assert wait_policy.is_passive({"OMP_WAIT_POLICY": value}) is passive


def test_a_passive_policy_gives_the_model_every_core(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    config = ScoreConfig(archive=tmp_path, model=tmp_path, out=tmp_path / "p.parquet", workers=2)
    # No model is timed under a passive policy: the choice needs none.
    cores = torch.get_num_threads()
    assert model_threads(config, torch.device("cpu"), model=None, paths=[]) == cores
    assert model_threads(replace(config, threads=1), torch.device("cpu"), None, []) == 1
