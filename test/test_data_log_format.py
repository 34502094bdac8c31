"""Driving-log format (writer/reader/validation) and the torch FrameDataset."""
from __future__ import annotations

import json

import numpy as np
import pytest

from latentvla_ros.core.features import lidar_bev_histogram
from latentvla_ros.core.types import AgentBox, DrivingCommand, MapGeometry
from latentvla_ros.data.log_format import (
    DrivingLog,
    LogFormatError,
    LogWriter,
    compute_future_trajectory,
    ego_to_world,
    list_logs,
    world_to_ego,
)

DT = 0.1


def _drive(n: int, speed: float = 10.0, yaw0: float = 0.5, yaw_rate: float = 0.0, start=(100.0, -20.0)) -> np.ndarray:
    """Poses of a constant-speed, constant-yaw-rate drive sampled at 10 Hz."""
    poses = np.zeros((n, 3))
    x, y, yaw = start[0], start[1], yaw0
    for t in range(n):
        poses[t] = (x, y, yaw)
        # exact integration of the unicycle over one step
        if abs(yaw_rate) < 1e-12:
            x += speed * DT * np.cos(yaw)
            y += speed * DT * np.sin(yaw)
        else:
            x += speed / yaw_rate * (np.sin(yaw + yaw_rate * DT) - np.sin(yaw))
            y -= speed / yaw_rate * (np.cos(yaw + yaw_rate * DT) - np.cos(yaw))
        yaw += yaw_rate * DT
    return poses


def write_log(path, n=60, speed=10.0, yaw_rate=0.0, num_cams=1, hw=(32, 48), with_agents=True, seed=0):
    rng = np.random.default_rng(seed)
    poses = _drive(n, speed, yaw_rate=yaw_rate)
    cams, clouds, agents = [], [], []
    writer = LogWriter(path, {"source": "test", "scenario": "unit"}, camera_names=[f"cam{i}" for i in range(num_cams)])
    for t in range(n):
        cam = rng.integers(0, 255, size=(num_cams, *hw, 3), dtype=np.uint8)
        pts = rng.normal(size=(int(rng.integers(0, 50)), 4)).astype(np.float32)
        boxes = ([AgentBox(x=float(t), y=2.0, heading=0.1, length=4.5, width=1.9, vx=1.0, vy=0.0, track_id=k) for k in range(t % 3)]
                 if with_agents else [])
        cams.append(cam)
        clouds.append(pts)
        agents.append(boxes)
        writer.append(camera=cam, lidar_points=pts, ego_pose=poses[t], ego_status=[speed, 0, 0, 0, yaw_rate],
                      command=DrivingCommand.LEFT if t % 2 else DrivingCommand.STRAIGHT, agents=boxes)
    writer.set_map(MapGeometry(lane_centerlines=[np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 1.0]])],
                               drivable_polygons=[np.array([[0.0, -2.0], [20.0, -2.0], [20.0, 2.0], [0.0, 2.0]])]))
    writer.close()
    return poses, cams, clouds, agents


def test_future_trajectory_straight_drive_is_along_plus_x(tmp_path):
    poses, *_ = write_log(tmp_path / "log", n=60, speed=10.0)
    log = DrivingLog(tmp_path / "log")
    traj = log.future_trajectory(0)
    np.testing.assert_allclose(traj[:, 0], 5.0 * np.arange(1, 9), atol=1e-4)  # 10 m/s * 0.5 s
    np.testing.assert_allclose(traj[:, 1:], 0.0, atol=1e-4)
    valid = np.asarray(log.future_valid)
    assert valid[: 60 - 40].all() and not valid[60 - 40:].any()
    assert np.all(log.future_trajectory(59) == 0)


def test_future_trajectory_left_turn_has_positive_y_and_heading(tmp_path):
    write_log(tmp_path / "log", n=50, speed=8.0, yaw_rate=0.2)
    log = DrivingLog(tmp_path / "log")
    traj = log.future_trajectory(3)
    times = 0.5 * np.arange(1, 9)
    np.testing.assert_allclose(traj[:, 2], 0.2 * times, atol=1e-5)
    radius = 8.0 / 0.2
    np.testing.assert_allclose(traj[:, 0], radius * np.sin(0.2 * times), atol=1e-3)
    np.testing.assert_allclose(traj[:, 1], radius * (1 - np.cos(0.2 * times)), atol=1e-3)


