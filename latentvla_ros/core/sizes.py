"""The two sizes every model, log and planner must agree on, in one place.

- ``TrajectorySampling``: how a trajectory is sampled (``num_poses`` poses at
  ``interval_s``), NAVSIM's ``TrajectorySampling``.
- ``ActionSpace``: the latent actions (``codebook_size`` codes of the LAM,
  ``tokens_per_frame`` tokens the teacher and the student predict per frame).

**To change the codebook size, the number of poses or the interval, change the
defaults here** (``DEFAULT_TRAJECTORY_SAMPLING`` / ``DEFAULT_ACTION_SPACE``). Every
model config (``models/configuration_*.py``) takes its defaults from them and saves
them in its checkpoint's ``config.json``; from then on the checkpoint's values win
(an old checkpoint keeps its sizes). Where two checkpoints or a checkpoint and a
labelled log meet, their sizes are compared with ``check_codebook`` /
``check_same``: a mismatch raises ``SizeMismatchError`` naming both sides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from latentvla_ros.core.config_base import ConfigError


class SizeMismatchError(ConfigError):
    """Two checkpoints (or a checkpoint and a log) disagree on a size."""


@dataclass(frozen=True)
class TrajectorySampling:
    """``num_poses`` poses (x, y, heading) at ``interval_s`` spacing, the first one
    ``interval_s`` after the frame."""

    num_poses: int = 8
    interval_s: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.num_poses, int) and self.num_poses >= 1):
            raise ConfigError(f"num_poses: must be an int >= 1, got {self.num_poses!r}")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ConfigError(f"interval_s: must be > 0, got {self.interval_s!r}")

    @property
    def horizon_s(self) -> float:
        return self.num_poses * self.interval_s


@dataclass(frozen=True)
class ActionSpace:
    """``codebook_size`` latent action codes; ``tokens_per_frame`` tokens per frame."""

    codebook_size: int = 16
    tokens_per_frame: int = 12

    def __post_init__(self) -> None:
        if not (isinstance(self.codebook_size, int) and self.codebook_size >= 2):
            raise ConfigError(f"codebook_size: must be an int >= 2, got {self.codebook_size!r}")
        if not (isinstance(self.tokens_per_frame, int) and self.tokens_per_frame >= 1):
            raise ConfigError(f"tokens_per_frame: must be an int >= 1, got {self.tokens_per_frame!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """(tokens_per_frame, codebook_size): one frame's token probabilities."""
        return self.tokens_per_frame, self.codebook_size


DEFAULT_TRAJECTORY_SAMPLING = TrajectorySampling()
DEFAULT_ACTION_SPACE = ActionSpace()


def check_codebook(expected: int, expected_from: str, got: int, got_from: str) -> None:
    """``SizeMismatchError`` unless both sides use the same codebook size."""
    if int(expected) != int(got):
        raise SizeMismatchError(
            f"codebook size mismatch: {expected_from} has {int(expected)} codes, {got_from} has {int(got)} "
            "(retrain or relabel one of them with the other's codebook size; see core/sizes.py)")


def check_same(what: str, expected: object, expected_from: str, got: object, got_from: str) -> None:
    """``SizeMismatchError`` unless ``expected == got`` (two ``ActionSpace`` / ``TrajectorySampling``)."""
    if expected != got:
        raise SizeMismatchError(f"{what} mismatch: {expected_from} has {expected}, {got_from} has {got}")
