"""DART-style recovery data: noise on the expert's executed controls, in short bursts.

Imitation from clean expert logs never shows the planner an off-nominal state, so in closed
loop its small errors compound (issue 12 item 4). DART (Laskey et al., 2017) injects noise
into the expert's *executed* actions while the expert keeps acting: the car drifts off the
lane centre or picks up a heading error, and when the noise stops the clean expert steers
back. The frames after a burst show an off-nominal state with a clean recovery future.

- ``PerturbationConfig``: bursts every ``interval_s`` (drawn per burst), lasting
  ``duration_s``, of a lateral-acceleration offset ``lateral_accel_mps2`` (magnitude drawn per
  burst, random sign) executed as a steering offset at the current speed (the same drift in
  metres at 9 m/s in an intersection as at 25 m/s on the highway: a fixed steering angle would
  be a gentle nudge in town and a 1 rad/s swerve on the highway), capped at
  ``max_steering_rad``; optionally an acceleration offset ``accel_mps2``. The noise stops
  while the ego is more than ``max_lateral_m`` off its lane's centre line or ``max_heading_rad``
  off its heading, and in hard turns it only tightens the turn (``within_noise_envelope``):
  meaningful deviations the expert recovers from.
- ``burst_schedule``: the offsets of every policy step (bursts start and end on the policy
  grid), drawn from a generator seeded by the log's key, so a perturbed log is as
  reproducible as a clean one.
- ``clean_future_mask``: a frame's logged 4 s future is an expert label only if no burst
  acts anywhere in its horizon (``data/log_format.py`` stores ``future_valid = False`` for
  the others, ``perturbation.npy`` holds the offsets).
- ``clean_transition_mask``: the same for the LAM's transitions (latent codes of a perturbed
  motion are no expert action: ``training/lam.py`` writes -1 for them).

Per-step convention: row ``t`` of ``perturbation.npy`` is the offset executed while the log
moves from frame ``t`` to frame ``t + 1`` (the "action of frame t"). Pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from latentvla_ros.core.types import NUM_POSES, POSE_INTERVAL_S

PERTURBATION_FILE = "perturbation"
"""``perturbation.npy``: float32 (T, 2) steering offset [rad] (mean over the step's simulation
substeps), acceleration offset [m/s^2], executed from frame t to t + 1; zeros where clean."""
PERTURBATION_STREAM = 7919
"""Extra entropy word of the schedule's generator: independent of the log's other draws,
so a clean log's random stream (cruise speed, LiDAR noise) is the same with and without."""
MIN_SPEED_MPS = 3.0  # below it the lateral-acceleration offset is converted at this speed


