"""The sizes a log's labels were made with, recorded in its ``meta.json``.

- ``latent_ego_codes.npy`` (written by the LAM, ``training/lam.py``): the LAM's codebook
  size under ``meta["latent_codes"]["codebook_size"]``.
- ``teacher_probs.npy`` (written by the teacher, ``training/teacher.py``): the teacher's
  ``core.sizes.ActionSpace`` under ``meta["teacher_labels"]``.
- ``future_trajectory.npy`` (written by ``LogWriter``): its ``core.sizes.TrajectorySampling``
  under ``meta["trajectory_sampling"]`` when it is not the default.

The keys are written only for sizes other than the defaults (``core.sizes``), so logs at
the default sizes keep the bytes they had before; an absent key means the default
(16 codes, 12 tokens; 8 poses at 0.5 s). Consumers
compare a log's sizes with their own config's (``check_latent_codes``) and raise
``SizeMismatchError`` instead of dropping the frames whose codes do not fit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.sizes import (
    DEFAULT_ACTION_SPACE,
    DEFAULT_TRAJECTORY_SAMPLING,
    ActionSpace,
    SizeMismatchError,
    TrajectorySampling,
    check_codebook,
)
from latentvla_ros.data.log_files import META_FILE, read_meta, write_text_atomic

LATENT_CODES_META = "latent_codes"
TEACHER_LABELS_META = "teacher_labels"
TRAJECTORY_SAMPLING_META = "trajectory_sampling"


def trajectory_sampling_of(meta: dict[str, Any]) -> TrajectorySampling:
    """Sampling of the log's ``future_trajectory.npy`` (``LogWriter`` records it; older logs: the default)."""
    rec = meta.get(TRAJECTORY_SAMPLING_META, {})
    return TrajectorySampling(int(rec.get("num_poses", DEFAULT_TRAJECTORY_SAMPLING.num_poses)),
                              float(rec.get("interval_s", DEFAULT_TRAJECTORY_SAMPLING.interval_s)))


def trajectory_sampling_meta(sampling: TrajectorySampling) -> dict[str, Any]:
    """The ``meta.json`` items ``LogWriter`` records: none for the default sampling (absent means
    the default, so logs at the default stay byte-identical to those written before the key existed)."""
    if sampling == DEFAULT_TRAJECTORY_SAMPLING:
        return {}
    return {TRAJECTORY_SAMPLING_META: {"num_poses": int(sampling.num_poses), "interval_s": float(sampling.interval_s)}}


def record_label_sizes(log_dir: str | Path, items: dict[str, Any]) -> None:
    """Merge ``items`` (``latent_codes_meta`` / ``teacher_labels_meta``; a None value removes the key)
    into the log's ``meta.json`` where it has one, rewriting it only when that changes it; the
    labellers call it after writing their arrays."""
    path = Path(log_dir) / META_FILE
    if not path.is_file():
        return
    meta = read_meta(log_dir)
    new = {k: v for k, v in {**meta, **items}.items() if v is not None}
    if new != meta:
        write_text_atomic(path, json.dumps(new, indent=2, sort_keys=True))


def latent_codebook_size(meta: dict[str, Any]) -> int:
    """Codebook size of the LAM that wrote the log's ``latent_ego_codes.npy``."""
    return int(meta.get(LATENT_CODES_META, {}).get("codebook_size", DEFAULT_ACTION_SPACE.codebook_size))


def teacher_action_space(meta: dict[str, Any]) -> ActionSpace:
    """Action space of the teacher that wrote the log's ``teacher_probs.npy``."""
    rec = meta.get(TEACHER_LABELS_META, {})
    return ActionSpace(int(rec.get("codebook_size", DEFAULT_ACTION_SPACE.codebook_size)),
                       int(rec.get("tokens_per_frame", DEFAULT_ACTION_SPACE.tokens_per_frame)))


def latent_codes_meta(codebook_size: int) -> dict[str, Any]:
    """The ``meta.json`` item the LAM labeller records (None, i.e. removed, for the default codebook)."""
    default = int(codebook_size) == DEFAULT_ACTION_SPACE.codebook_size
    return {LATENT_CODES_META: None if default else {"codebook_size": int(codebook_size)}}


def teacher_labels_meta(space: ActionSpace) -> dict[str, Any]:
    """The ``meta.json`` item the teacher labeller records (None, i.e. removed, for the default action space)."""
    return {TEACHER_LABELS_META: None if space == DEFAULT_ACTION_SPACE else {
        "codebook_size": int(space.codebook_size), "tokens_per_frame": int(space.tokens_per_frame)}}


def check_latent_codes(log_dir: str | Path, meta: dict[str, Any], codes: np.ndarray,
                       expected_codebook: int, expected_from: str) -> None:
    """``SizeMismatchError`` when the log's LAM codebook differs from ``expected_codebook``
    or a code lies outside [-1, codebook) (-1: no transition, the log's tail)."""
    recorded = latent_codebook_size(meta)
    check_codebook(expected_codebook, expected_from, recorded, f"the LAM that labelled {log_dir}")
    arr = np.asarray(codes)
    if arr.size and (int(arr.min()) < -1 or int(arr.max()) >= recorded):
        raise SizeMismatchError(
            f"{log_dir}/latent_ego_codes.npy holds codes in [{int(arr.min())}, {int(arr.max())}], outside "
            f"[-1, {recorded}) of its {recorded}-code LAM (relabel the log)")
