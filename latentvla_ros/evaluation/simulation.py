"""Ego simulation for the PDM score: LQR tracker + kinematic bicycle model.

Re-implements the semantics of NAVSIM v1.1's ``PDMSimulator`` (nuPlan's LQR
tracker and kinematic bicycle model, batched) in plain numpy:

1. The planned trajectory (8 poses at 0.5 s in the ego frame) is put in the
   world frame, the current ego pose is prepended at t = 0, and the poses are
   interpolated linearly (headings unwrapped) at 0.1 s -> 41 reference poses.
   Planned velocities are ignored, as in NAVSIM.
2. Velocity and curvature profiles of the reference are fitted by regularised
   least squares (jerk and curvature-rate penalties).
3. Each 0.1 s step, a one-step LQR over a 10-step (1 s) lookahead picks the
   acceleration (longitudinal subsystem: velocity) and the steering rate
   (lateral subsystem: lateral error, heading error, steering angle), with a
   proportional stopping controller near standstill.
4. The commands go through first-order lags (NAVSIM: 0.2 s acceleration,
   0.05 s steering; ``VehicleParams``) into a kinematic bicycle model about the
   reference point (rear axle), integrated with explicit Euler for 40 steps.

Everything is float64 and deterministic (no randomness; linear systems are
solved with ``numpy.linalg.solve``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.evaluation.geometry import ego_to_world_poses, unwrap_angles, wrap_angle

# State array layout (NAVSIM's StateIndex subset, same meaning).
X, Y, HEADING = 0, 1, 2
VX, VY = 3, 4
AX, AY = 5, 6
STEERING_ANGLE, STEERING_RATE = 7, 8
YAW_RATE, YAW_ACCEL = 9, 10
STATE_SIZE = 11

SIM_DT_S = 0.1
SIM_NUM_STEPS = 40  # 4 s


@dataclass(frozen=True)
class VehicleParams:
    """Ego geometry and kinematic limits.

    ``rear_axle_to_center_m``: distance from the reference point (where poses
    are given; the rear axle on a real vehicle, 0 when poses are box centres)
    forward to the box centre. ``wheel_base_m`` defaults to 0.6 * length
    (Chrysler Pacifica: 3.089 / 5.176). ``accel_time_constant_s`` /
    ``steering_time_constant_s``: first-order lags of the actuators (NAVSIM's
    0.2 s / 0.05 s; 0 applies the commands at once, as highway-env's vehicle
    does).
    """

    length_m: float = 5.176
    width_m: float = 2.297
    rear_axle_to_center_m: float = 1.461
    wheel_base_m: float | None = 3.089
    max_steering_angle_rad: float = np.pi / 3
    accel_time_constant_s: float = 0.2
    steering_time_constant_s: float = 0.05

    @property
    def wheel_base(self) -> float:
        return float(self.wheel_base_m) if self.wheel_base_m is not None else 0.6 * float(self.length_m)


@dataclass(frozen=True)
class TrackerConfig:
    """LQR tracker / motion-model parameters (NAVSIM v1.1 defaults)."""

    q_longitudinal: float = 10.0
    r_longitudinal: float = 1.0
    q_lateral: tuple[float, float, float] = (1.0, 10.0, 0.0)
    r_lateral: float = 1.0
    tracking_horizon: int = 10
    jerk_penalty: float = 1e-4
    curvature_rate_penalty: float = 1e-2
    initial_curvature_penalty: float = 1e-10
    stopping_proportional_gain: float = 0.5
    stopping_velocity: float = 0.2
    dt_s: float = SIM_DT_S
    num_steps: int = SIM_NUM_STEPS


@dataclass
class SimulatedTrajectory:
    """Simulated ego states at ``times_s`` (0 .. 4 s at 0.1 s) in the world frame.

    ``states`` (T, STATE_SIZE) uses the index constants of this module.
    """

    times_s: np.ndarray
    states: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return self.states[:, X]

    @property
    def y(self) -> np.ndarray:
        return self.states[:, Y]

    @property
    def heading(self) -> np.ndarray:
        return self.states[:, HEADING]

    @property
    def velocity(self) -> np.ndarray:
        return self.states[:, VX]

    @property
    def acceleration(self) -> np.ndarray:
        return self.states[:, AX]

    @property
    def yaw_rate(self) -> np.ndarray:
        return self.states[:, YAW_RATE]

    @property
    def poses(self) -> np.ndarray:
        return self.states[:, :3]

    def poses_in_frame(self, pose: np.ndarray) -> np.ndarray:
        """Poses (T, 3) relative to ``pose`` (e.g. the initial ego pose)."""
        from latentvla_ros.evaluation.geometry import world_to_ego_poses

        return world_to_ego_poses(pose, self.poses)


def initial_state(
    pose_world: np.ndarray,
    velocity: np.ndarray | float,
    acceleration: np.ndarray | float = 0.0,
    yaw_rate: float = 0.0,
    vehicle: VehicleParams = VehicleParams(),
) -> np.ndarray:
    """Build the initial state array from the logged ego status.

    ``velocity`` / ``acceleration``: (vx, vy) / (ax, ay) in the ego frame, or
    scalars (longitudinal). The steering angle is the one that reproduces the
    logged yaw rate at the logged speed (0 below 0.2 m/s) -- NAVSIM takes it from
    the log's ego state instead.
    """
    v = np.atleast_1d(np.asarray(velocity, dtype=np.float64))
    a = np.atleast_1d(np.asarray(acceleration, dtype=np.float64))
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    state[X:HEADING + 1] = np.asarray(pose_world, dtype=np.float64)[:3]
    state[VX] = v[0]
    state[VY] = 0.0  # kinematic bicycle: no lateral velocity at the rear axle
    state[AX] = a[0]
    state[AY] = a[1] if len(a) > 1 else 0.0
    yaw_rate = float(yaw_rate)
    if abs(state[VX]) > 0.2:
        steer = np.arctan(yaw_rate * vehicle.wheel_base / state[VX])
        steer = float(np.clip(steer, -vehicle.max_steering_angle_rad, vehicle.max_steering_angle_rad))
    else:
        steer = 0.0
    state[STEERING_ANGLE] = steer
    state[YAW_RATE] = state[VX] * np.tan(steer) / vehicle.wheel_base
    return state


def interpolate_poses(
    times_s: np.ndarray, poses: np.ndarray, query_s: np.ndarray
) -> np.ndarray:
    """Linear interpolation of poses (N, 3) at ``query_s`` (clamped to the ends).

    Headings are unwrapped first (angular interpolation), then re-wrapped.
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    q = np.clip(np.asarray(query_s, dtype=np.float64), times_s[0], times_s[-1])
    h = unwrap_angles(poses[:, 2])
    out = np.stack(
        [np.interp(q, times_s, poses[:, 0]), np.interp(q, times_s, poses[:, 1]), np.interp(q, times_s, h)],
        axis=-1,
    )
    out[:, 2] = wrap_angle(out[:, 2])
    return out


