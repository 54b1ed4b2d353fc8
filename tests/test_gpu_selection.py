"""Which GPU a process uses, asked without a GPU: torch.cuda's calls are stood in for, and the
tests check which device each question and state goes to."""

import contextlib
import random

import pytest
import torch

from cxr_fast.distributed import DistContext, use_device
from cxr_fast.precision import resolve_precision
from cxr_fast.training.rng import restore_rng_state, rng_state


@pytest.fixture
def two_gpus(monkeypatch):
    """GPU 0 an H100 (sm90), GPU 1 a T4 (sm75); records set_device and the current device."""
    gpus = {"current": 0, "set": [], "caps": {0: (9, 0), 1: (7, 5)}}

    @contextlib.contextmanager
    def device(dev):
        previous, gpus["current"] = gpus["current"], torch.device(dev).index
        yield
        gpus["current"] = previous

    def is_bf16_supported(including_emulation=True):
        # torch's logic: the *current* device; sm75 counts only with emulation.
        return gpus["caps"][gpus["current"]][0] >= 8 or including_emulation

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: gpus["current"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: gpus["set"].append(dev))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return gpus


def test_a_torchrun_rank_makes_its_own_gpu_current(two_gpus):
    ctx = DistContext(rank=3, world_size=4, local_rank=1)
    assert use_device(ctx, torch.device("cuda")) == torch.device("cuda", 1)
    assert two_gpus["set"] == [torch.device("cuda", 1)]
    assert use_device(ctx, torch.device("cpu")) == torch.device("cpu")
    assert use_device(DistContext(), torch.device("cuda")) == torch.device("cuda")
    assert two_gpus["set"] == [torch.device("cuda", 1)]  # neither CPU nor a plain run sets one


def test_auto_precision_asks_about_the_chosen_gpu_without_emulation(two_gpus):
    # The current device is the H100; the T4 is the one training, and emulates bf16.
    assert resolve_precision("auto", torch.device("cuda", 1)).name == "amp-fp16"
    assert resolve_precision("auto", torch.device("cuda", 0)).name == "amp-bf16"
    two_gpus["current"] = 1
    assert resolve_precision("auto", torch.device("cuda")).name == "amp-fp16"


def test_only_the_training_gpus_generator_is_saved_and_restored(monkeypatch):
    saved = torch.ByteTensor([7, 7, 7])
    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda dev: asked.append(dev) or saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, dev: restored.append((s, dev)))
    fail = pytest.fail
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda _: fail("all GPUs' states"))
    gpu = torch.device("cuda", 2)
    state = rng_state(gpu)
    assert asked == [gpu] and state["cuda"] is saved
    # Resumed on a host whose training GPU is cuda:0 (fewer GPUs visible).
    restore_rng_state(state, torch.device("cuda", 0))
    assert restored == [(saved, torch.device("cuda", 0))]


def test_files_with_every_gpus_state_resume_with_the_first(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, dev: restored.append((s, dev)))
    states = [torch.ByteTensor([i]) for i in range(4)]  # saved on a 4-GPU host
    state = {**rng_state(torch.device("cpu")), "cuda": states}
    restore_rng_state(state, torch.device("cuda", 0))
    assert restored == [(states[0], torch.device("cuda", 0))]


def test_cpu_state_round_trips():
    state = rng_state(torch.device("cpu"))
    assert state["cuda"] is None
    expected = (torch.rand(3), random.random())
    restore_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


@pytest.mark.parametrize("shard", [(1, 2), (0, 4), (3, 8)])
def test_scoring_under_torchrun_takes_the_ranks_gpu_with_or_without_shard(
    two_gpus, monkeypatch, shard
):
    # The scorer's own call, not the helper: an explicit --shard used to skip use_device.
    from types import SimpleNamespace

    from cxr_fast.scoring import score

    monkeypatch.setattr(score, "start", lambda ctx, device: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    config = SimpleNamespace(shard=shard)  # (1, 2): the environment's own slice
    _, coordinated, device = score._coordinate(config, torch.device("cuda"))
    assert device == torch.device("cuda", 1)
    assert two_gpus["set"] == [torch.device("cuda", 1)]
    assert coordinated is (config.shard == (1, 2))


def test_a_plain_scoring_run_makes_no_gpu_current(two_gpus, monkeypatch):
    from types import SimpleNamespace

    from cxr_fast.scoring import score

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    _, coordinated, device = score._coordinate(SimpleNamespace(shard=(0, 4)), torch.device("cuda"))
    assert device == torch.device("cuda") and not coordinated and two_gpus["set"] == []