def test_compute_future_trajectory_interpolates_irregular_stamps():
    n = 30
    stamps = (np.arange(n) * 0.25e9).astype(np.int64)  # 4 Hz
    poses = np.stack([np.arange(n) * 2.5, np.zeros(n), np.zeros(n)], axis=1)  # 10 m/s along x
    traj, valid = compute_future_trajectory(poses, stamps)
    np.testing.assert_allclose(traj[0, :, 0], 5.0 * np.arange(1, 9), atol=1e-9)
    assert valid[: n - 16].all() and not valid[n - 15:].any()


def test_frame_transforms_round_trip():
    pose = (3.0, -4.0, 1.1)
    pts = np.array([[1.0, 2.0], [-5.0, 0.5]])
    np.testing.assert_allclose(world_to_ego(ego_to_world(pts, pose), pose), pts, atol=1e-12)
    # a point 1 m ahead of an ego facing +y is at world (x, y + 1)
    np.testing.assert_allclose(ego_to_world(np.array([[1.0, 0.0]]), (0.0, 0.0, np.pi / 2)), [[0.0, 1.0]], atol=1e-12)


def test_round_trip_preserves_frames(tmp_path):
    poses, cams, clouds, agents = write_log(tmp_path / "log", n=35, num_cams=2)
    log = DrivingLog(tmp_path / "log")
    assert log.num_frames == 35 and len(log) == 35
    assert log.meta["source"] == "test" and log.meta["camera_names"] == ["cam0", "cam1"]
    for t in (0, 7, 34):
        np.testing.assert_array_equal(log.camera(t), cams[t])
        np.testing.assert_array_equal(log.lidar_points(t), clouds[t])
        np.testing.assert_array_equal(log.ego_pose(t), poses[t])
        frame = log.sensor_frame(t)
        assert frame.stamp_ns == round(t * DT * 1e9)
        assert [c.name for c in frame.cameras] == ["cam0", "cam1"]
        np.testing.assert_array_equal(frame.cameras[1].image, cams[t][1])
        assert frame.ego.command == (DrivingCommand.LEFT if t % 2 else DrivingCommand.STRAIGHT)
        np.testing.assert_allclose(frame.ego.velocity, [10.0, 0.0])
        boxes = log.agents(t)
        assert [b.track_id for b in boxes] == [b.track_id for b in agents[t]]
        if boxes:
            assert boxes[0].length == pytest.approx(4.5) and boxes[0].x == pytest.approx(t)
    geometry = log.map
    assert len(geometry.lane_centerlines) == 1 and geometry.drivable_polygons[0].shape == (4, 2)
    assert np.asarray(log.lidar_offsets)[-1] == sum(len(c) for c in clouds)


def test_explicit_stamps_written_and_read(tmp_path):
    writer = LogWriter(tmp_path / "log", {"source": "test"})
    for t in range(5):
        writer.append(camera=np.zeros((4, 4, 3), np.uint8), lidar_points=np.zeros((0, 4)), ego_pose=(t, 0, 0),
                      ego_status=np.zeros(5), stamp_ns=1_000_000_000 + t * 100_000_000 + (t % 2) * 3_000_000)
    writer.close()
    log = DrivingLog(tmp_path / "log")
    assert log.stamp_ns(1) == 1_103_000_000 and log.meta["start_stamp_ns"] == 1_000_000_000


