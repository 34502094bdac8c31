"""The sizes of a checkpoint folder's models must agree: ``check_checkpoint_sizes(root)``.

The LAM (``<root>/lam``) defines the codebook; the teacher (``<root>/teacher``) and the
student (``<root>/student``) predict ``tokens_per_frame`` tokens over it
(``core.sizes.ActionSpace``). A student trained against a LAM of another codebook size
would still load and run, its tokens meaning nothing, so a mismatch is a
``SizeMismatchError`` at load. Only the ``config.json`` files are read; absent models are
skipped (an old folder keeps loading: its configs hold the sizes it was trained with).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.checkpoint import CheckpointError
from latentvla_ros.core.sizes import ActionSpace, check_codebook, check_same
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.configuration_teacher import TeacherConfig
from latentvla_ros.models.modeling_teacher import TEACHER_CONFIG_NAME
from latentvla_ros.runtime.registry import STUDENT_SUBDIR

LAM_SUBDIR = "lam"
TEACHER_SUBDIR = "teacher"


_SIZE_FIELDS = ("codebook_size", "num_action_tokens", "num_latent_tokens")


def _sized(raw: dict | None, cls):
    """A default ``cls`` carrying only the checkpoint's size fields (the rest of an older
    config may not load in this version; its sizes always do)."""
    if raw is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: raw[k] for k in _SIZE_FIELDS if k in raw and k in names})


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt {path}: {exc}") from exc


def _checkpoint_config(directory: Path) -> dict | None:
    return ckpt.read_checkpoint_config(directory)["config"] if (directory / ckpt.CONFIG_NAME).is_file() else None


def checkpoint_action_spaces(root: str | Path) -> dict[str, ActionSpace | int]:
    """{'lam': codebook size, 'teacher' / 'student': ActionSpace} of the models present in ``root``."""
    root = Path(root)
    out: dict[str, ActionSpace | int] = {}
    lam = _sized(_checkpoint_config(root / LAM_SUBDIR), LamConfig)
    if lam is not None:
        out["lam"] = lam.codebook_size
    teacher = _sized(_read_json(root / TEACHER_SUBDIR / TEACHER_CONFIG_NAME), TeacherConfig)
    if teacher is not None:
        out["teacher"] = teacher.action_space
    student = _sized(_checkpoint_config(root / STUDENT_SUBDIR), StudentConfig)
    if student is not None:
        out["student"] = student.action_space
    return out


def check_checkpoint_sizes(root: str | Path) -> dict[str, ActionSpace | int]:
    """``SizeMismatchError`` when the LAM, teacher and student in ``root`` disagree on the
    codebook size or the teacher and student on the tokens per frame; returns what it read."""
    spaces = checkpoint_action_spaces(root)
    models = [(name, spaces[name]) for name in ("teacher", "student") if name in spaces]
    if "lam" in spaces:
        for name, space in models:
            check_codebook(spaces["lam"], f"the LAM {Path(root) / LAM_SUBDIR}", space.codebook_size,
                           f"the {name} {Path(root) / name}")
    if len(models) == 2:
        check_same("action space", models[0][1], f"the teacher {Path(root) / TEACHER_SUBDIR}", models[1][1],
                   f"the student {Path(root) / STUDENT_SUBDIR}")
    return spaces
