"""Safe fallback: a comfortable stop along the current heading."""
from __future__ import annotations

import numpy as np

from latentvla_ros.core.sizes import DEFAULT_TRAJECTORY_SAMPLING
from latentvla_ros.core.types import Trajectory


def comfortable_stop(
    speed_mps: float,
    yaw_rate_rps: float = 0.0,
    deceleration_mps2: float = 2.0,
    num_poses: int = DEFAULT_TRAJECTORY_SAMPLING.num_poses,
    interval_s: float = DEFAULT_TRAJECTORY_SAMPLING.interval_s,
    stamp_ns: int = 0,
    reason: str = "",
) -> Trajectory:
    """Decelerate at a constant, comfortable rate until stopped, keeping the current curvature.

    Non-finite or negative inputs are treated as standstill / straight: the fallback
    must always be computable.
    """
    v0 = float(speed_mps) if np.isfinite(speed_mps) and speed_mps > 0 else 0.0
    curvature = float(yaw_rate_rps) / v0 if v0 > 0.5 and np.isfinite(yaw_rate_rps) else 0.0
    curvature = float(np.clip(curvature, -0.2, 0.2))
    decel = float(deceleration_mps2)
    times = interval_s * np.arange(1, num_poses + 1)
    t_stop = v0 / decel if decel > 0 else 0.0
    t = np.minimum(times, t_stop)
    s = v0 * t - 0.5 * decel * t * t  # arc length travelled
    heading = curvature * s
    if abs(curvature) > 1e-6:
        x = np.sin(heading) / curvature
        y = (1.0 - np.cos(heading)) / curvature
    else:
        x, y = s, np.zeros_like(s)
    poses = np.stack([x, y, heading], axis=1)
    return Trajectory(poses=poses, interval_s=interval_s, stamp_ns=stamp_ns, is_fallback=True,
                      fallback_reason=reason or "fallback", model_id="fallback:comfortable_stop")
