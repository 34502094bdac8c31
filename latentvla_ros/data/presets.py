"""Data presets: which logs to generate, so that the planner sees every command.

``balanced``: for each scenario and traffic density (``DENSITIES``), ``seeds_per_cell``
training seeds (below the reserved evaluation range), with

- roundabout and intersection: the exit cycling with the seed (``data/missions.py``:
  right / straight / left), so each turn gets the same number of logs;
- highway: the starting lane cycling over the three lanes (from the leftmost lane the
  expert can only change right, from the rightmost only left; MOBIL changes lanes as the
  traffic asks), so lane changes go both ways;
- merge: every seed (the ramp traffic merging in front of the ego at each density).

``recovery`` (DART, issue 12 item 4): the same cells and balance, every log perturbed
(``data/perturbation.py``: bursts of noise on the expert's executed steering, the clean expert
recovering; frames whose 4 s future a burst touches carry no planner label), on seeds
``seed_start + RECOVERY_SEED_OFFSET + RECOVERY_ROUND_SEEDS * round_index ...``: disjoint from
``balanced``'s seeds of the same ``seed_start`` (the training pipeline spaces ``--seed`` by 1000),
from the other rounds' (``training/rounds.py``) and below the evaluation range.

``seeds_per_cell`` a multiple of 12 balances all of them at once. ``preset_jobs`` gives the
``generate_log`` keyword arguments; ``python -m latentvla_ros.data.highway ROOT --preset
balanced`` generates them (``command_counts`` reports the frames per command).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from latentvla_ros.data.missions import destination_for
from latentvla_ros.data.perturbation import PerturbationConfig
from latentvla_ros.data.scenarios import SCENARIOS, log_name

DENSITIES = (0.6, 1.0, 1.5)
HIGHWAY_LANES = 3  # highway-env's HighwayEnvFast (data/highway.py) has 3 lanes; lane 3 does not exist
PRESETS = ("balanced", "recovery")
RECOVERY_SEED_OFFSET = 500
RECOVERY_ROUND_SEEDS = 100  # seeds per recovery round: round k starts at seed_start + 500 + 100 k


def preset_jobs(preset: str, root: str | Path, seeds_per_cell: int = 12, frames_per_log: int = 200,
                densities: Sequence[float] = DENSITIES, seed_start: int = 0,
                scenarios: Sequence[str] = SCENARIOS, round_index: int = 0) -> list[dict]:
    """``generate_log`` keyword arguments of every log of ``preset`` under ``root``.
    ``round_index`` (recovery only): data-aggregation round k gets seeds of its own."""
    if preset not in PRESETS:
        raise ValueError(f"unknown data preset {preset!r}; expected one of {PRESETS}")
    from latentvla_ros.data.splits import check_training_seeds

    perturb = None
    if preset == "recovery":
        first = RECOVERY_SEED_OFFSET + RECOVERY_ROUND_SEEDS * int(round_index)
        if int(seeds_per_cell) > RECOVERY_ROUND_SEEDS or not 0 <= int(round_index) < (1000 - RECOVERY_SEED_OFFSET) // RECOVERY_ROUND_SEEDS:
            raise ValueError(f"recovery preset: at most {RECOVERY_ROUND_SEEDS} seeds per cell and rounds 0.."
                             f"{(1000 - RECOVERY_SEED_OFFSET) // RECOVERY_ROUND_SEEDS - 1} (seeds seed_start+{RECOVERY_SEED_OFFSET}.."
                             f"+999: disjoint from balanced's and between rounds), got {seeds_per_cell}, round {round_index}")
        seed_start, perturb = int(seed_start) + first, PerturbationConfig()
    elif round_index:
        raise ValueError("round_index is for the recovery preset")
    seeds = range(seed_start, seed_start + int(seeds_per_cell))
    check_training_seeds(seeds)
    jobs = []
    for scenario in scenarios:
        for density in densities:
            for seed in seeds:
                job = dict(out_dir=Path(root) / log_name(scenario, seed, density), scenario=scenario, seed=int(seed),
                           density=float(density), num_frames=int(frames_per_log),
                           destination=destination_for(scenario, seed))
                if scenario == "highway":
                    job["initial_lane"] = int(seed) % HIGHWAY_LANES
                if perturb is not None:
                    job["perturb"] = perturb
                jobs.append(job)
    return jobs


def command_counts(log_dirs: Sequence[str | Path]) -> dict[str, dict[str, int]]:
    """Frames per driving command per scenario of existing logs (to check the balance)."""
    from latentvla_ros.core.types import DrivingCommand
    from latentvla_ros.data.log_format import DrivingLog

    out: dict[str, Counter] = {}
    for d in log_dirs:
        log = DrivingLog(d)
        counts = out.setdefault(str(log.meta.get("scenario")), Counter())
        for c in log.command_array:
            counts[DrivingCommand(int(c)).name] += 1
    return {sc: dict(sorted(c.items())) for sc, c in sorted(out.items())}
