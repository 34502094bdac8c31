"""The teacher inference stage: ``TeacherReasoner.reason(SensorFrame) -> LatentPlan``.

The one place that runs the VLM teacher on a frame (the teacher_labeler node and the
evaluation's teacher-fused agent both call it): the camera ``TeacherConfig.camera_index``
as a (1, 3, H, W) float image in [0, 1], the ego-status row, a greedy decode under
``torch.inference_mode``, and a ``LatentPlan`` whose action embeddings are the context's
last ``K`` rows (one per latent token) and visual embeddings the rows before them.

Errors as the other stages (``runtime/stages.py``): a frame without the teacher's camera
raises ``MissingInputError``, non-finite outputs ``ModelOutputError``. Not exported from
``runtime/__init__`` (it loads the VLM code only where a teacher is used).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentvla_ros.core.types import LatentPlan, SensorFrame
from latentvla_ros.models.configuration_teacher import TeacherConfig
from latentvla_ros.models.modeling_teacher import LatentTeacher
from latentvla_ros.runtime.stages import MissingInputError, ModelOutputError


class TeacherReasoner:
    """The VLM teacher as a reasoning stage (same ``reason`` / ``model_id`` / ``untrained`` as ``LatentReasoner``)."""

    def __init__(self, teacher: LatentTeacher, model_id: str, untrained: bool = False):
        self.teacher = teacher.eval()
        self.model_id = model_id
        self.untrained = untrained

    @classmethod
    def load(cls, directory: str | Path | None, device: str = "cpu") -> TeacherReasoner:
        """The teacher saved in ``directory``; None or '' builds the untrained 'tiny' preset."""
        if directory:
            return cls(LatentTeacher.load(directory, device=device), f"teacher:{Path(directory).name}")
        return cls(LatentTeacher.build(TeacherConfig(preset="tiny")), "teacher:untrained", untrained=True)

    @property
    def config(self) -> TeacherConfig:
        return self.teacher.cfg

    @property
    def hidden_size(self) -> int:
        return self.teacher.hidden_size

    def reason(self, frame: SensorFrame) -> LatentPlan:
        cam = self.config.camera_index
        if cam >= len(frame.cameras):
            raise MissingInputError(f"teacher reads camera {cam}, frame has {len(frame.cameras)}")
        # a copy: the camera array may be a read-only view into a (shared) message
        image = torch.from_numpy(np.array(frame.cameras[cam].image)).permute(2, 0, 1).float().div_(255.0)
        status = torch.from_numpy(frame.ego.status_vector())
        with torch.inference_mode():
            probs, context = self.teacher.predict(image[None], status[None])
        probs, context = probs[0].float().numpy(), context[0].float().numpy()
        if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(context))):
            raise ModelOutputError("teacher produced non-finite values")
        k = probs.shape[0]
        return LatentPlan(stamp_ns=frame.stamp_ns, token_ids=probs.argmax(-1), token_probabilities=probs,
                          action_embeddings=context[-k:], visual_embeddings=context[:-k], model_id=self.model_id)
