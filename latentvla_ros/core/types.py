"""Plain data types shared by the core, training, evaluation and the ROS shell.

Conventions (NAVSIM-like):
- Ego frame: x forward, y left, z up, origin at the ego reference point
  (rear axle on a vehicle, the vehicle centre in highway-env); headings in
  radians, counter-clockwise from +x.
- Times are integers in nanoseconds (``stamp_ns``) so they survive round trips
  through ROS stamps exactly.
- A trajectory is ``NUM_POSES`` poses (x, y, heading) at ``POSE_INTERVAL_S``
  (defaults of ``core.sizes.TrajectorySampling``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from latentvla_ros.core.sizes import DEFAULT_ACTION_SPACE, DEFAULT_TRAJECTORY_SAMPLING

# Defaults, from core/sizes.py (change them there); a checkpoint's config.json wins over them.
NUM_POSES = DEFAULT_TRAJECTORY_SAMPLING.num_poses
POSE_INTERVAL_S = DEFAULT_TRAJECTORY_SAMPLING.interval_s
NUM_LATENT_TOKENS = DEFAULT_ACTION_SPACE.tokens_per_frame
CODEBOOK_SIZE = DEFAULT_ACTION_SPACE.codebook_size
EGO_STATUS_DIM = 8  # command one-hot (4) + velocity (2) + acceleration (2)


class DrivingCommand(IntEnum):
    LEFT = 0
    STRAIGHT = 1
    RIGHT = 2
    UNKNOWN = 3


def ego_status_vectors(motion: np.ndarray, command: np.ndarray, finite: bool = True) -> np.ndarray:
    """The one ego-status builder: (T, 8) float32 rows of one-hot command (4), vx, vy, ax, ay.

    ``motion``: (T, >= 4) vx, vy, ax, ay in the ego frame (a log's (T, 5) ``ego_status``
    works as is); ``command``: (T,) driving commands, values outside 0..3 count as UNKNOWN.
    ``finite``: non-finite motion values become 0 (log rows for training); False keeps them
    (``EgoState.status_vector``, whose callers check and refuse them). A shape mismatch is a
    ``ValueError``.
    """
    motion = np.asarray(motion, dtype=np.float32)
    cmd = np.asarray(command).astype(np.int64)
    if motion.ndim != 2 or motion.shape[1] < 4 or cmd.shape != (motion.shape[0],):
        raise ValueError(f"ego status (T, >=4) / command (T,) mismatch: {motion.shape}, {cmd.shape}")
    unknown = int(DrivingCommand.UNKNOWN)
    cmd = np.where((cmd >= 0) & (cmd <= unknown), cmd, unknown)
    out = np.zeros((motion.shape[0], EGO_STATUS_DIM), dtype=np.float32)
    out[np.arange(len(cmd)), cmd] = 1.0
    out[:, 4:8] = np.nan_to_num(motion[:, :4], nan=0.0, posinf=0.0, neginf=0.0) if finite else motion[:, :4]
    return out


@dataclass
class CameraImage:
    """One camera image: ``image`` is HxWx3 uint8 RGB."""

    image: np.ndarray
    name: str = "front"
    intrinsics: np.ndarray | None = None  # 3x3, optional


@dataclass
class EgoState:
    """Ego state in its own frame."""

    velocity: np.ndarray  # (2,) vx, vy [m/s]
    acceleration: np.ndarray  # (2,) ax, ay [m/s^2]
    yaw_rate: float = 0.0  # [rad/s]
    command: DrivingCommand = DrivingCommand.UNKNOWN

    def status_vector(self) -> np.ndarray:
        """The 8-d ego-status feature TransFuser/NAVSIM use: one-hot command, v, a
        (``ego_status_vectors`` of one row; non-finite values are kept for the caller to check)."""
        motion = np.concatenate([np.asarray(self.velocity, np.float32), np.asarray(self.acceleration, np.float32)])
        return ego_status_vectors(motion[None], np.array([int(self.command)]), finite=False)[0]

    def is_finite(self) -> bool:
        return bool(
            np.all(np.isfinite(self.velocity))
            and np.all(np.isfinite(self.acceleration))
            and np.isfinite(self.yaw_rate)
        )


@dataclass
class SensorFrame:
    """One synchronized set of sensor inputs (the agent input)."""

    stamp_ns: int
    cameras: list[CameraImage]
    lidar_points: np.ndarray  # (N, 4) float32 x, y, z, intensity in the ego frame
    ego: EgoState


@dataclass
class BevTokens:
    """Compact BEV features: ``tokens`` is (grid_rows * grid_cols, channels)."""

    stamp_ns: int
    tokens: np.ndarray
    grid_rows: int
    grid_cols: int
    cell_size_m: float
    origin_x_m: float
    origin_y_m: float
    ego_status: np.ndarray  # (EGO_STATUS_DIM,)
    model_id: str = ""


@dataclass
class LatentPlan:
    """The student's latent ego-action plan for one frame."""

    stamp_ns: int
    token_ids: np.ndarray  # (NUM_LATENT_TOKENS,) int in [0, CODEBOOK_SIZE)
    token_probabilities: np.ndarray  # (NUM_LATENT_TOKENS, CODEBOOK_SIZE)
    action_embeddings: np.ndarray  # (NUM_LATENT_TOKENS, D)
    visual_embeddings: np.ndarray  # (num_visual_tokens, D)
    model_id: str = ""


@dataclass
class Trajectory:
    """Planned or logged ego trajectory: ``poses`` (NUM_POSES, 3) x, y, heading."""

    poses: np.ndarray
    interval_s: float = POSE_INTERVAL_S
    stamp_ns: int = 0
    is_fallback: bool = False
    fallback_reason: str = ""
    model_id: str = ""

    @property
    def times_s(self) -> np.ndarray:
        return self.interval_s * np.arange(1, len(self.poses) + 1)

    def is_finite(self) -> bool:
        return bool(np.all(np.isfinite(self.poses)))


@dataclass
class AgentBox:
    """Another road user, in the world frame."""

    x: float
    y: float
    heading: float
    length: float
    width: float
    vx: float = 0.0
    vy: float = 0.0
    track_id: int = -1
    is_static: bool = False


@dataclass
class MapGeometry:
    """Static road geometry in the world frame.

    ``lane_centerlines``: list of (K, 2) polylines; ``drivable_polygons``: list
    of (M, 2) polygons whose union is the drivable area.
    """

    lane_centerlines: list[np.ndarray] = field(default_factory=list)
    drivable_polygons: list[np.ndarray] = field(default_factory=list)