def test_writer_rejects_bad_input_and_existing_dir(tmp_path):
    write_log(tmp_path / "log", n=3)
    with pytest.raises(FileExistsError):
        LogWriter(tmp_path / "log")
    writer = LogWriter(tmp_path / "other")
    with pytest.raises(LogFormatError):
        writer.append(camera=np.zeros((4, 4), np.uint8), lidar_points=np.zeros((0, 4)), ego_pose=(0, 0, 0), ego_status=np.zeros(5))
    with pytest.raises(LogFormatError):
        writer.append(camera=np.zeros((4, 4, 3), np.uint8), lidar_points=np.zeros((3, 3)), ego_pose=(0, 0, 0), ego_status=np.zeros(5))
    with pytest.raises(LogFormatError):
        writer.close()  # empty
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: (p / "ego_pose.npy").unlink(), "missing ego_pose.npy"),
        (lambda p: (p / "map.json").unlink(), "missing map.json"),
        (lambda p: np.save(p / "ego_pose.npy", np.zeros((5, 3))), "ego_pose.npy has shape (5, 3)"),
        (lambda p: np.save(p / "ego_status.npy", np.zeros((12, 5), np.float64)), "ego_status.npy has dtype float64"),
        (lambda p: np.save(p / "lidar_offsets.npy", np.zeros(13, np.int64)), "lidar_offsets.npy must start at 0 and end"),
        (lambda p: np.save(p / "camera.npy", np.zeros((12, 2, 4, 4, 3), np.uint8)), "camera.npy has shape"),
        (lambda p: (p / "meta.json").write_text("{"), "not valid JSON"),
        (lambda p: (p / "meta.json").write_text(json.dumps({"source": "x"})), "lacks keys"),
        (lambda p: np.save(p / "latent_ego_codes.npy", np.zeros(12, np.int64)), "latent_ego_codes.npy must be int16"),
    ],
)
def test_open_validates(tmp_path, mutate, message):
    write_log(tmp_path / "log", n=12)
    mutate(tmp_path / "log")
    with pytest.raises(LogFormatError, match=__import__("re").escape(message)):
        DrivingLog(tmp_path / "log")


def test_write_array_labels(tmp_path):
    write_log(tmp_path / "log", n=20)
    log = DrivingLog(tmp_path / "log")
    assert log.latent_ego_codes is None and log.teacher_probs is None and log.teacher_context is None
    log.write_array("latent_ego_codes", np.arange(20, dtype=np.int16) % 16)
    log.write_array("teacher_probs", np.full((20, 12, 16), 1 / 16, np.float32))
    log.write_array("teacher_context", np.zeros((20, 5, 8), np.float16))
    assert log.latent_ego_codes[3] == 3
    reopened = DrivingLog(tmp_path / "log")
    assert reopened.teacher_probs.shape == (20, 12, 16) and reopened.teacher_context.dtype == np.float16
    with pytest.raises(LogFormatError):
        log.write_array("latent_ego_codes", np.zeros(19, np.int16))
    with pytest.raises(LogFormatError):
        log.write_array("teacher_probs", np.zeros((20, 12, 15), np.float32))
    with pytest.raises(ValueError):
        log.write_array("ego_pose", np.zeros((20, 3)))
    with pytest.raises(ValueError):
        log.write_array("../evil", np.zeros(20))
    assert not list((tmp_path / "log").glob(".*tmp"))


def test_list_logs_finds_nested_and_skips_partial(tmp_path):
    write_log(tmp_path / "a" / "log1", n=3)
    write_log(tmp_path / "b" / "c" / "log2", n=3)
    (tmp_path / ".log3.partial").mkdir()
    (tmp_path / "empty").mkdir()
    assert list_logs(tmp_path) == [tmp_path / "a" / "log1", tmp_path / "b" / "c" / "log2"]
    assert list_logs(tmp_path / "a" / "log1") == [tmp_path / "a" / "log1"]
    assert list_logs(tmp_path / "missing") == []


# ----------------------------------------------------------------------------- torch dataset


