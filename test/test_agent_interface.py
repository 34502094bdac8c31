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
