"""One agent interface (issue 14 c): every planner, baseline and our agents are a
core.agent.AbstractAgent (AgentInput in, Trajectory out); the drivers call only that."""
from __future__ import annotations

import numpy as np
import pytest
from test_models import make_frame

from latentvla_ros.core.agent import AbstractAgent, AgentInput, agent_input_of
from latentvla_ros.core.types import DrivingCommand, EgoState


def _ego() -> EgoState:
    return EgoState(velocity=np.array([8.0, 0.0]), acceleration=np.zeros(2), yaw_rate=0.05, command=DrivingCommand.STRAIGHT)


def test_agent_input_of():
    frame = make_frame()
    inp = agent_input_of(frame)
    assert inp.frame is frame and inp.ego is frame.ego and inp.stamp_ns == frame.stamp_ns and inp.scene is None
    assert agent_input_of(inp) is inp and agent_input_of(_ego()).frame is None
    with pytest.raises(TypeError):
        agent_input_of(42)
    with pytest.raises(ValueError, match="needs sensor frames"):
        AgentInput(ego=_ego()).require_frame("x")


def test_every_planner_is_an_agent():
    from latentvla_ros.evaluation.agents import build_agent
    from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner, ExpertPlanner
    from latentvla_ros.evaluation.ego_mlp import EgoMLPPlanner
    from latentvla_ros.evaluation.reference_planner import ReferencePlanner
    from latentvla_ros.models.configuration_ego_mlp import EgoMLPConfig
    from latentvla_ros.models.modeling_ego_mlp import EgoStatusMLP

    frame = make_frame()
    ours = [build_agent("none"), build_agent("student"), build_agent("teacher")]
    sensor_only = [ConstantVelocityPlanner(), EgoMLPPlanner(EgoStatusMLP(EgoMLPConfig()))] + ours
    for agent in sensor_only + [ExpertPlanner(), ReferencePlanner()]:
        assert isinstance(agent, AbstractAgent), type(agent).__name__
    for agent in sensor_only:
        assert agent.requires_scene is False
        traj = agent.compute_trajectory(agent_input_of(frame))
        assert traj.is_finite() and traj.poses.shape == (8, 3)
    for agent in ours:  # one way in: an AgentInput; a bare frame is refused clearly
        wrapped = agent.compute_trajectory(AgentInput(frame.ego, frame.stamp_ns, frame))
        np.testing.assert_allclose(agent.compute_trajectory(agent_input_of(frame)).poses, wrapped.poses)
        with pytest.raises(TypeError, match="takes an AgentInput"):
            agent.compute_trajectory(frame)
    cv = ConstantVelocityPlanner()
    np.testing.assert_array_equal(cv.plan(frame).poses, cv.compute_trajectory(agent_input_of(frame)).poses)
    assert ExpertPlanner().requires_scene and ReferencePlanner().requires_scene
    with pytest.raises(ValueError, match="needs a Scene"):
        ReferencePlanner().compute_trajectory(agent_input_of(frame))


def test_guarded_agent_times_the_guard_into_the_plan_and_forwards_concurrency():
    """The bench's bare chain is a GuardedAgent: its timings must include the guard (the graph's planner runs it),
    and ``concurrent`` must reach the wrapped LatentVLAAgent."""
    import time as _time

    from latentvla_ros.core.obstacle_guard import ObstacleGuard
    from latentvla_ros.core.types import Trajectory
    from latentvla_ros.runtime.agent import AgentTimings, GuardedAgent

    class Inner:
        name, requires_scene, concurrent = "inner", False, False
        timings = AgentTimings(1.0, 2.0, 3.0, 6.0)

        def compute_trajectory(self, agent_input):
            return Trajectory(poses=np.column_stack([np.arange(1, 9) * 5.0, np.zeros(8), np.zeros(8)]))

    class SlowGuard(ObstacleGuard):
        def filter(self, *args, **kwargs):
            _time.sleep(0.02)
            return super().filter(*args, **kwargs)

    inner = Inner()
    agent = GuardedAgent(inner, SlowGuard())
    agent.compute_trajectory(agent_input_of(make_frame()))
    assert agent.guard_ms >= 20.0
    t = agent.timings
    assert (t.bev_ms, t.reason_ms) == (1.0, 2.0)
    assert t.plan_ms == pytest.approx(3.0 + agent.guard_ms) and t.total_ms == pytest.approx(6.0 + agent.guard_ms)
    agent.concurrent = True
    assert inner.concurrent is True and agent.concurrent is True
