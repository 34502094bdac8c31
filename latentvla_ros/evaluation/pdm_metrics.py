"""The PDM sub-metrics on simulated ego states: the scene, the config, NC/DAC/TTC/EP/C and the
weighted score (see ``pdms.py`` for the definitions). Below both ``pdms.py`` (the scorer's API) and
``reference_planner.py`` (whose progress normalises EP), so neither imports the other's caller."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentvla_ros.core.types import AgentBox, EgoState, MapGeometry
from latentvla_ros.evaluation.agent_replay import (
    AgentReplay,
    build_agent_replay,
)
from latentvla_ros.evaluation.collisions import STATIC_OBJECT_NC, classify_collision, ego_area_flags, relative_angle
from latentvla_ros.evaluation.geometry import (
    Polyline,
    boxes_intersect,
    chain_lane_centerline,
    ego_box,
    unwrap_angles,
    world_to_ego_poses,
)
from latentvla_ros.evaluation.savgol import savgol_filter
from latentvla_ros.evaluation.simulation import (
    AX,
    AY,
    HEADING,
    SIM_DT_S,
    VX,
    VY,
    YAW_RATE,
    LQRSimulator,
    TrackerConfig,
    VehicleParams,
    X,
    Y,
    initial_state,
)


class InvalidTrajectoryError(ValueError):
    """The trajectory to score is malformed (shape, NaN/inf)."""


class InvalidSceneError(ValueError):
    """The scene cannot be scored (e.g. no drivable area)."""


# --------------------------------------------------------------------------- config
DRIVABLE_AREA_TOLERANCE_M = 0.5
"""An ego corner is off the drivable area only farther than this outside it [m], open and
closed loop alike (docs/evaluation.md says why; NAVSIM has none)."""


@dataclass(frozen=True)
class PdmsConfig:
    """Scorer parameters; defaults are NAVSIM v1.1's."""

    progress_weight: float = 5.0
    ttc_weight: float = 5.0
    comfort_weight: float = 2.0
    ttc_stopped_speed_threshold: float = 5e-3  # [m/s] ego below: TTC skipped
    collision_stopped_speed_threshold: float = 5e-2  # [m/s] ego/track "stopped"
    progress_distance_threshold: float = 5.0  # [m] EP = 1 below
    ttc_future_steps: tuple[int, ...] = (0, 3, 6, 9)  # x 0.1 s
    agent_ahead_angle_deg: float = 30.0
    agent_behind_angle_deg: float = 150.0
    observation_horizon_s: float = 5.0  # 4 s + 1 s TTC lookahead
    drivable_area_tolerance_m: float = DRIVABLE_AREA_TOLERANCE_M  # NAVSIM: 0
    # comfort bounds
    max_abs_mag_jerk: float = 8.37
    max_abs_lat_accel: float = 4.89
    max_lon_accel: float = 2.40
    min_lon_accel: float = -4.05
    max_abs_yaw_accel: float = 1.93
    max_abs_lon_jerk: float = 4.13
    max_abs_yaw_rate: float = 0.95
    # NAVSIM reads lateral acceleration from the state array, which the
    # kinematic bicycle model sets to 0 after t = 0 (the lateral-acceleration
    # bound is then nearly always met). True uses v * yaw_rate instead.
    lateral_accel_from_kinematics: bool = False


COMFORT_METRICS = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_accel", "yaw_rate")


