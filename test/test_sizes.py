"""Sizes from one config (issue 14 a): core/sizes.py holds the defaults, checkpoints and
labelled logs carry their own sizes, and a mismatch is a clear error, never frames
silently dropped as invalid."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_data_log_format import write_log

from latentvla_ros.core import types
from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.sizes import (
    DEFAULT_ACTION_SPACE,
    DEFAULT_TRAJECTORY_SAMPLING,
    ActionSpace,
    SizeMismatchError,
    TrajectorySampling,
)
from latentvla_ros.data.label_sizes import latent_codes_meta, record_label_sizes, teacher_labels_meta
from latentvla_ros.data.log_format import DrivingLog, LogFormatError
from latentvla_ros.models.configuration_ego_mlp import EgoMLPConfig
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.configuration_teacher import TeacherConfig

EDGE = Path(__file__).resolve().parents[1] / "checkpoints" / "edge"


def test_one_source_of_truth_for_the_defaults():
    assert (types.NUM_POSES, types.POSE_INTERVAL_S) == (DEFAULT_TRAJECTORY_SAMPLING.num_poses, DEFAULT_TRAJECTORY_SAMPLING.interval_s)
    assert (types.CODEBOOK_SIZE, types.NUM_LATENT_TOKENS) == (DEFAULT_ACTION_SPACE.codebook_size, DEFAULT_ACTION_SPACE.tokens_per_frame)
    assert StudentConfig().action_space == TeacherConfig().action_space == DEFAULT_ACTION_SPACE
    assert LamConfig().codebook_size == DEFAULT_ACTION_SPACE.codebook_size
    assert PlannerConfig().trajectory_sampling == EgoMLPConfig().trajectory_sampling == DEFAULT_TRAJECTORY_SAMPLING
    assert StudentConfig(codebook_size=32, num_action_tokens=6).action_space == ActionSpace(32, 6)
    assert DEFAULT_TRAJECTORY_SAMPLING.horizon_s == pytest.approx(4.0)
    with pytest.raises(ValueError, match="codebook_size"):
        ActionSpace(1, 12)
    with pytest.raises(ValueError, match="interval_s"):
        TrajectorySampling(8, 0.0)


def _copy_sizes_root(tmp_path: Path, lam_codes: int) -> Path:
    """The edge folder's LAM, teacher and student configs (weights not needed), the LAM's codebook changed."""
    root = tmp_path / "ckpt"
    for sub, name in (("lam", "config.json"), ("student", "config.json"), ("teacher", "teacher_config.json")):
        (root / sub).mkdir(parents=True)
        shutil.copy(EDGE / sub / name, root / sub / name)
    payload = json.loads((root / "lam" / "config.json").read_text())
    payload["config"]["codebook_size"] = lam_codes
    (root / "lam" / "config.json").write_text(json.dumps(payload))
    return root


def test_checkpoint_sizes_must_agree(tmp_path):
    from latentvla_ros.runtime.agent import build_pipeline_from_dir
    from latentvla_ros.runtime.sizes import check_checkpoint_sizes

    # the shipped (older) checkpoints keep loading: their configs carry 16 codes, 12 tokens
    spaces = check_checkpoint_sizes(EDGE)
    assert spaces == {"lam": 16, "teacher": ActionSpace(16, 12), "student": ActionSpace(16, 12)}
    assert check_checkpoint_sizes(_copy_sizes_root(tmp_path / "ok", 16))["lam"] == 16
    root = _copy_sizes_root(tmp_path / "bad", 32)
    with pytest.raises(SizeMismatchError, match="the LAM .* has 32 codes, the teacher .* has 16"):
        check_checkpoint_sizes(root)
    # a LAM with 32 codes beside a student with 16: a clear error at load, not a running agent
    with pytest.raises(SizeMismatchError, match="32 codes"):
        build_pipeline_from_dir(root)


def _labelled_log(tmp_path: Path, codebook: int, codes_max: int) -> DrivingLog:
    write_log(tmp_path / "l1", n=60)
    record_label_sizes(tmp_path / "l1", latent_codes_meta(codebook))
    log = DrivingLog(tmp_path / "l1")
    log.write_array("latent_ego_codes", (np.arange(60) % (codes_max + 1)).astype(np.int16))
    return log


def test_frame_dataset_keeps_codes_of_a_larger_codebook(tmp_path):
    from latentvla_ros.data.torch_datasets import FrameDataset

    _labelled_log(tmp_path, codebook=32, codes_max=31)
    ds = FrameDataset(tmp_path, with_lidar=False, frame_stride=3, require=("latent_tokens",))
    # every frame whose 12 tokens lie inside the log (t + 33 < 60) is used: none dropped for codes >= 16
    assert len(ds) == 60 - 33
    assert int(max(int(ds[i]["latent_tokens"].max()) for i in range(len(ds)))) == 31
    with pytest.raises(SizeMismatchError, match="the model has 16 codes"):
        FrameDataset(tmp_path, with_lidar=False, require=("latent_tokens",), action_space=ActionSpace(16, 12))


def test_frame_dataset_rejects_codes_outside_the_lams_codebook(tmp_path):
    from latentvla_ros.data.torch_datasets import FrameDataset

    _labelled_log(tmp_path, codebook=16, codes_max=20)  # a corrupt label file: codes 16..20
    with pytest.raises(SizeMismatchError, match="outside"):
        FrameDataset(tmp_path, with_lidar=False, require=("latent_tokens",))


def test_teacher_labels_of_another_size_open_and_are_checked(tmp_path):
    from latentvla_ros.data.torch_datasets import FrameDataset

    write_log(tmp_path / "l1", n=20)
    log = DrivingLog(tmp_path / "l1")
    with pytest.raises(LogFormatError, match=r"\(20, 12, 16\)"):
        log.write_array("teacher_probs", np.full((20, 6, 32), 1 / 32, np.float32))
    record_label_sizes(tmp_path / "l1", teacher_labels_meta(ActionSpace(32, 6)))
    log = DrivingLog(tmp_path / "l1")
    log.write_array("teacher_probs", np.full((20, 6, 32), 1 / 32, np.float32))
    assert DrivingLog(tmp_path / "l1").teacher_probs.shape == (20, 6, 32)
    with pytest.raises(SizeMismatchError, match="action space"):
        FrameDataset(tmp_path, with_lidar=False, require=("teacher_probs",), action_space=ActionSpace(16, 12))
    ds = FrameDataset(tmp_path, with_lidar=False, require=("teacher_probs",), action_space=ActionSpace(32, 6))
    assert tuple(ds[0]["teacher_probs"].shape) == (6, 32)


def test_teacher_datasets_refuse_codes_of_another_codebook(tmp_path):
    from test_teacher import write_synthetic_log

    from latentvla_ros.training.teacher import build_datasets

    log = write_synthetic_log(tmp_path / "log0", frames=60)
    codes = np.load(log / "latent_ego_codes.npy")
    codes[5] = 20  # a 32-code LAM's code: used to be dropped silently as invalid
    np.save(log / "latent_ego_codes.npy", codes)
    cfg = TeacherConfig(preset="tiny", image_size=(56, 56), num_visual_context_tokens=4)
    with pytest.raises(SizeMismatchError, match="outside"):
        build_datasets([log], cfg, stride=3, val_fraction=0.2)
    (log / "meta.json").write_text(json.dumps(latent_codes_meta(32)))
    with pytest.raises(SizeMismatchError, match="the teacher config has 16 codes, the LAM that labelled .* has 32"):
        build_datasets([log], cfg, stride=3, val_fraction=0.2)


def test_planner_and_fallback_use_the_checkpoints_sampling():
    from test_models import make_frame

    from latentvla_ros.runtime.stages import BevFeatureExtractor, TrajectoryPlanner

    cfg = PlannerConfig.preset("edge", fusion="none", num_poses=6, pose_interval_s=0.25)
    traj = TrajectoryPlanner(cfg).plan(BevFeatureExtractor().extract(make_frame()), None)
    assert traj.poses.shape == (6, 3) and traj.interval_s == 0.25  # was the 0.5 s constant
    stop = comfortable_stop(10.0, num_poses=cfg.trajectory_sampling.num_poses, interval_s=cfg.trajectory_sampling.interval_s)
    assert stop.poses.shape == (6, 3) and stop.interval_s == 0.25
    assert stop.poses[0, 0] == pytest.approx(10.0 * 0.25 - 0.5 * 2.0 * 0.25**2)


def test_logs_record_their_trajectory_sampling(tmp_path):
    from latentvla_ros.data.log_format import LogWriter
    from latentvla_ros.data.torch_datasets import FrameDataset

    write_log(tmp_path / "default", n=60)
    assert DrivingLog(tmp_path / "default").trajectory_sampling == DEFAULT_TRAJECTORY_SAMPLING
    assert "trajectory_sampling" not in DrivingLog(tmp_path / "default").meta  # default logs: bytes as before
    coarse = TrajectorySampling(4, 1.0)
    src = DrivingLog(tmp_path / "default")
    writer = LogWriter(tmp_path / "coarse", {"source": "test"}, trajectory_sampling=coarse)
    for t in range(60):
        writer.append(camera=src.camera(t), lidar_points=src.lidar_points(t), ego_pose=src.ego_pose(t),
                      ego_status=src.ego_status_array[t], command=src.command(t))
    writer.close()
    log = DrivingLog(tmp_path / "coarse")
    assert log.trajectory_sampling == coarse and log.future_trajectory_array.shape == (60, 4, 3)
    assert log.meta["trajectory_sampling"] == {"num_poses": 4, "interval_s": 1.0}
    # pose k at (k + 1) s equals the default log's pose 2k + 1 at the same time
    np.testing.assert_allclose(log.future_trajectory(0), src.future_trajectory(0)[1::2], atol=1e-5)
    ds = FrameDataset(tmp_path / "coarse", with_lidar=False, trajectory_sampling=coarse)
    assert tuple(ds[0]["trajectory"].shape) == (4, 3)
    with pytest.raises(SizeMismatchError, match="trajectory sampling mismatch"):
        FrameDataset(tmp_path, with_lidar=False, trajectory_sampling=DEFAULT_TRAJECTORY_SAMPLING)


def test_label_sizes_are_written_only_when_not_the_default(tmp_path):
    write_log(tmp_path / "l1", n=20)
    meta_file = tmp_path / "l1" / "meta.json"
    before = meta_file.read_bytes()
    record_label_sizes(tmp_path / "l1", latent_codes_meta(16))  # the default: the file is not rewritten
    record_label_sizes(tmp_path / "l1", teacher_labels_meta(ActionSpace(16, 12)))
    assert meta_file.read_bytes() == before
    record_label_sizes(tmp_path / "l1", latent_codes_meta(32))
    assert json.loads(meta_file.read_text())["latent_codes"] == {"codebook_size": 32}
    record_label_sizes(tmp_path / "l1", latent_codes_meta(16))  # relabelled by a 16-code LAM: the record goes
    assert "latent_codes" not in json.loads(meta_file.read_text())
