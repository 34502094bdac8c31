"""The fixed evaluation splits, in one place.

Seeds are highway-env ``env.reset(seed)`` seeds (and the per-log generators derived
from them in ``data/highway.py``). Everything the benchmarks score uses seeds at or
above ``RESERVED_SEED_START``; **training and data generation for training must use
seeds below it** (``check_training_seeds`` raises otherwise).

- Open loop: held-out driving logs, one per (scenario, seed) of ``OPEN_LOOP_TEST_SEEDS``
  at density 1.0, ``OPEN_LOOP_FRAMES`` frames each, scored every ``OPEN_LOOP_SCENE_STRIDE``
  frames where 4 s of logged future exist.
- Closed loop: fresh highway-env episodes (missions, ``data/missions.py``) on
  ``CLOSED_LOOP_SEEDS``; the ROS-graph run on ``ROS_SUBSET_SEEDS``.

``--quick`` uses the first seeds of each list (``quick_*``), still inside the reserved range.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from latentvla_ros.data.scenarios import SCENARIOS

RESERVED_SEED_START = 10_000
"""Seeds >= this are reserved for evaluation; training data must use smaller seeds."""

OPEN_LOOP_TEST_SEEDS: tuple[int, ...] = (10_000, 10_001, 10_002, 10_003, 10_004)
OPEN_LOOP_DENSITY = 1.0
OPEN_LOOP_FRAMES = 100
OPEN_LOOP_SCENE_STRIDE = 10

CLOSED_LOOP_SEEDS: tuple[int, ...] = tuple(range(20_000, 20_025))
"""25 seeds per scenario (>= 100 episodes per method); consecutive seeds cycle through the
roundabout / intersection exits (``data/missions.py``), so each turn gets 8-9 episodes."""
CLOSED_LOOP_DENSITY = 1.0
ROS_SUBSET_SEEDS: tuple[int, ...] = CLOSED_LOOP_SEEDS[:3]
"""Seeds per scenario on which the fused student also drives through the ROS 2 graph
(one of each turn); the rest of the suite runs the same core stages directly."""

VALIDATION_CLOSED_LOOP_SEEDS: tuple[int, ...] = tuple(range(30_000, 30_006))
"""Closed-loop seeds per scenario for the per-round score while training (the data-aggregation
rounds, ``training/rounds.py``): reserved (never trained on) and disjoint from the test seeds
above, so the reported test results never steer training. Six seeds: each turn twice."""

QUICK_OPEN_LOOP_SEEDS: tuple[int, ...] = OPEN_LOOP_TEST_SEEDS[:1]
QUICK_OPEN_LOOP_FRAMES = 60
QUICK_CLOSED_LOOP_SEEDS: tuple[int, ...] = CLOSED_LOOP_SEEDS[:1]


class SplitLeakError(ValueError):
    """A training seed falls in the range reserved for evaluation."""


def is_reserved_seed(seed: int) -> bool:
    return int(seed) >= RESERVED_SEED_START


def check_training_seeds(seeds: Iterable[int]) -> None:
    """Raise ``SplitLeakError`` if any seed is reserved for evaluation."""
    bad = sorted({int(s) for s in seeds if is_reserved_seed(s)})
    if bad:
        raise SplitLeakError(
            f"training seeds {bad[:5]}{'...' if len(bad) > 5 else ''} are reserved for evaluation "
            f"(use seeds < {RESERVED_SEED_START})")


def open_loop_logs(scenarios: Sequence[str] = SCENARIOS, seeds: Sequence[int] = OPEN_LOOP_TEST_SEEDS,
                   density: float = OPEN_LOOP_DENSITY) -> list[tuple[str, int, float]]:
    """(scenario, seed, density) of every held-out log."""
    for s in seeds:
        if not is_reserved_seed(s):
            raise SplitLeakError(f"open-loop test seed {s} is not in the reserved range")
    return [(sc, int(seed), float(density)) for sc in scenarios for seed in seeds]


def closed_loop_episodes(scenarios: Sequence[str] = SCENARIOS,
                         seeds: Sequence[int] = CLOSED_LOOP_SEEDS) -> list[tuple[str, int]]:
    for s in seeds:
        if not is_reserved_seed(s):
            raise SplitLeakError(f"closed-loop seed {s} is not in the reserved range")
    return [(sc, int(seed)) for sc in scenarios for seed in seeds]