def reference_from_ego_trajectory(
    pose_world: np.ndarray,
    poses_ego: np.ndarray,
    interval_s: float = 0.5,
    dt_s: float = SIM_DT_S,
    num_steps: int = SIM_NUM_STEPS,
) -> np.ndarray:
    """41 world poses at 0.1 s from an ego-frame trajectory (t = interval .. N*interval).

    The current pose is prepended at t = 0 (NAVSIM's ``transform_trajectory``);
    times past the last pose hold the last pose.
    """
    poses_ego = np.asarray(poses_ego, dtype=np.float64).reshape(-1, 3)
    world = ego_to_world_poses(pose_world, poses_ego)
    origin = np.asarray(pose_world, dtype=np.float64)[None, :3].copy()
    origin[0, 2] = wrap_angle(origin[0, 2])
    all_poses = np.concatenate([origin, world], axis=0)
    times = interval_s * np.arange(len(all_poses), dtype=np.float64)
    query = dt_s * np.arange(num_steps + 1, dtype=np.float64)
    return interpolate_poses(times, all_poses, query)


# --------------------------------------------------------------------------- profile fitting
def _spd_solve(mat: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched solve of (B, n, n) x = (B, n)."""
    return np.linalg.solve(mat, rhs[..., None])[..., 0]


def fit_velocity_curvature_profiles(
    poses: np.ndarray, dt: float, config: TrackerConfig = TrackerConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and curvature profiles (B, N-1) of reference poses (B, N, 3).

    Two regularised least-squares fits (nuPlan's LQR utilities):
    displacements ~ heading direction * v_k * dt with v_k = v_0 + sum a_j dt
    (penalising acceleration differences), then heading changes ~ v_k * kappa_k
    * dt with kappa_k = kappa_0 + sum kappa_dot_j dt (penalising curvature rate).
    """
    poses = np.asarray(poses, dtype=np.float64)
    bsz, n, _ = poses.shape
    m = n - 1  # number of displacements
    disp = np.diff(poses[..., :2], axis=1)  # (B, M, 2)
    dheading = wrap_angle(np.diff(poses[..., 2], axis=1))  # (B, M)
    heading = poses[:, :-1, 2]

    # --- velocity / acceleration: unknowns [v0, a_0 .. a_{M-2}]
    # v_k = v0 + dt * sum_{j<k} a_j  -> row k coefficient for a_j (column j+1) is dt if j < k
    coef = np.zeros((m, m), dtype=np.float64)
    coef[:, 0] = 1.0
    coef[:, 1:] = np.tril(np.ones((m, m - 1)), k=-1) * dt
    cos_h, sin_h = np.cos(heading), np.sin(heading)
    a_mat = np.empty((bsz, 2 * m, m), dtype=np.float64)
    a_mat[:, 0::2, :] = cos_h[..., None] * dt * coef[None]
    a_mat[:, 1::2, :] = sin_h[..., None] * dt * coef[None]
    y = disp.reshape(bsz, 2 * m)
    # jerk penalty on consecutive acceleration differences
    r = np.zeros((max(m - 2, 0), m), dtype=np.float64)
    idx = np.arange(max(m - 2, 0))
    r[idx, idx + 1] = -1.0
    r[idx, idx + 2] = 1.0
    ata = np.einsum("bki,bkj->bij", a_mat, a_mat) + config.jerk_penalty * (r.T @ r)[None]
    aty = np.einsum("bki,bk->bi", a_mat, y)
    sol = _spd_solve(ata, aty)
    v0, acc = sol[:, 0], sol[:, 1:]
    velocity = v0[:, None] + np.concatenate(
        [np.zeros((bsz, 1)), np.cumsum(acc * dt, axis=1)], axis=1
    )  # (B, M)

    # --- curvature / curvature rate: unknowns [k0, kdot_0 .. kdot_{M-2}]
    c_mat = velocity[..., None] * dt * coef[None]  # (B, M, M)
    q = config.curvature_rate_penalty * np.eye(m)
    q[0, 0] = config.initial_curvature_penalty
    ctc = np.einsum("bki,bkj->bij", c_mat, c_mat) + q[None]
    cty = np.einsum("bki,bk->bi", c_mat, dheading)
    sol = _spd_solve(ctc, cty)
    k0, kdot = sol[:, 0], sol[:, 1:]
    curvature = k0[:, None] + np.concatenate([np.zeros((bsz, 1)), np.cumsum(kdot * dt, axis=1)], axis=1)
    return velocity, curvature


# --------------------------------------------------------------------------- tracker + model
class LQRSimulator:
    """Batched LQR tracking of reference poses with a kinematic bicycle model."""

    def __init__(self, vehicle: VehicleParams = VehicleParams(), config: TrackerConfig = TrackerConfig()):
        self.vehicle = vehicle
        self.config = config

    # -- controller
    def _commands(
        self,
        state: np.ndarray,
        ref_pose: np.ndarray,
        velocity_profile: np.ndarray,
        curvature_profile: np.ndarray,
        step: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        dt = cfg.dt_s
        horizon = cfg.tracking_horizon
        wheel_base = self.vehicle.wheel_base
        bsz, m = velocity_profile.shape

        # initial tracking errors in the reference's Frenet frame
        dx = state[:, X] - ref_pose[:, 0]
        dy = state[:, Y] - ref_pose[:, 1]
        href = ref_pose[:, 2]
        lat_err = -dx * np.sin(href) + dy * np.cos(href)
        head_err = wrap_angle(state[:, HEADING] - href)
        v0 = state[:, VX]
        lateral0 = np.stack([lat_err, head_err, state[:, STEERING_ANGLE]], axis=-1)

        # reference velocity at the lookahead and curvature over the lookahead
        ref_idx = min(step + horizon, m - 1)
        v_ref = velocity_profile[:, ref_idx]
        kappa = np.empty((bsz, horizon), dtype=np.float64)
        length = ref_idx - step
        kappa[:, :length] = curvature_profile[:, step:ref_idx]
        if length < horizon:
            kappa[:, length:] = curvature_profile[:, ref_idx, None]

        accel = np.zeros(bsz, dtype=np.float64)
        steer_rate = np.zeros(bsz, dtype=np.float64)

        stop = (v_ref <= cfg.stopping_velocity) & (v0 <= cfg.stopping_velocity)
        accel[stop] = -cfg.stopping_proportional_gain * (v0[stop] - v_ref[stop])

        go = ~stop
        if np.any(go):
            # longitudinal: v_N = v0 + N*dt*a, minimise q (v_N - v_ref)^2 + r a^2
            b = horizon * dt
            err = v0[go] - v_ref[go]
            accel[go] = -(b * cfg.q_longitudinal * err) / (b * cfg.q_longitudinal * b + cfg.r_longitudinal)

            # lateral: linear time-varying model over the lookahead with the
            # velocity integrated under the constant acceleration command
            vel = v0[go, None] + dt * np.arange(horizon)[None] * accel[go, None]  # (G, H)
            kap = kappa[go]
            g_n = int(np.count_nonzero(go))
            a_mat = np.tile(np.eye(3), (g_n, 1, 1))
            b_vec = np.zeros((g_n, 3), dtype=np.float64)
            g_vec = np.zeros((g_n, 3), dtype=np.float64)
            in_vec = np.array([0.0, 0.0, dt])
            for k in range(horizon):
                step_mat = np.tile(np.eye(3), (g_n, 1, 1))
                step_mat[:, 0, 1] = vel[:, k] * dt
                step_mat[:, 1, 2] = vel[:, k] * dt / wheel_base
                affine = np.zeros((g_n, 3), dtype=np.float64)
                affine[:, 1] = -vel[:, k] * kap[:, k] * dt
                a_mat = np.einsum("bij,bjk->bik", step_mat, a_mat)
                b_vec = np.einsum("bij,bj->bi", step_mat, b_vec) + in_vec
                g_vec = np.einsum("bij,bj->bi", step_mat, g_vec) + affine
            e0 = np.einsum("bij,bj->bi", a_mat, lateral0[go]) + g_vec
            e0[:, 1:] = np.arctan2(np.sin(e0[:, 1:]), np.cos(e0[:, 1:]))
            qdiag = np.asarray(cfg.q_lateral, dtype=np.float64)
            btq = b_vec * qdiag[None]
            denom = np.einsum("bi,bi->b", btq, b_vec) + cfg.r_lateral
            steer_rate[go] = -np.einsum("bi,bi->b", btq, e0) / denom
        return accel, steer_rate

    # -- motion model
    def _propagate(self, state: np.ndarray, accel_cmd: np.ndarray, steer_rate_cmd: np.ndarray) -> np.ndarray:
        cfg = self.config
        dt = cfg.dt_s
        wb = self.vehicle.wheel_base
        max_steer = self.vehicle.max_steering_angle_rad

        accel = state[:, AX]
        steer = state[:, STEERING_ANGLE]
        ideal_steer = steer + dt * steer_rate_cmd
        veh = self.vehicle
        new_accel = accel + dt / (dt + veh.accel_time_constant_s) * (accel_cmd - accel)
        new_steer_target = steer + dt / (dt + veh.steering_time_constant_s) * (ideal_steer - steer)
        new_steer_rate = (new_steer_target - steer) / dt

        v = state[:, VX]
        out = state.copy()
        out[:, X] = state[:, X] + dt * v * np.cos(state[:, HEADING])
        out[:, Y] = state[:, Y] + dt * v * np.sin(state[:, HEADING])
        out[:, HEADING] = wrap_angle(state[:, HEADING] + dt * v * np.tan(steer) / wb)
        out[:, VX] = v + dt * new_accel
        out[:, VY] = 0.0
        out[:, STEERING_ANGLE] = np.clip(steer + dt * new_steer_rate, -max_steer, max_steer)
        out[:, YAW_RATE] = out[:, VX] * np.tan(out[:, STEERING_ANGLE]) / wb
        out[:, AX] = new_accel
        out[:, AY] = 0.0
        out[:, YAW_ACCEL] = (out[:, YAW_RATE] - state[:, YAW_RATE]) / dt
        out[:, STEERING_RATE] = new_steer_rate
        return out

    def simulate(self, reference_poses: np.ndarray, state0: np.ndarray) -> np.ndarray:
        """Track reference poses (B, T+1, 3) from ``state0`` (STATE_SIZE,) or (B, STATE_SIZE).

        Returns simulated states (B, T+1, STATE_SIZE); index 0 is ``state0``.
        """
        ref = np.asarray(reference_poses, dtype=np.float64)
        if ref.ndim == 2:
            ref = ref[None]
        bsz, n, _ = ref.shape
        s0 = np.asarray(state0, dtype=np.float64)
        states = np.zeros((bsz, n, STATE_SIZE), dtype=np.float64)
        states[:, 0] = np.broadcast_to(s0, (bsz, STATE_SIZE))
        vel_prof, curv_prof = fit_velocity_curvature_profiles(ref, self.config.dt_s, self.config)
        for k in range(1, n):
            acc, sr = self._commands(states[:, k - 1], ref[:, k - 1], vel_prof, curv_prof, k - 1)
            states[:, k] = self._propagate(states[:, k - 1], acc, sr)
        return states


def simulate_trajectory(
    state0: np.ndarray,
    poses_ego: np.ndarray,
    interval_s: float = 0.5,
    vehicle: VehicleParams = VehicleParams(),
    config: TrackerConfig = TrackerConfig(),
) -> SimulatedTrajectory:
    """Simulate one ego-frame trajectory (N, 3) from the state array ``state0``."""
    ref = reference_from_ego_trajectory(state0[:3], poses_ego, interval_s, config.dt_s, config.num_steps)
    states = LQRSimulator(vehicle, config).simulate(ref[None], state0)[0]
    times = config.dt_s * np.arange(len(states), dtype=np.float64)
    return SimulatedTrajectory(times_s=times, states=states)
