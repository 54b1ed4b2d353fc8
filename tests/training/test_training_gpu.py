"""Training on CUDA on its first run: NCCL under torchrun (device_id, barrier, gathered
validation), SyncBatchNorm under bf16 autocast in channels_last, resume with fp16 scaler state."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.data.discover import discover
from cxr_fast.distributed import context_from_env, gather_objects, start, stop
from cxr_fast.run_folder import LAST_FILE
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.train_data import select_train_val
from cxr_fast.training.trainer import run_train
from tests.training.test_ddp import _torchrun

pytestmark = pytest.mark.gpu


def _needs_gpus(n: int) -> None:
    if torch.cuda.device_count() < n:
        pytest.skip(f"needs {n} GPUs")


def test_resume_on_cuda_with_fp16_scaler_state(synth_small, tmp_path):
    out = tmp_path / "run"
    common = dict(
        data=str(synth_small),
        out=str(out),
        arch="cnn",
        image_size=64,
        batch_size=16,
        workers=2,
        device="cuda",
        precision="amp-fp16",
        folds=1,
        export="none",
    )
    run_train(TrainConfig(epochs=1, **common), log=lambda _: None)
    state = torch.load(out / LAST_FILE, map_location="cpu", weights_only=True)
    assert state["scaler"]["scale"] > 0  # an enabled GradScaler saved its scale
    assert isinstance(state["rng"]["cuda"], torch.Tensor)  # the training GPU's state only
    result = run_train(TrainConfig(epochs=2, **common), resume=True, log=lambda _: None)
    assert result.epochs_done == 2
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert all(entry["train_loss"] == entry["train_loss"] for entry in log)  # finite


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_nccl_ddp_with_sync_bn_bf16_and_dali(synth_small, tmp_path):
    _needs_gpus(2)
    out = tmp_path / "run"
    _torchrun(
        "train", "--data", str(synth_small), "--out", str(out), "--epochs", "2", "--arch", "cnn",
        "--image-size", "64", "--batch-size", "16", "--workers", "2", "--device", "cuda",
        "--loader", "dali", "--precision", "amp-bf16", "--sync-bn", "--val-fraction", "0.25",
        "--export", "none",
    )  # fmt: skip
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["processes"] for entry in log] == [2, 2]
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text())["train"])
    val = select_train_val(discover(synth_small), config.val_fraction, config.seed).val
    metrics = json.loads((out / "metrics.json").read_text())
    # Gathered over both ranks, every validation image once, no padding (2 epochs: the
    # reused validation loader reads the same shard again).
    assert metrics["counts"]["n"] == len(val)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, results) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    ctx = context_from_env()
    start(ctx, torch.device("cuda"))
    device = torch.device("cuda", rank)
    assert dist.get_backend() == "nccl" and torch.cuda.current_device() == rank
    torch.manual_seed(rank)  # different data per rank: the statistics must be synchronised
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8))
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(device=device, memory_format=torch.channels_last).train()
    x = torch.rand(4, 1, 16, 16, device=device).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    y.float().mean().backward()
    stats = net[1].running_mean.detach().cpu()
    layout = y.is_contiguous(memory_format=torch.channels_last)
    gathered = gather_objects(ctx, (stats, bool(torch.isfinite(y).all()), layout))
    if rank == 0:
        results.put(gathered)
    stop(ctx)  # barrier, then leave


def test_nccl_start_barrier_gather_and_sync_batchnorm_bf16_channels_last():
    _needs_gpus(2)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_rank_main, args=(2, _free_port(), results), nprocs=2, start_method="spawn")
    (stats0, finite0, cl0), (stats1, finite1, cl1) = results.get()
    assert torch.allclose(stats0, stats1)  # synchronised running statistics on both ranks
    assert finite0 and finite1 and cl0 and cl1