def test_frame_dataset_shapes_and_index(tmp_path):
    import torch

    from latentvla_ros.data.torch_datasets import FrameDataset, measure_loading

    write_log(tmp_path / "l1", n=50, num_cams=2)
    write_log(tmp_path / "l2", n=45, seed=1, num_cams=2)
    ds = FrameDataset(tmp_path, image_size=(32, 64), lidar_grid=64, frame_stride=3)
    assert len(ds) == (50 - 40) + (45 - 40)  # only frames with a full 4 s future
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 64) and sample["image"].dtype == torch.float32
    assert sample["lidar_bev"].shape == (1, 64, 64)
    assert sample["ego_status"].shape == (8,) and sample["ego_status"][int(DrivingCommand.STRAIGHT)] == 1
    assert sample["trajectory"].shape == (8, 3) and bool(sample["trajectory_valid"])
    assert "latent_tokens" not in sample and "next_image" not in sample
    # cached BEV equals the direct histogram
    log = ds.logs[0]
    t = int(sample["frame_index"])
    np.testing.assert_array_equal(sample["lidar_bev"].numpy(), lidar_bev_histogram(log.lidar_points(t), 64, 32.0))
    assert (tmp_path / "l1" / "lidar_bev_64.npy").is_file()
    assert measure_loading(ds, n=10) > 0
    no_req = FrameDataset(tmp_path, image_size=(32, 64), with_lidar=False, require=())
    assert len(no_req) == 95 and "lidar_bev" not in no_req[0]


def test_frame_dataset_latent_tokens_and_teacher(tmp_path):
    from latentvla_ros.data.torch_datasets import FrameDataset

    write_log(tmp_path / "l1", n=60)
    write_log(tmp_path / "l2", n=60, seed=2)  # no labels: skipped when labels are required
    log = DrivingLog(tmp_path / "l1")
    codes = (np.arange(60) % 16).astype(np.int16)
    codes[50] = -1
    log.write_array("latent_ego_codes", codes)
    probs = np.zeros((60, 12, 16), np.float32)
    probs[:, :, 1] = 1.0
    probs[10] = 0.0  # frame 10 has no teacher label
    log.write_array("teacher_probs", probs)
    ds = FrameDataset(tmp_path, with_lidar=False, frame_stride=3, require=("latent_tokens", "teacher_probs"), with_next_image=True)
    frames = {int(ds[i]["frame_index"]) for i in range(len(ds))}
    # tokens need t + 3 * 11 < 60 and code 50 unused: t <= 26 and 50 not in {t + 3k}; frame 10 has no teacher label
    expected = {t for t in range(60) if t + 33 < 60 and 50 not in range(t, t + 34, 3) and t != 10}
    assert frames == expected
    sample = ds[0]
    np.testing.assert_array_equal(sample["latent_tokens"].numpy(), (int(sample["frame_index"]) + 3 * np.arange(12)) % 16)
    assert sample["teacher_probs"].shape == (12, 16) and sample["next_image"].shape == (3, 128, 128)
    with pytest.raises(ValueError):
        FrameDataset(tmp_path, require=("bogus",))


def test_data_modules_do_not_import_rclpy():
    import subprocess
    import sys

    code = ("import sys, latentvla_ros.data.log_format, latentvla_ros.data.torch_datasets, latentvla_ros.data.highway, "
            "latentvla_ros.data.external, latentvla_ros.data.bag_io; assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_frame_dataset_pickles_without_copying_arrays(tmp_path):
    import pickle

    from latentvla_ros.data.torch_datasets import FrameDataset

    write_log(tmp_path / "l1", n=45)
    ds = FrameDataset(tmp_path, lidar_grid=32)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # paths and the index, not the arrays
    clone = pickle.loads(blob)
    a, b = ds[3], clone[3]
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_only_tracks_that_never_move_are_static(tmp_path):
    from latentvla_ros.data.log_format import DrivingLog, LogWriter

    with LogWriter(tmp_path / "log") as w:
        for t in range(5):
            moving_later = 0.0 if t < 3 else 2.0  # stopped in a queue, then drives off
            agents = np.array([[10.0 + 0.2 * moving_later * t, 0, 0, 5, 2, moving_later, 0, 1],
                               [30.0, 3.5, 0, 1, 1, 0, 0, 2]], np.float32)  # a road object
            w.append(camera=np.zeros((1, 8, 8, 3), np.uint8), lidar_points=np.zeros((1, 4), np.float32),
                     ego_pose=np.array([0.5 * t, 0, 0]), ego_status=np.zeros(5, np.float32), agents=agents)
    log = DrivingLog(tmp_path / "log")
    assert log.static_track_ids == frozenset({2})
    by_id = {a.track_id: a for a in log.agents(0)}
    assert not by_id[1].is_static and by_id[2].is_static
