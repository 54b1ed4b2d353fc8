"""Which records a shard owns: contiguous, disjoint, covering, as DALI's readers split them."""

from __future__ import annotations

from cxr_fast.errors import UserInputError


def shard_range(n: int, shard_id: int, num_shards: int) -> range:
    """Positions ``[n * i // k, n * (i + 1) // k)`` of shard ``i`` of ``k`` over ``n`` items."""
    if num_shards < 1:
        raise UserInputError(f"--shard {shard_id}/{num_shards}: N must be at least 1")
    if not 0 <= shard_id < num_shards:
        raise UserInputError(
            f"--shard {shard_id}/{num_shards}: I counts from 0, so with N = {num_shards} it must "
            f"be 0 to {num_shards - 1}"
        )
    return range(n * shard_id // num_shards, n * (shard_id + 1) // num_shards)