# --------------------------------------------------------------------------- comfort
def comfort_checks(
    states: np.ndarray, dt: float = SIM_DT_S, config: PdmsConfig = PdmsConfig()
) -> np.ndarray:
    """The six NAVSIM comfort checks for simulated states (B, T, STATE_SIZE) -> bool (B, 6).

    Order: ``COMFORT_METRICS``. Bounds are strict (value must lie strictly
    inside), values are rounded to 8 decimals, as in NAVSIM. Windows follow
    NAVSIM exactly: accelerations use one quadratic over the whole horizon,
    jerks differentiate a window-8 smoothed acceleration with a whole-horizon
    quadratic, the yaw rate / yaw acceleration come from windows of 5 on the
    unwrapped heading (poly 2 / poly 3).
    """
    states = np.asarray(states, dtype=np.float64)
    n = states.shape[1]
    ax = states[..., AX]
    if config.lateral_accel_from_kinematics:
        ay = states[..., VX] * states[..., YAW_RATE]
        ay = np.concatenate([states[:, :1, AY], ay[:, 1:]], axis=1)
    else:
        ay = states[..., AY]
    mag = np.hypot(ax, ay)

    def smooth_acc(a: np.ndarray, window: int) -> np.ndarray:
        return np.round(savgol_filter(a, min(window, n), 2), 8)

    def jerk(a: np.ndarray) -> np.ndarray:
        acc8 = smooth_acc(a, 8)
        return np.round(savgol_filter(acc8, n, 2, deriv=1, delta=dt), 8)

    heading = unwrap_angles(states[..., HEADING])
    w5 = min(5, n)
    yaw_rate = np.round(savgol_filter(heading, w5, 2, deriv=1, delta=dt), 8)
    yaw_acc = np.round(savgol_filter(heading, w5, 3, deriv=2, delta=dt), 8) if w5 > 3 else np.zeros_like(heading)

    def within(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.all((v > lo) & (v < hi), axis=-1)

    lon_acc = smooth_acc(ax, n)
    lat_acc = smooth_acc(ay, n)
    return np.stack(
        [
            within(lon_acc, config.min_lon_accel, config.max_lon_accel),
            within(lat_acc, -config.max_abs_lat_accel, config.max_abs_lat_accel),
            within(jerk(mag), -config.max_abs_mag_jerk, config.max_abs_mag_jerk),
            within(jerk(ax), -config.max_abs_lon_jerk, config.max_abs_lon_jerk),
            within(yaw_acc, -config.max_abs_yaw_accel, config.max_abs_yaw_accel),
            within(yaw_rate, -config.max_abs_yaw_rate, config.max_abs_yaw_rate),
        ],
        axis=-1,
    )


# --------------------------------------------------------------------------- scene
@dataclass(eq=False)
class Scene:
    """Everything the scorer needs for one scoring instant (world frame).

    - ``ego_pose``: (x, y, yaw) of the ego reference point; ``ego``: its
      ``EgoState`` (velocity / acceleration in the ego frame, yaw rate).
    - ``agent_frames``: other agents replayed from the log (non-reactive);
      frame k is at ``k * agent_dt_s`` after now (frame 0 = now). Provide at
      least 5 s (4 s + TTC lookahead) when available; see
      ``build_agent_replay`` for interpolation / extrapolation.
    - ``map``: lane centrelines (lane membership = within ``lane_width_m / 2``
      of a centreline) and drivable polygons (their union is the drivable
      area; required).
    - ``route_centerline``: (K, 2) polyline for progress; None -> the lane
      chain through the ego's lane (``chain_lane_centerline``), or a straight
      line along the ego heading when the map has no lanes.
    - ``ego_length_m`` / ``ego_width_m`` / ``rear_axle_to_center_m`` /
      ``wheel_base_m`` (None -> 0.6 * length): ego geometry. Poses are of the
      reference point; the box centre is ``rear_axle_to_center_m`` ahead
      (0 for logs whose poses are box centres, e.g. highway-env).
    - ``poses_are_box_centers``: ``ego_pose``, ``expert_trajectory`` and the
      trajectories to score give the box centre (highway-env's vehicles: their
      position is the centre, and they slip about it) instead of the reference
      point. The scorer then simulates the rear axle, ``rear_axle_to_center_m``
      behind the centre, as NAVSIM does (``rear_axle_pose``,
      ``to_rear_axle_frame``, ``trajectory_from_rear_axle``).
    - ``accel_time_constant_s`` / ``steering_time_constant_s``: actuator lags
      of the simulated ego (NAVSIM's by default; 0 for highway-env's vehicle).
    - ``speed_limit_mps``: for the reference planner (None -> fallback) and so
      for EP's reference progress.
    - ``expert_trajectory``: (8, 3) logged future in the ego frame, optional.

    Treat a Scene as immutable once scored: derived data is cached on it.
    """

    ego_pose: np.ndarray
    ego: EgoState
    map: MapGeometry
    agent_frames: list[list[AgentBox]] = field(default_factory=list)
    agent_dt_s: float = SIM_DT_S
    route_centerline: np.ndarray | None = None
    ego_length_m: float = 5.0
    ego_width_m: float = 2.0
    rear_axle_to_center_m: float = 0.0
    wheel_base_m: float | None = None
    lane_width_m: float = 4.0
    speed_limit_mps: float | None = None
    expert_trajectory: np.ndarray | None = None
    token: str = ""
    poses_are_box_centers: bool = False
    accel_time_constant_s: float = VehicleParams.accel_time_constant_s
    steering_time_constant_s: float = VehicleParams.steering_time_constant_s
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def rear_axle_pose(self) -> np.ndarray:
        """World pose (x, y, yaw) of the simulated reference point (the rear axle)."""
        pose = np.asarray(self.ego_pose, dtype=np.float64)[:3].copy()
        if self.poses_are_box_centers:
            d = float(self.rear_axle_to_center_m)
            pose[:2] -= d * np.array([np.cos(pose[2]), np.sin(pose[2])])
        return pose

    def to_rear_axle_frame(self, poses: np.ndarray) -> np.ndarray:
        """Trajectory poses (N, 3) as given for this scene -> rear-axle poses relative
        to the rear axle now (identity unless ``poses_are_box_centers``).

        A centre pose (x, y, h) relative to the centre now has its rear axle at
        (x - d cos h, y - d sin h, h); the rear axle now is at (-d, 0, 0).
        """
        poses = np.asarray(poses, dtype=np.float64)
        if not self.poses_are_box_centers:
            return poses
        d = float(self.rear_axle_to_center_m)
        out = poses.copy()
        out[..., 0] = poses[..., 0] - d * np.cos(poses[..., 2]) + d
        out[..., 1] = poses[..., 1] - d * np.sin(poses[..., 2])
        return out

    def trajectory_from_rear_axle(self, world_poses: np.ndarray) -> np.ndarray:
        """World rear-axle poses (N, 3) -> trajectory poses as this scene takes them."""
        world = np.asarray(world_poses, dtype=np.float64).copy()
        if self.poses_are_box_centers:
            d = float(self.rear_axle_to_center_m)
            world[..., 0] += d * np.cos(world[..., 2])
            world[..., 1] += d * np.sin(world[..., 2])
        return world_to_ego_poses(np.asarray(self.ego_pose, dtype=np.float64)[:3], world)

    @property
    def vehicle(self) -> VehicleParams:
        return VehicleParams(
            length_m=float(self.ego_length_m),
            width_m=float(self.ego_width_m),
            rear_axle_to_center_m=float(self.rear_axle_to_center_m),
            wheel_base_m=self.wheel_base_m,
            accel_time_constant_s=float(self.accel_time_constant_s),
            steering_time_constant_s=float(self.steering_time_constant_s),
        )

    def initial_state(self) -> np.ndarray:
        return initial_state(
            self.rear_axle_pose,
            self.ego.velocity,
            self.ego.acceleration,
            float(self.ego.yaw_rate),
            self.vehicle,
        )

    # cached derived data -------------------------------------------------
    @property
    def replay(self) -> AgentReplay:
        if "replay" not in self._cache:
            self._cache["replay"] = build_agent_replay(self.agent_frames, self.agent_dt_s)
        return self._cache["replay"]

    @property
    def route(self) -> Polyline:
        if "route" not in self._cache:
            pts = self.route_centerline
            if pts is None or len(np.asarray(pts)) < 2:
                pts = chain_lane_centerline(self.map.lane_centerlines, self.ego_pose)
            if pts is None:
                x, y, yaw = (float(v) for v in np.asarray(self.ego_pose)[:3])
                d = np.array([np.cos(yaw), np.sin(yaw)])
                pts = np.array([[x, y] - 50.0 * d, [x, y] + 300.0 * d])
            self._cache["route"] = Polyline(pts)
        return self._cache["route"]

    @property
    def lanes(self) -> list[Polyline]:
        if "lanes" not in self._cache:
            self._cache["lanes"] = [
                Polyline(c) for c in self.map.lane_centerlines if len(np.asarray(c).reshape(-1, 2)) >= 2
            ]
        return self._cache["lanes"]

    @property
    def drivable_polygons(self) -> list[np.ndarray]:
        if "drivable" not in self._cache:
            polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in self.map.drivable_polygons]
            self._cache["drivable"] = [p for p in polys if len(p) >= 3]
        return self._cache["drivable"]


