"""Reference planner (PDM-Closed-like), baselines and scene building from logs."""
from __future__ import annotations

import numpy as np
import pytest

from latentvla_ros.core.agent import AbstractAgent
from latentvla_ros.core.types import AgentBox, DrivingCommand, EgoState, MapGeometry, SensorFrame, Trajectory
from latentvla_ros.evaluation.baselines import (
    ConstantVelocityPlanner,
    ExpertPlanner,
    constant_turn_rate_poses,
)
from latentvla_ros.evaluation.geometry import world_to_ego_poses
from latentvla_ros.evaluation.pdms import Scene, score_trajectory
from latentvla_ros.evaluation.reference_planner import ReferencePlanner, ReferencePlannerConfig
from latentvla_ros.evaluation.scenes import iter_scenes, scene_from_log, scene_indices


def two_lane_map() -> MapGeometry:
    # each lane split in two segments to exercise route chaining
    lanes = [
        np.array([[-100.0, 0.0], [100.0, 0.0]]),
        np.array([[100.0, 0.0], [500.0, 0.0]]),
        np.array([[-100.0, 4.0], [500.0, 4.0]]),
    ]
    poly = np.array([[-100.0, -2.0], [500.0, -2.0], [500.0, 6.0], [-100.0, 6.0]])
    return MapGeometry(lane_centerlines=lanes, drivable_polygons=[poly])


def straight_scene(v=10.0, agents=None, **kw) -> Scene:
    return Scene(
        ego_pose=np.zeros(3),
        ego=EgoState(velocity=np.array([v, 0.0]), acceleration=np.zeros(2)),
        map=two_lane_map(),
        agent_frames=agents or [],
        **kw,
    )


# ----------------------------------------------------------------------------- reference planner
def test_reference_planner_brakes_for_stopped_car_in_lane():
    stopped = [[AgentBox(x=40.0, y=0.0, heading=0.0, length=5.0, width=2.0, track_id=9)] for _ in range(51)]
    s = straight_scene(10.0, stopped, speed_limit_mps=15.0)
    planner = ReferencePlanner()
    plan = planner.plan_detailed(s)
    assert plan.proposals.shape == (15, 41, 3)
    assert plan.lateral_offsets[plan.best] == 0.0  # lane keeping
    poses = plan.trajectory.poses
    assert poses.shape == (8, 3)
    np.testing.assert_allclose(poses[:, 1:], 0.0, atol=1e-9)
    steps = np.diff(np.concatenate([[0.0], poses[:, 0]]))
    assert steps[-1] < steps[0]  # decelerating
    assert poses[-1, 0] < 40.0 - 5.0  # stops short of the car
    r = score_trajectory(s, plan.trajectory, reference_progress=planner.reference_progress(s, plan))
    assert (r.nc, r.dac, r.ttc) == (1.0, 1.0, 1.0)
    assert r.pdms > 0.8
    # proposals that would hit the car score lower than the chosen one
    assert np.all(plan.scores <= plan.scores[plan.best])


def test_reference_planner_free_road_follows_speed_limit():
    s = straight_scene(10.0, speed_limit_mps=10.0)
    plan = ReferencePlanner().plan_detailed(s)
    assert plan.target_speeds[plan.best] == pytest.approx(10.0)
    np.testing.assert_allclose(plan.trajectory.poses[:, 0], 5.0 * np.arange(1, 9), atol=0.05)
    assert isinstance(ReferencePlanner(), AbstractAgent)


def test_reference_planner_forecast_modes_and_validation():
    # a car that will pull into the ego's lane in the log but is beside it now
    cut_in = [
        [AgentBox(x=30.0 + 5.0 * 0.1 * k, y=max(4.0 - 0.1 * k, 0.0), heading=0.0, length=5.0, width=2.0,
                  vx=5.0, vy=-1.0 if k < 40 else 0.0, track_id=4)]
        for k in range(51)
    ]
    s = straight_scene(10.0, cut_in, speed_limit_mps=10.0)
    p_cv = ReferencePlanner().plan(s)
    p_log = ReferencePlanner(ReferencePlannerConfig(forecast="log")).plan(s)
    assert p_cv.poses.shape == p_log.poses.shape == (8, 3)
    with pytest.raises(ValueError):
        ReferencePlanner(ReferencePlannerConfig(forecast="oracle"))


# ----------------------------------------------------------------------------- baselines
def test_constant_velocity_planner():
    ego = EgoState(velocity=np.array([6.0, 8.0]), acceleration=np.zeros(2), yaw_rate=0.0)
    traj = ConstantVelocityPlanner(use_yaw_rate=False).plan(ego)
    assert isinstance(traj, Trajectory)
    np.testing.assert_allclose(traj.poses[:, 0], 10.0 * 0.5 * np.arange(1, 9))  # |v| along x (NAVSIM CV agent)
    np.testing.assert_allclose(traj.poses[:, 1:], 0.0)
    turning = EgoState(velocity=np.array([10.0, 0.0]), acceleration=np.zeros(2), yaw_rate=0.25)
    frame = SensorFrame(stamp_ns=123, cameras=[], lidar_points=np.zeros((0, 4), np.float32), ego=turning)
    t2 = ConstantVelocityPlanner().plan(frame)
    assert t2.stamp_ns == 123
    np.testing.assert_allclose(t2.poses[:, 2], 0.25 * 0.5 * np.arange(1, 9))
    radius = 10.0 / 0.25
    np.testing.assert_allclose(np.hypot(t2.poses[:, 0], t2.poses[:, 1] - radius), radius)
    assert isinstance(ConstantVelocityPlanner(), AbstractAgent)
    with pytest.raises(TypeError):
        ConstantVelocityPlanner().plan(42)