@dataclass(frozen=True)
class PerturbationConfig:
    """Bursts of noise on the expert's executed controls (see the module docstring)."""

    interval_s: tuple[float, float] = (5.0, 9.0)  # clean time before each burst (> the 4 s horizon: clean frames after it)
    duration_s: tuple[float, float] = (0.5, 1.5)
    lateral_accel_mps2: tuple[float, float] = (1.5, 3.0)  # |offset| drawn per burst, random sign
    max_steering_rad: float = 0.2
    accel_mps2: tuple[float, float] = (0.0, 0.0)  # |offset| drawn per burst, random sign
    max_lateral_m: float = 1.2  # envelope: no noise while this far off the lane centre ...
    max_heading_rad: float = 0.25  # ... or this far off the lane's heading (the rest of the burst is cut)
    turn_lat_accel_mps2: float = 2.0  # in turns harder than this, noise only tightens the turn

    def __post_init__(self) -> None:
        for name in ("interval_s", "duration_s", "lateral_accel_mps2", "accel_mps2"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
                raise ValueError(f"PerturbationConfig.{name} must be 0 <= lo <= hi, got {getattr(self, name)}")
        if self.duration_s[1] <= 0.0 or self.interval_s[1] <= 0.0:
            raise ValueError("PerturbationConfig: duration_s and interval_s must allow positive values")
        if not 0.0 < self.max_steering_rad <= 0.6:
            raise ValueError(f"PerturbationConfig.max_steering_rad must be in (0, 0.6], got {self.max_steering_rad}")
        if not (self.max_lateral_m > 0.0 and self.max_heading_rad > 0.0):
            raise ValueError("PerturbationConfig: max_lateral_m and max_heading_rad must be > 0")

    def to_meta(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def schedule_rng(seed: int, scenario_index: int, density: float) -> np.random.Generator:
    """The burst schedule's generator, keyed like the log's own (``data/highway.py``)."""
    return np.random.default_rng([int(seed), int(scenario_index), int(round(density * 1000)), PERTURBATION_STREAM])


def burst_schedule(config: PerturbationConfig, num_steps: int, step_s: float, rng: np.random.Generator) -> np.ndarray:
    """(num_steps, 2) float32: lateral-acceleration offset [m/s^2] and acceleration offset
    [m/s^2] of every policy step; bursts on the policy grid, at least one step long."""
    out = np.zeros((int(num_steps), 2), dtype=np.float32)
    k = 0
    while True:
        k += max(int(round(rng.uniform(*config.interval_s) / step_s)), 1)
        length = max(int(round(rng.uniform(*config.duration_s) / step_s)), 1)
        lat = rng.uniform(*config.lateral_accel_mps2) * (1.0 if rng.random() < 0.5 else -1.0)
        acc = rng.uniform(*config.accel_mps2) * (1.0 if rng.random() < 0.5 else -1.0)
        if k >= num_steps:
            return out
        out[k:k + length] = (lat, acc)
        k += length


def steering_offset(lateral_accel_mps2: float, speed_mps: float, wheelbase_m: float, max_steering_rad: float) -> float:
    """Steering offset [rad] whose yaw rate adds ``lateral_accel_mps2`` at ``speed_mps`` on
    highway-env's bicycle (yaw rate ~ v tan(delta) / L), capped at ``max_steering_rad``."""
    if lateral_accel_mps2 == 0.0:
        return 0.0
    v = max(float(speed_mps), MIN_SPEED_MPS)
    delta = math.atan(lateral_accel_mps2 * wheelbase_m / (v * v))
    return float(np.clip(delta, -max_steering_rad, max_steering_rad))


def within_noise_envelope(lateral_m: float, heading_error_rad: float, turn_lat_accel_mps2: float, steering_offset_rad: float,
                          config: PerturbationConfig) -> bool:
    """Noise may act while the ego is within ``max_lateral_m`` of its lane's centre line and
    ``max_heading_rad`` of its heading, and, in a turn harder than ``turn_lat_accel_mps2`` (the
    expert's own lateral acceleration), only to tighten the turn: the expert drives curves near
    its lateral-acceleration limit (``data/expert.py``), so a push to the outside of a roundabout
    ring is one it cannot steer back from (it left the road), while the recovery from a push
    inwards only needs less steering. Deviations meaningful, recoveries possible."""
    if abs(float(lateral_m)) > config.max_lateral_m or abs(float(heading_error_rad)) > config.max_heading_rad:
        return False
    return abs(turn_lat_accel_mps2) <= config.turn_lat_accel_mps2 or turn_lat_accel_mps2 * steering_offset_rad > 0.0


def horizon_steps(dt_s: float, num_poses: int = NUM_POSES, interval_s: float = POSE_INTERVAL_S) -> int:
    """Log steps a frame's future spans (40 at 10 Hz for 8 poses at 0.5 s)."""
    return int(round(num_poses * interval_s / dt_s))


def clean_future_mask(perturbation: np.ndarray, dt_s: float) -> np.ndarray:
    """(T,) bool: frame t's logged future (steps t .. t + horizon - 1, the motion that makes
    its poses) has no perturbed step. The frames right after a burst stay True."""
    active = np.any(np.asarray(perturbation) != 0.0, axis=-1) if np.ndim(perturbation) > 1 else np.asarray(perturbation) != 0.0
    return _clean_window(active, horizon_steps(dt_s))


def clean_transition_mask(perturbation: np.ndarray, stride: int) -> np.ndarray:
    """(T,) bool: the transition t -> t + stride has no perturbed step."""
    active = np.any(np.asarray(perturbation) != 0.0, axis=-1) if np.ndim(perturbation) > 1 else np.asarray(perturbation) != 0.0
    return _clean_window(active, int(stride))


def _clean_window(active: np.ndarray, width: int) -> np.ndarray:
    counts = np.concatenate([[0], np.cumsum(active.astype(np.int64))])
    t = np.arange(len(active))
    return counts[np.minimum(t + width, len(active))] - counts[t] == 0


def read_perturbation(log) -> np.ndarray | None:
    """A ``DrivingLog``'s ``perturbation.npy`` (T, 2), or None for a clean log."""
    return np.asarray(log.read_array(PERTURBATION_FILE)) if log.has_array(PERTURBATION_FILE) else None