# --------------------------------------------------------------------------- batch scoring
@dataclass
class BatchScores:
    """Per-proposal metrics before EP normalisation (arrays of length B)."""

    no_at_fault_collisions: np.ndarray
    drivable_area_compliance: np.ndarray
    ttc: np.ndarray
    comfort: np.ndarray
    comfort_checks: np.ndarray  # (B, 6)
    progress_m: np.ndarray
    collision_time_s: np.ndarray
    ttc_time_s: np.ndarray
    multiple_lanes: np.ndarray  # (B, T)
    off_road: np.ndarray  # (B, T)
    collided_tracks: list[list[int]]

    @property
    def multiplicative(self) -> np.ndarray:
        return self.no_at_fault_collisions * self.drivable_area_compliance


def score_states(scene: Scene, states: np.ndarray, config: PdmsConfig = PdmsConfig()) -> BatchScores:
    """NC, DAC, TTC, comfort and raw progress of simulated states (B, T, STATE_SIZE).

    ``T`` = 41 (0 .. 4 s at 0.1 s). Agents are taken from ``scene.replay`` at
    the same 0.1 s indices (plus the 0.9 s TTC lookahead).
    """
    states = np.asarray(states, dtype=np.float64)
    bsz, n_t, _ = states.shape
    drivable = scene.drivable_polygons
    if not drivable:
        raise InvalidSceneError("scene has no drivable polygons: DAC would silently be 0")
    veh = scene.vehicle
    replay = scene.replay
    max_future = max(config.ttc_future_steps)
    if replay.valid.shape[0] < n_t + max_future:
        raise InvalidSceneError(
            f"agent replay has {replay.valid.shape[0]} samples, need {n_t + max_future}"
        )

    corners, centers = ego_box(
        states[..., X], states[..., Y], states[..., HEADING], veh.length_m, veh.width_m, veh.rear_axle_to_center_m
    )  # (B, T, 4, 2), (B, T, 2)

    # --- ego areas
    multiple_lanes, off_road = ego_area_flags(corners, scene.lanes, 0.5 * float(scene.lane_width_m), drivable,
                                              config.drivable_area_tolerance_m)  # (B, T) each
    lateral_ok_area = multiple_lanes | off_road  # "ego in multiple lanes or non-drivable area"

    speeds = np.hypot(states[..., VX], states[..., VY])  # (B, T)
    ego_xyh = states[..., :3]
    n_agents = replay.num_agents
    tol_ahead = np.deg2rad(config.agent_ahead_angle_deg)
    tol_behind = np.deg2rad(config.agent_behind_angle_deg)

    nc = np.ones(bsz, dtype=np.float64)
    ttc = np.ones(bsz, dtype=np.float64)
    collision_t = np.full(bsz, np.inf)
    ttc_t = np.full(bsz, np.inf)
    collided: list[list[int]] = [[] for _ in range(bsz)]

    if n_agents > 0:
        a_corners = replay.corners  # (Ta, N, 4, 2)
        a_valid = replay.valid
        a_centers = replay.centers
        track_stopped = replay.is_static | (replay.initial_speed <= config.collision_stopped_speed_threshold)

        # ---- no at-fault collisions
        hits = boxes_intersect(corners[:, :, None], a_corners[None, :n_t]) & a_valid[None, :n_t]
        ignored: list[set[int]] = [set() for _ in range(bsz)]
        t_idx, b_idx, a_idx = np.nonzero(np.transpose(hits, (1, 0, 2)))
        for t, b, a in zip(t_idx.tolist(), b_idx.tolist(), a_idx.tolist()):
            if a in ignored[b]:
                continue
            _, at_fault = classify_collision(corners[b, t], ego_xyh[b, t], float(speeds[b, t]), a_corners[t, a],
                                             a_centers[t, a], bool(track_stopped[a]), bool(lateral_ok_area[b, t]),
                                             config)
            if at_fault:
                score = STATIC_OBJECT_NC if replay.is_static[a] else 0.0
                nc[b] = min(nc[b], score)
                collision_t[b] = min(collision_t[b], t * SIM_DT_S)
                if int(replay.track_ids[a]) not in collided[b]:
                    collided[b].append(int(replay.track_ids[a]))
            else:
                ignored[b].add(a)

        # ---- time to collision
        dirs = np.stack([np.cos(states[..., HEADING]), np.sin(states[..., HEADING])], axis=-1) * speeds[..., None]
        ttc_hits = []  # (t, f, b, a)
        for f in config.ttc_future_steps:
            shifted = corners + (dirs * (f * SIM_DT_S))[..., None, :]
            h = boxes_intersect(shifted[:, :, None], a_corners[None, f:f + n_t]) & a_valid[None, f:f + n_t]
            b_i, t_i, a_i = np.nonzero(h)
            ttc_hits.extend(zip(t_i.tolist(), [f] * len(t_i), b_i.tolist(), a_i.tolist()))
        f_rank = {f: i for i, f in enumerate(config.ttc_future_steps)}
        ttc_hits.sort(key=lambda e: (e[0], f_rank[e[1]], e[2], e[3]))
        ttc_ignored: list[set[int]] = [set() for _ in range(bsz)]
        for t, f, b, a in ttc_hits:
            if a in ttc_ignored[b] or speeds[b, t] < config.ttc_stopped_speed_threshold:
                continue
            ang = relative_angle(ego_xyh[b, t], a_centers[t + f, a])
            if ang < tol_ahead or (lateral_ok_area[b, t] and not ang > tol_behind):
                ttc[b] = 0.0
                ttc_t[b] = min(ttc_t[b], t * SIM_DT_S)
            else:
                ttc_ignored[b].add(a)

    # --- drivable area compliance
    dac = np.where(np.any(off_road, axis=-1), 0.0, 1.0)

    # --- progress along the route centreline (box centre), clipped at 0
    progress = route_progress(scene.route, centers)

    checks = comfort_checks(states, SIM_DT_S, config)
    comfort = np.all(checks, axis=-1).astype(np.float64)
    return BatchScores(
        no_at_fault_collisions=nc,
        drivable_area_compliance=dac,
        ttc=ttc,
        comfort=comfort,
        comfort_checks=checks,
        progress_m=progress,
        collision_time_s=collision_t,
        ttc_time_s=ttc_t,
        multiple_lanes=multiple_lanes,
        off_road=off_road,
        collided_tracks=collided,
    )


