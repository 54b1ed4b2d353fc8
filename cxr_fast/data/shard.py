"""Which records a shard owns: contiguous, disjoint, covering, as DALI's readers split them."""

from __future__ import annotations

from cxr_fast.errors import UserInputError


def shard_range(n: int, shard_id: int, num_shards: int) -> range:
    """Positions ``[n * i // k, n * (i + 1) // k)`` of shard ``i`` of ``k`` over ``n`` items."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise UserInputError(f"shard {shard_id}/{num_shards} is not valid")
    return range(n * shard_id // num_shards, n * (shard_id + 1) // num_shards)
