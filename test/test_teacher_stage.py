"""One teacher inference stage (issue 14 b): runtime.teacher.TeacherReasoner, used by the
teacher_labeler node and the evaluation's teacher-fused agent."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_models import make_frame

from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.runtime.stages import MissingInputError, ModelOutputError
from latentvla_ros.runtime.teacher import TeacherReasoner


def test_reason_is_the_teachers_decode():
    stage = TeacherReasoner.load(None)
    assert stage.untrained and stage.model_id == "teacher:untrained"
    frame = make_frame()
    plan = stage.reason(frame)
    # the assembly both callers had written out by hand
    image = torch.from_numpy(np.array(frame.cameras[0].image)).permute(2, 0, 1).float().div_(255.0)
    with torch.inference_mode():
        probs, context = stage.teacher.predict(image[None], torch.from_numpy(frame.ego.status_vector())[None])
    k = stage.config.num_latent_tokens
    np.testing.assert_array_equal(plan.token_probabilities, probs[0].numpy())
    np.testing.assert_array_equal(np.concatenate([plan.visual_embeddings, plan.action_embeddings]), context[0].numpy())
    assert plan.action_embeddings.shape[0] == k and plan.token_ids.tolist() == probs[0].argmax(-1).tolist()
    assert plan.stamp_ns == frame.stamp_ns and plan.model_id == "teacher:untrained"


def test_reason_errors(monkeypatch):
    stage = TeacherReasoner.load(None)
    frame = make_frame()
    with pytest.raises(MissingInputError, match="camera 0"):
        stage.reason(dataclasses.replace(frame, cameras=[]))
    k, c = stage.config.num_latent_tokens, stage.config.codebook_size
    monkeypatch.setattr(stage.teacher, "predict", lambda images, status: (torch.full((1, k, c), float("nan")),
                                                                            torch.zeros(1, stage.config.context_tokens, 8)))
    with pytest.raises(ModelOutputError, match="non-finite"):
        stage.reason(frame)


def test_teacher_fused_agent_plans_from_the_stage():
    from latentvla_ros.evaluation.agents import build_agent

    agent = build_agent("teacher", guard=False)  # the stage chain itself; the guard has its own tests
    assert agent.model_id.split("|")[1] == "teacher:untrained"
    frame = make_frame()
    traj = agent.compute_trajectory(agent_input_of(frame))
    expected = agent.planner.plan(agent.bev.extract(frame), agent.teacher.reason(frame))
    np.testing.assert_allclose(traj.poses, expected.poses)