PROGRESS_WINDOW_MARGIN_M = 5.0
"""``route_progress``: how far before the start's projection and past the distance driven the end may project."""


def route_progress(route: Polyline, centers: np.ndarray) -> np.ndarray:
    """Progress [m] (B,) along ``route`` of paths ``centers`` (B, T, 2), clipped at 0: the end's arc length minus
    the start's. The end is projected onto the route near the start only (from ``PROGRESS_WINDOW_MARGIN_M``
    before the start's projection to the distance the path drove past it, plus that margin), as the closed-loop
    progress follows the route: a route that passes close to itself (a roundabout's entry beside its exit, the
    ring) must not hand a vehicle waiting at the entry the arc length of the ring's far side. NAVSIM projects
    onto the whole centreline; its routes do not pass close to themselves, where the two agree."""
    centers = np.asarray(centers, dtype=np.float64)
    s0 = route.project(centers[:, 0])
    driven = np.sqrt((np.diff(centers, axis=1) ** 2).sum(-1)).sum(-1)
    end = [route.project_within(centers[b, -1], s0[b] - PROGRESS_WINDOW_MARGIN_M,
                                s0[b] + driven[b] + PROGRESS_WINDOW_MARGIN_M) for b in range(len(centers))]
    return np.maximum(np.asarray(end, dtype=np.float64) - s0, 0.0)


