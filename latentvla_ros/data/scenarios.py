"""The highway-env scenarios and their per-scenario constants: one place, below the log generator
(``highway.py``), the missions (``missions.py``) and the data presets (``presets.py``), so none of
them imports another for a constant. No highway-env import here."""
from __future__ import annotations

SCENARIOS = ("highway", "merge", "roundabout", "intersection")
POLICY_HZ = 10
EXPERT_CRUISE_MPS = {"highway": 25.0, "merge": 28.0, "roundabout": 11.0, "intersection": 9.0}
"""The expert's nominal cruise speed per scenario; each log draws its own within +-EXPERT_CRUISE_SPREAD."""
EXPERT_CRUISE_SPREAD = 0.1


def speed_limit_mps(scenario: str) -> float:
    """The scenario's speed limit: the fastest cruise speed the expert may draw (it never
    drives above the limit), as a map's legal limit is for human drivers."""
    return EXPERT_CRUISE_MPS[scenario] * (1.0 + EXPERT_CRUISE_SPREAD)


def log_name(scenario: str, seed: int, density: float) -> str:
    """The folder name of the log of (scenario, seed, density)."""
    return f"{scenario}_d{density:g}_s{int(seed):05d}"
