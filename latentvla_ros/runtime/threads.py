"""Thread counts of the model stages (stdlib only)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: containers and taskset count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_intra_op_threads(threads: int | None) -> int:
    """Intra-op threads of a model stage: ``threads`` when > 0, else the automatic count,
    half the usable cores (at least 1): the BEV backbone and the student run side by side
    on every frame (in the graph and in ``LatentVLAAgent(concurrent=True)``), and two
    stages that each claim every core only fight over them. Measured on 2 cores with
    ``latentvla bench --threads 1`` and ``--threads 2``: for the edge models one thread
    per stage is also the fastest sequential setting (torch's OpenMP team costs more than
    it gives on models this small); the paper-size BEV backbone gains from more."""
    if threads is not None and int(threads) > 0:
        return int(threads)
    return max(1, usable_cores() // 2)