def normalized_progress(raw_multiplied: np.ndarray, multiplicative: np.ndarray, threshold: float) -> np.ndarray:
    """NAVSIM's EP normalisation over a set of proposals (each raw * NC * DAC)."""
    raw_multiplied = np.asarray(raw_multiplied, dtype=np.float64)
    mx = float(np.max(raw_multiplied)) if raw_multiplied.size else 0.0
    if mx > threshold:
        return raw_multiplied / mx
    out = np.ones_like(raw_multiplied)
    out[np.asarray(multiplicative) == 0.0] = 0.0
    return out


def weighted_score(
    multiplicative: np.ndarray, ttc: np.ndarray, ep: np.ndarray, comfort: np.ndarray, config: PdmsConfig = PdmsConfig()
) -> np.ndarray:
    wsum = config.progress_weight + config.ttc_weight + config.comfort_weight
    weighted = config.ttc_weight * ttc + config.progress_weight * ep + config.comfort_weight * comfort
    return multiplicative * weighted / wsum


def simulate_world_references(
    scene: Scene, references: np.ndarray, tracker: TrackerConfig = TrackerConfig()
) -> np.ndarray:
    """Simulate world-frame 10 Hz reference poses (B, 41, 3) from the scene's ego state."""
    refs = np.asarray(references, dtype=np.float64)
    return LQRSimulator(scene.vehicle, tracker).simulate(refs, scene.initial_state())
