"""NAVSIM v1.1 PDM score (PDMS) in plain numpy.

``PDMS = NC * DAC * (5 * TTC + 5 * EP + 2 * C) / 12`` computed after a 4 s
non-reactive simulation: the predicted trajectory (8 poses at 0.5 s in the
ego frame) is tracked by an LQR controller on a kinematic bicycle model
(``simulation.py``), the other agents replay the log.

Sub-metrics (semantics of NAVSIM's ``PDMScorer``; see docs in each function):

- NC  {0, 0.5, 1}: at-fault collision with an agent (0) or a static object
  (0.5). At fault: the ego is moving (> 0.05 m/s) and the collision is with a
  stopped track, or hits the ego's front bumper, or is lateral while the ego
  spans multiple lanes or is off the drivable area. Collisions while the ego is
  stopped or with a track behind the ego (rear-ended) are not at fault, and
  that track is then ignored for the rest of the horizon.
- DAC {0, 1}: 0 if any ego corner, at any of the 41 states, lies outside every
  drivable polygon by more than ``DRIVABLE_AREA_TOLERANCE_M`` (NAVSIM: 0).
- TTC {0, 1}: the ego box at each state is projected at constant velocity by
  0, 0.3, 0.6, 0.9 s and checked against the agents at that future time;
  a hit with an agent ahead (within 30 deg of the heading), or not behind
  (> 150 deg) while in multiple lanes / off-road, sets TTC = 0; states with
  ego speed < 5e-3 m/s are skipped.
- EP [0, 1]: progress of the box centre along the route centreline (clipped
  at 0) times NC * DAC, divided by the max of that and the reference planner's
  equally multiplied progress; if that max is <= 5 m, EP = 1 (0 when NC * DAC
  = 0).
- C {0, 1}: Savitzky-Golay smoothed comfort bounds on the simulated states.

Deviations from NAVSIM are listed in the ``Scene`` / ``PdmsConfig`` docs:
lanes are centreline buffers (we store no lane polygons), no intersection
layer, no red lights, no driving-direction metric (weight 0 in v1.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from latentvla_ros.core.types import Trajectory
from latentvla_ros.evaluation.agent_replay import AgentReplay, build_agent_replay, constant_velocity_frames
from latentvla_ros.evaluation.pdm_metrics import (
    COMFORT_METRICS,
    DRIVABLE_AREA_TOLERANCE_M,
    BatchScores,
    InvalidSceneError,
    InvalidTrajectoryError,
    PdmsConfig,
    Scene,
    comfort_checks,
    normalized_progress,
    score_states,
    simulate_world_references,
    weighted_score,
)
from latentvla_ros.evaluation.reference_planner import ReferencePlanner
from latentvla_ros.evaluation.savgol import savgol_filter
from latentvla_ros.evaluation.simulation import (
    SIM_DT_S,
    LQRSimulator,
    SimulatedTrajectory,
    TrackerConfig,
    reference_from_ego_trajectory,
)

#: the scorer's API: what it defines and what it re-exports from the modules below it
__all__ = [
    "COMFORT_METRICS", "DRIVABLE_AREA_TOLERANCE_M", "AgentReplay", "BatchScores", "InvalidSceneError",
    "InvalidTrajectoryError", "PdmsConfig", "PdmsResult", "Scene", "aggregate_results", "build_agent_replay",
    "comfort_checks", "compute_reference_progress", "constant_velocity_frames", "normalized_progress",
    "savgol_filter", "score_states", "score_trajectories", "score_trajectory", "simulate_trajectories",
    "simulate_world_references", "weighted_score",
]


# --------------------------------------------------------------------------- public API
@dataclass
class PdmsResult:
    """Sub-scores of one trajectory (NAVSIM ``PDMResults`` names) + diagnostics."""

    no_at_fault_collisions: float
    drivable_area_compliance: float
    time_to_collision_within_bound: float
    ego_progress: float
    comfort: float
    score: float
    progress_m: float  # raw centreline progress [m] (not multiplied)
    reference_progress_m: float  # reference raw progress * its NC * DAC [m]
    collision_time_s: float  # first at-fault collision (inf: none)
    ttc_time_s: float  # first TTC infraction (inf: none)
    comfort_checks: dict[str, bool]
    collided_track_ids: list[int]
    simulated: SimulatedTrajectory

    @property
    def nc(self) -> float:
        return self.no_at_fault_collisions

    @property
    def dac(self) -> float:
        return self.drivable_area_compliance

    @property
    def ttc(self) -> float:
        return self.time_to_collision_within_bound

    @property
    def ep(self) -> float:
        return self.ego_progress

    @property
    def c(self) -> float:
        return self.comfort

    @property
    def pdms(self) -> float:
        return self.score

    def as_dict(self) -> dict[str, float]:
        return {
            "nc": self.nc, "dac": self.dac, "ttc": self.ttc, "ep": self.ep, "c": self.c, "pdms": self.score,
            "progress_m": self.progress_m, "reference_progress_m": self.reference_progress_m,
        }


def _as_poses(trajectory: Trajectory | np.ndarray) -> tuple[np.ndarray, float]:
    if isinstance(trajectory, Trajectory):
        poses, interval = np.asarray(trajectory.poses, dtype=np.float64), float(trajectory.interval_s)
    else:
        poses, interval = np.asarray(trajectory, dtype=np.float64), 0.5
    if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) < 1:
        raise InvalidTrajectoryError(f"trajectory poses must be (N, 3), got {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise InvalidTrajectoryError("trajectory has non-finite values")
    if not interval > 0:
        raise InvalidTrajectoryError(f"bad trajectory interval {interval}")
    return poses, interval


def simulate_trajectories(
    scene: Scene,
    trajectories: Sequence[Trajectory | np.ndarray],
    tracker: TrackerConfig = TrackerConfig(),
) -> np.ndarray:
    """Simulate ego-frame trajectories in ``scene`` -> states (B, 41, STATE_SIZE)."""
    s0 = scene.initial_state()
    refs = []
    for traj in trajectories:
        poses, interval = _as_poses(traj)
        poses = scene.to_rear_axle_frame(poses)
        refs.append(reference_from_ego_trajectory(s0[:3], poses, interval, tracker.dt_s, tracker.num_steps))
    return LQRSimulator(scene.vehicle, tracker).simulate(np.stack(refs), s0)


def compute_reference_progress(scene: Scene, config: PdmsConfig = PdmsConfig()) -> float:
    """Raw progress * NC * DAC of the reference planner in ``scene`` (cached on the scene)."""
    key = ("reference_progress", config)
    if key not in scene._cache:
        scene._cache[key] = ReferencePlanner(pdms_config=config).reference_progress(scene)
    return scene._cache[key]


def score_trajectories(
    scene: Scene,
    trajectories: Sequence[Trajectory | np.ndarray],
    reference_progress: float | None = None,
    config: PdmsConfig = PdmsConfig(),
) -> list[PdmsResult]:
    """PDMS of each ego-frame trajectory (independently, each against the reference).

    ``reference_progress``: the reference planner's raw progress multiplied by
    its NC * DAC [m]; None -> computed with ``ReferencePlanner`` (cached on the
    scene).
    """
    if len(trajectories) == 0:
        return []
    states = simulate_trajectories(scene, trajectories)
    scores = score_states(scene, states, config)
    if reference_progress is None:
        reference_progress = compute_reference_progress(scene, config)
    ref = max(float(reference_progress), 0.0)
    mult = scores.multiplicative
    raw = scores.progress_m * mult
    results = []
    for b in range(len(trajectories)):
        ep = float(normalized_progress(np.array([raw[b], ref]), np.array([mult[b], 1.0]),
                                       config.progress_distance_threshold)[0])
        total = float(weighted_score(mult[b], scores.ttc[b], ep, scores.comfort[b], config))
        results.append(
            PdmsResult(
                no_at_fault_collisions=float(scores.no_at_fault_collisions[b]),
                drivable_area_compliance=float(scores.drivable_area_compliance[b]),
                time_to_collision_within_bound=float(scores.ttc[b]),
                ego_progress=ep,
                comfort=float(scores.comfort[b]),
                score=total,
                progress_m=float(scores.progress_m[b]),
                reference_progress_m=ref,
                collision_time_s=float(scores.collision_time_s[b]),
                ttc_time_s=float(scores.ttc_time_s[b]),
                comfort_checks={k: bool(v) for k, v in zip(COMFORT_METRICS, scores.comfort_checks[b])},
                collided_track_ids=list(scores.collided_tracks[b]),
                simulated=SimulatedTrajectory(
                    times_s=SIM_DT_S * np.arange(states.shape[1], dtype=np.float64), states=states[b]
                ),
            )
        )
    return results


def score_trajectory(
    scene: Scene,
    trajectory: Trajectory | np.ndarray,
    reference_progress: float | None = None,
    config: PdmsConfig = PdmsConfig(),
) -> PdmsResult:
    """PDMS of one ego-frame trajectory (8 poses at 0.5 s) in ``scene``."""
    return score_trajectories(scene, [trajectory], reference_progress, config)[0]


def aggregate_results(results: Sequence[PdmsResult]) -> dict[str, float]:
    """Mean of each sub-score over scenes (NAVSIM reports means)."""
    if not results:
        return {k: float("nan") for k in ("nc", "dac", "ttc", "ep", "c", "pdms")}
    keys = ("nc", "dac", "ttc", "ep", "c", "pdms")
    return {k: float(np.mean([r.as_dict()[k] for r in results])) for k in keys} | {"count": float(len(results))}
