"""OpenMP's wait policy for scoring on the CPU (torch-free: set before torch loads).

PyTorch's CPU kernels run on OpenMP threads, which by default spin while they wait for each
other. Beside busy decoding workers that spinning is CPU time taken from the decoding: with
two model threads on 2 cores, 1,000 films took 13.8 s of user time for the default ensemble's
int8 export against 10.9 s with ``OMP_WAIT_POLICY=PASSIVE`` (threads that wait sleep), and
the whole command 7.7 s against 6.5 s (docs/benchmarks.md). The runtime reads the variable
once, when torch loads it, so `cxr-fast score` sets it before importing torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

ENV = "OMP_WAIT_POLICY"


def prefer_passive(env: MutableMapping[str, str] = os.environ) -> None:
    """Ask for the passive policy unless the user chose one or torch is already loaded (then
    the runtime has read the variable and setting it would misreport the policy)."""
    if "torch" not in sys.modules:
        env.setdefault(ENV, "PASSIVE")


def is_passive(env: MutableMapping[str, str] = os.environ) -> bool:
    """Whether OpenMP threads sleep rather than spin while they wait."""
    return env.get(ENV, "").strip().upper() == "PASSIVE"