def test_constant_turn_rate_small_yaw_rate_is_continuous():
    a = constant_turn_rate_poses(10.0, 1e-7)
    b = constant_turn_rate_poses(10.0, 2e-6)
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-3)


# ----------------------------------------------------------------------------- scenes from logs
class FakeLog:
    """Implements the DrivingLog accessors scene_from_log uses."""

    def __init__(self, num_frames=80, dt=0.1, v=10.0, lead_v=8.0):
        self.num_frames = num_frames
        self.meta = {"dt_s": dt, "ego_length_m": 5.0, "ego_width_m": 2.0, "scenario": "fake", "seed": 0}
        self.map = two_lane_map()
        self._dt, self._v, self._lead_v = dt, v, lead_v

    def ego_pose(self, t):
        return np.array([self._v * self._dt * t, 0.0, 0.0])

    def ego_state(self, t):
        return EgoState(np.array([self._v, 0.0], np.float32), np.zeros(2, np.float32), 0.0, DrivingCommand.STRAIGHT)

    def agents(self, t):
        time = self._dt * t
        return [
            AgentBox(x=40.0 + self._lead_v * time, y=0.0, heading=0.0, length=5.0, width=2.0,
                     vx=self._lead_v, vy=0.0, track_id=1),
            AgentBox(x=-30.0 + 12.0 * time, y=4.0, heading=0.0, length=5.0, width=2.0, vx=12.0, track_id=2),
        ]

    def future_trajectory(self, t):
        poses = np.zeros((8, 3), np.float32)
        poses[:, 0] = self._v * 0.5 * np.arange(1, 9)
        return poses


def test_scene_from_log_builds_world_scene():
    log = FakeLog()
    s = scene_from_log(log, 10)
    assert len(s.agent_frames) == 51 and s.agent_dt_s == 0.1
    np.testing.assert_allclose(s.ego_pose, [10.0, 0.0, 0.0])
    assert s.ego.command == DrivingCommand.STRAIGHT
    np.testing.assert_allclose(s.expert_trajectory[:, 0], 5.0 * np.arange(1, 9))
    assert s.rear_axle_to_center_m == 0.0 and s.ego_length_m == 5.0
    route = s.route.points
    assert route[0, 0] <= 10.0 - 30.0 + 1e-9 or route[0, 0] == -100.0
    assert route[-1, 0] >= 200.0 and np.all(route[:, 1] == 0.0)
    assert s.replay.track_ids.tolist() == [1, 2]
    r = score_trajectory(s, ExpertPlanner().plan(s), reference_progress=40.0)
    assert (r.nc, r.dac, r.ttc, r.c) == (1.0, 1.0, 1.0, 1.0)
    assert r.pdms == pytest.approx(1.0, abs=1e-6)


def test_scene_near_log_end_and_indices():
    log = FakeLog(num_frames=60)
    idx = scene_indices(log, stride=5)
    assert idx == list(range(0, 20, 5))
    late = scene_from_log(log, 55)
    assert len(late.agent_frames) == 5  # the scorer extrapolates the rest
    r = score_trajectory(late, ConstantVelocityPlanner().plan(late), reference_progress=40.0)
    assert (r.nc, r.dac, r.ttc) == (1.0, 1.0, 1.0)  # lead car 24 m ahead, closing at 2 m/s
    assert late.replay.valid[:, 0].all()  # extrapolated at constant velocity past the log end
    assert len(list(iter_scenes(log, stride=10))) == 2
    with pytest.raises(IndexError):
        scene_from_log(log, 60)


def test_expert_poses_match_world_motion():
    log = FakeLog()
    s = scene_from_log(log, 0)
    world_future = np.array([log.ego_pose(5 * (i + 1)) for i in range(8)])
    np.testing.assert_allclose(world_to_ego_poses(s.ego_pose, world_future), s.expert_trajectory, atol=1e-5)


def test_reference_planner_is_deterministic_under_agent_shuffles():
    import random

    def frames(seed):
        rng = random.Random(seed)
        out = []
        for k in range(51):
            t = 0.1 * k
            f = [
                AgentBox(x=35.0 + 6.0 * t, y=0.0, heading=0.0, length=5.0, width=2.0, vx=6.0, track_id=1),
                AgentBox(x=10.0 + 9.0 * t, y=4.0, heading=0.0, length=5.0, width=2.0, vx=9.0, track_id=2),
                AgentBox(x=80.0, y=-1.5, heading=0.3, length=1.0, width=1.0, track_id=3, is_static=True),
            ]
            rng.shuffle(f)
            out.append(f)
        return out

    plans = [ReferencePlanner().plan_detailed(straight_scene(10.0, frames(seed))) for seed in (0, 1)]
    assert np.array_equal(plans[0].trajectory.poses, plans[1].trajectory.poses)
    assert np.array_equal(plans[0].scores, plans[1].scores)
    assert plans[0].best == plans[1].best
