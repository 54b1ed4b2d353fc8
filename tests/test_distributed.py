"""The torchrun environment, read and checked; single-process helpers are no-ops."""

import pytest
import torch

from cxr_fast.distributed import DistContext, context_from_env, device_for, gather_objects


def test_plain_run_is_rank_0_of_1():
    ctx = context_from_env({})
    assert ctx == DistContext() and ctx.is_main and not ctx.enabled
    assert gather_objects(ctx, 3) == [3]


def test_torchrun_variables():
    ctx = context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (3, 4, 1)
    assert ctx.enabled and not ctx.is_main
    assert device_for(ctx, torch.device("cuda")) == torch.device("cuda", 1)
    assert device_for(ctx, torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    "env", [{"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}, {"RANK": "x", "WORLD_SIZE": "2"}]
)
def test_bad_variables_are_clear_errors(env):
    with pytest.raises(ValueError, match=r"RANK|WORLD_SIZE"):
        context_from_env(env)


def test_a_hosts_workers_are_shared_by_its_ranks():
    from cxr_fast.distributed import workers_per_rank

    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    ctx = context_from_env(env)
    assert ctx.local_world_size == 4
    assert [workers_per_rank(ctx, n) for n in (16, 6, 3, 0)] == [4, 1, 1, 0]
    assert workers_per_rank(context_from_env({}), 16) == 16  # one process keeps them all
