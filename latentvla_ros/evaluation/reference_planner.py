"""PDM-Closed-style rule-based reference planner (pure numpy).

Follows NAVSIM v1.1's PDM-Closed as used for the metric cache:

1. Paths: the route centreline and copies offset laterally (default 0, -1,
   +1 m), from the ego's projection onwards.
2. Longitudinal policies: IDM with target speeds = fractions (0.2 .. 1.0) of
   the speed limit; 3 x 5 = 15 proposals unrolled at 0.1 s for 4 s. The leading
   object is the nearest agent ahead (by path progress) whose box touches the
   path's driving corridor (ego width), its gap the polygon distance to the
   ego box, its speed projected on the ego heading (static objects: 0).
3. Agents are forecast at constant velocity from now (the planner does not
   see the logged future), unless ``forecast="log"``.
4. Each proposal is simulated with the same LQR tracker / bicycle model and
   scored with the same scorer (NC, DAC, TTC, comfort, and progress normalised
   among the proposals, as PDM-Closed does); the best (first on ties) wins.

``plan(scene)`` returns 8 poses at 0.5 s in the ego frame.
``reference_progress(scene)`` re-simulates the chosen 10 Hz proposal and scores
it against the logged agents: its raw progress * NC * DAC is EP's reference.

Deviations from PDM-Closed: the leading agent is refreshed at steps 1, 3, 5, ...
(PDM-Closed starts at step 2 with an all-zero lead, which brakes on the first
step); IDM speed is clamped at >= 0; no emergency brake; no red lights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.agent import AgentInput
from latentvla_ros.core.sizes import DEFAULT_TRAJECTORY_SAMPLING
from latentvla_ros.core.types import Trajectory
from latentvla_ros.evaluation.agent_replay import constant_velocity_frames
from latentvla_ros.evaluation.baselines import PlanShorthand
from latentvla_ros.evaluation.geometry import (
    Polyline,
    boxes_intersect,
    convex_polygon_distance,
    ego_box,
    wrap_angle,
)
from latentvla_ros.evaluation.pdm_metrics import (
    BatchScores,
    PdmsConfig,
    Scene,
    normalized_progress,
    score_states,
    simulate_world_references,
    weighted_score,
)
from latentvla_ros.evaluation.simulation import SIM_DT_S, SIM_NUM_STEPS, TrackerConfig


@dataclass(frozen=True)
class ReferencePlannerConfig:
    """PDM-Closed parameters (NAVSIM metric-cache defaults)."""

    lateral_offsets: tuple[float, ...] = (0.0, -1.0, 1.0)
    speed_limit_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    # used when the scene has no speed limit: max(this, current speed)
    fallback_target_velocity: float = 15.0
    min_gap_to_lead_agent: float = 1.0
    headway_time: float = 1.5
    accel_max: float = 1.5
    decel_max: float = 3.0
    acceleration_exponent: float = 10.0
    leading_agent_update_every: int = 2
    trajectory_horizon_s: float = 5.0  # corridor length = max target speed * this
    path_resolution_m: float = 1.0
    forecast: str = "constant_velocity"  # or "log"
    # crossing / merging traffic (``_crossing_agents``; 0 s lookahead: PDM-Closed's leads only)
    yield_lookahead_s: float = 3.0
    yield_margin_s: float = 1.0
    yield_clearance_m: float = 0.5
    num_poses: int = DEFAULT_TRAJECTORY_SAMPLING.num_poses
    pose_interval_s: float = DEFAULT_TRAJECTORY_SAMPLING.interval_s


@dataclass
class ReferencePlan:
    trajectory: Trajectory  # ego frame, ``num_poses`` at ``pose_interval_s``
    proposals: np.ndarray  # (P, 41, 3) world poses at 0.1 s (IDM unrolled)
    simulated: np.ndarray  # (P, 41, STATE_SIZE)
    scores: np.ndarray  # (P,)
    batch: BatchScores
    best: int
    lateral_offsets: np.ndarray  # (P,)
    target_speeds: np.ndarray  # (P,)


class ReferencePlanner(PlanShorthand):
    """PDM-Closed-like planner; also the baseline ``pdm_closed`` (a ``core.agent.AbstractAgent``
    on the privileged scene; ``plan(scene)``: the shorthand)."""

    name = "pdm_closed"
    requires_scene = True

    def __init__(
        self,
        config: ReferencePlannerConfig = ReferencePlannerConfig(),
        pdms_config: PdmsConfig = PdmsConfig(),
        tracker: TrackerConfig = TrackerConfig(),
    ):
        if config.forecast not in ("constant_velocity", "log"):
            raise ValueError(f"forecast must be 'constant_velocity' or 'log', got {config.forecast!r}")
        self.config = config
        self.pdms_config = pdms_config
        self.tracker = tracker

    # ------------------------------------------------------------------ helpers
    def _speed_limit(self, scene: Scene) -> float:
        if scene.speed_limit_mps is not None:
            return float(scene.speed_limit_mps)
        v0 = float(scene.ego.velocity[0])
        return max(self.config.fallback_target_velocity, v0)

    def _planning_scene(self, scene: Scene) -> Scene:
        if self.config.forecast == "log" or not scene.agent_frames:
            return scene
        key = ("cv_scene",)
        if key not in scene._cache:
            n = int(round(self.pdms_config.observation_horizon_s / SIM_DT_S)) + 1
            scene._cache[key] = Scene(
                ego_pose=scene.ego_pose,
                ego=scene.ego,
                map=scene.map,
                agent_frames=constant_velocity_frames(scene.agent_frames[0], n, SIM_DT_S),
                agent_dt_s=SIM_DT_S,
                route_centerline=scene.route.points,
                ego_length_m=scene.ego_length_m,
                ego_width_m=scene.ego_width_m,
                rear_axle_to_center_m=scene.rear_axle_to_center_m,
                wheel_base_m=scene.wheel_base_m,
                lane_width_m=scene.lane_width_m,
                speed_limit_mps=scene.speed_limit_mps,
                token=scene.token,
                poses_are_box_centers=scene.poses_are_box_centers,
                accel_time_constant_s=scene.accel_time_constant_s,
                steering_time_constant_s=scene.steering_time_constant_s,
            )
        return scene._cache[key]

    def _unroll(self, scene: Scene, plan_scene: Scene, path: Polyline, targets: np.ndarray) -> np.ndarray:
        """IDM unrolling of all speed targets along one path -> world poses (K, T+1, 3)."""
        cfg = self.config
        veh = scene.vehicle
        n_steps = SIM_NUM_STEPS
        k = len(targets)
        pose = scene.rear_axle_pose
        ego_xy = pose[None, :2]
        s0 = float(path.project(ego_xy)[0])
        v0 = max(float(scene.ego.velocity[0]), 0.0)
        prog = np.zeros((k, n_steps + 1))
        vel = np.zeros((k, n_steps + 1))
        prog[:, 0], vel[:, 0] = s0, v0

        corridor_len = float(np.max(np.abs(targets))) * cfg.trajectory_horizon_s
        corridor = path.substring(s0, s0 + max(corridor_len, 1.0))
        replay = plan_scene.replay
        # objects already overlapping the ego now are ignored (PDM-Closed's "collided tracks")
        ego_now, _ = ego_box(pose[0], pose[1], pose[2], veh.length_m, veh.width_m, veh.rear_axle_to_center_m)
        overlapping = boxes_intersect(ego_now[None], replay.corners[0]) & replay.valid[0]
        entries = self._corridor_entries(replay, corridor, s0, veh) if cfg.yield_lookahead_s > 0 else None
        lead = np.zeros((k, 3))  # progress, velocity, rear length
        targets = np.maximum(targets, 1e-3)
        sqrt_ab = 2.0 * np.sqrt(cfg.accel_max * cfg.decel_max)
        for t in range(1, n_steps + 1):
            if (t - 1) % cfg.leading_agent_update_every == 0:
                lead = self._leading_agents(replay, t, path, corridor, s0, prog[:, t - 1], veh, overlapping)
                if cfg.yield_lookahead_s > 0:
                    cross = self._crossing_agents(replay, entries, t, prog[:, t - 1], vel[:, t - 1], veh, overlapping)
                    lead = np.where((cross[:, 0] < lead[:, 0])[:, None], cross, lead)
            x, v = prog[:, t - 1], vel[:, t - 1]
            s_star = cfg.min_gap_to_lead_agent + v * cfg.headway_time + v * (v - lead[:, 1]) / sqrt_ab
            s_alpha = np.maximum(lead[:, 0] - x - lead[:, 2], cfg.min_gap_to_lead_agent)
            acc = cfg.accel_max * (1.0 - (v / targets) ** cfg.acceleration_exponent - (s_star / s_alpha) ** 2)
            acc = np.clip(acc, -cfg.decel_max, cfg.accel_max)
            prog[:, t] = x + SIM_DT_S * v
            vel[:, t] = np.maximum(v + SIM_DT_S * acc, 0.0)
        return path.interpolate(prog)

    def _leading_agents(
        self,
        replay,
        t: int,
        path: Polyline,
        corridor: Polyline,
        corridor_start: float,
        ego_prog: np.ndarray,
        veh,
        excluded: np.ndarray,
    ) -> np.ndarray:
        k = len(ego_prog)
        out = np.zeros((k, 3))
        out[:, 0] = path.length
        out[:, 2] = 0.5 * veh.length_m
        t = min(t, replay.valid.shape[0] - 1)
        valid = np.nonzero(replay.valid[t] & ~excluded)[0]
        if len(valid) == 0:
            return out
        # boxes touching the driving corridor (the path ahead buffered by half
        # the ego width, square caps), tested in the corridor's Frenet frame
        half_w = 0.5 * veh.width_m
        near = np.nonzero(
            corridor.distance(replay.centers[t, valid]) <= half_w + 0.5 * np.hypot(
                replay.boxes[t, valid, 3], replay.boxes[t, valid, 4])
        )[0]
        valid = valid[near]
        if len(valid) == 0:
            return out
        s_c, d_c = corridor.frenet(replay.corners[t, valid], extrapolate=True)  # (M, 4)
        touches = (
            (d_c.min(axis=1) <= half_w) & (d_c.max(axis=1) >= -half_w)
            & (s_c.max(axis=1) >= -half_w) & (s_c.min(axis=1) <= corridor.length + half_w)
        )
        cand = valid[touches]
        if len(cand) == 0:
            return out
        cand_prog = corridor_start + corridor.frenet(replay.centers[t, cand], extrapolate=True)[0]
        poses = path.interpolate(ego_prog)
        ego_corners, _ = ego_box(
            poses[:, 0], poses[:, 1], poses[:, 2], veh.length_m, veh.width_m, veh.rear_axle_to_center_m
        )
        dist = convex_polygon_distance(ego_corners[:, None], replay.corners[t, cand][None])  # (K, C)
        ahead = cand_prog[None, :] > ego_prog[:, None]
        dist = np.where(ahead, dist, np.inf)
        for i in range(k):
            if not np.any(ahead[i]):
                continue
            j = int(np.argmin(dist[i]))
            a = cand[j]
            out[i, 0] = ego_prog[i] + dist[i, j]
            out[i, 2] = 0.0
            if replay.is_static[a]:
                out[i, 1] = 0.0
            else:
                vx, vy = replay.velocity[t, a]
                rel = wrap_angle(replay.boxes[t, a, 2] - poses[i, 2])
                out[i, 1] = float(np.hypot(vx, vy) * np.cos(rel))
        return out

    def _corridor_entries(self, replay, corridor: Polyline, corridor_start: float, veh) -> tuple:
        """For every replay sample and agent: does the box touch the ego's corridor (path
        buffered by half the ego width + ``yield_clearance_m``), at which path arc does it
        start, and its speed along the path there. Arrays (T, N)."""
        n_t, n = replay.valid.shape
        if n == 0:
            return np.zeros((n_t, 0), bool), np.zeros((n_t, 0)), np.zeros((n_t, 0))
        half_w = 0.5 * veh.width_m + self.config.yield_clearance_m
        s_c, d_c = corridor.frenet(replay.corners.reshape(-1, 2), extrapolate=True)
        s_c, d_c = s_c.reshape(n_t, n, 4), d_c.reshape(n_t, n, 4)
        touch = (replay.valid & (d_c.min(-1) <= half_w) & (d_c.max(-1) >= -half_w) & (s_c.max(-1) >= 0.0)
                 & (s_c.min(-1) <= corridor.length))
        s_in = np.clip(s_c.min(-1), 0.0, corridor.length)
        h = corridor.interpolate(s_in)[..., 2]
        along = replay.velocity[..., 0] * np.cos(h) + replay.velocity[..., 1] * np.sin(h)
        return touch, corridor_start + s_in, np.maximum(along, 0.0)

    def _crossing_agents(
        self,
        replay,
        entries: tuple,
        t: int,
        ego_prog: np.ndarray,
        ego_vel: np.ndarray,
        veh,
        excluded: np.ndarray,
    ) -> np.ndarray:
        """Crossing and merging traffic as IDM leads (K, 3), the ``_leading_agents`` layout.

        An agent not in the corridor now whose forecast box enters it ahead of the
        ego within ``yield_lookahead_s`` (at arc ``s_c``, ``tau`` seconds from now) is
        yielded to unless the ego, at its current speed, has passed ``s_c`` plus the
        agent's and its own length ``yield_margin_s`` before ``tau``: IDM then sees a
        lead at ``s_c`` moving at the agent's speed along the path (about 0 for
        crossing traffic, so the ego stops before the conflict; the merging car's
        speed for merging traffic).
        """
        cfg = self.config
        touch, s_in, along = entries
        k = len(ego_prog)
        out = np.zeros((k, 3))
        out[:, 0] = np.inf
        n_t = touch.shape[0]
        t = min(t, n_t - 1)
        end = min(t + int(round(cfg.yield_lookahead_s / SIM_DT_S)), n_t - 1)
        eligible = ~replay.is_static & ~excluded & replay.valid[t] & ~touch[t]
        window = touch[t + 1:end + 1] & eligible[None]
        hit = np.nonzero(window.any(axis=0))[0]
        if len(hit) == 0:
            return out
        first = np.argmax(window[:, hit], axis=0)  # first sample in the corridor
        tau = (first + 1) * SIM_DT_S
        rows = t + 1 + first
        s_c, v_c = s_in[rows, hit], along[rows, hit]
        lengths = replay.boxes[t, hit, 3]
        bumper = veh.rear_axle_to_center_m + 0.5 * veh.length_m
        gap = s_c[None, :] - (ego_prog[:, None] + bumper)  # (K, H)
        clear = (gap + veh.length_m + lengths[None, :]) / np.maximum(ego_vel[:, None], 0.5)
        yields = (gap > 0.0) & (clear + cfg.yield_margin_s >= tau[None, :])
        s_yield = np.where(yields, s_c[None, :], np.inf)
        j = np.argmin(s_yield, axis=1)
        rows_k = np.arange(k)
        has = np.isfinite(s_yield[rows_k, j])
        out[has, 0] = s_yield[rows_k, j][has]
        out[has, 1] = v_c[j][has]
        out[has, 2] = bumper
        return out

    # ------------------------------------------------------------------ API
    def plan_detailed(self, scene: Scene) -> ReferencePlan:
        cfg = self.config
        plan_scene = self._planning_scene(scene)
        limit = self._speed_limit(scene)
        targets = np.asarray(cfg.speed_limit_fractions, dtype=np.float64) * limit
        route = scene.route
        s_ego = float(route.project(scene.rear_axle_pose[None, :2])[0])
        # the whole route ahead (up to 1 km): its end is IDM's stop target when nothing leads
        base = route.substring(max(s_ego - 5.0, 0.0), s_ego + 1000.0).resample(cfg.path_resolution_m)
        proposals, offsets, speeds = [], [], []
        for off in cfg.lateral_offsets:
            path = base.offset(float(off))
            proposals.append(self._unroll(scene, plan_scene, path, targets))
            offsets.extend([float(off)] * len(targets))
            speeds.extend(targets.tolist())
        props = np.concatenate(proposals, axis=0)
        states = simulate_world_references(plan_scene, props, self.tracker)
        batch = score_states(plan_scene, states, self.pdms_config)
        mult = batch.multiplicative
        ep = normalized_progress(batch.progress_m * mult, mult, self.pdms_config.progress_distance_threshold)
        scores = weighted_score(mult, batch.ttc, ep, batch.comfort, self.pdms_config)
        best = int(np.argmax(scores))
        idx = [int(round(cfg.pose_interval_s * (i + 1) / SIM_DT_S)) for i in range(cfg.num_poses)]
        idx = [min(i, props.shape[1] - 1) for i in idx]
        poses = scene.trajectory_from_rear_axle(props[best, idx])
        traj = Trajectory(poses=poses, interval_s=cfg.pose_interval_s, model_id=self.name)
        return ReferencePlan(
            trajectory=traj,
            proposals=props,
            simulated=states,
            scores=scores,
            batch=batch,
            best=best,
            lateral_offsets=np.asarray(offsets),
            target_speeds=np.asarray(speeds),
        )

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return self.plan_detailed(agent_input.require_scene(self.name)).trajectory

    def reference_progress(self, scene: Scene, plan: ReferencePlan | None = None) -> float:
        """Raw progress * NC * DAC of the chosen proposal, simulated in the logged scene."""
        plan = plan or self.plan_detailed(scene)
        states = simulate_world_references(scene, plan.proposals[plan.best][None], self.tracker)
        batch = score_states(scene, states, self.pdms_config)
        return float(batch.progress_m[0] * batch.multiplicative[0])
