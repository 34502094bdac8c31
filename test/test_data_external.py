"""NAVSIM/OpenScene (JSON export) and nuScenes readers on tiny synthetic fixtures."""
from __future__ import annotations

import json
import math
import pickle

import cv2
import numpy as np
import pytest

from latentvla_ros.core.types import DrivingCommand
from latentvla_ros.data import external
from latentvla_ros.data.log_format import DrivingLog, world_to_ego


def _quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _write_jpg(path, value: int, hw=(36, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*hw, 3), 0, np.uint8)
    img[..., 0] = value  # red channel carries the frame id (RGB)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])


# ----------------------------------------------------------------------------- NAVSIM


def _openscene_frames(root, n=12, speed=8.0, yaw=0.5):
    frames = []
    cloud = np.array([[8.0, 0.5, 1.0, 0.3, 1, 0], [8.0, -0.5, 1.2, 0.4, 2, 0], [3.0, 2.0, 0.0, 0.1, 0, 0]], np.float32)
    for k in range(n):
        x, y = 100 + speed * 0.5 * k * math.cos(yaw), 50 + speed * 0.5 * k * math.sin(yaw)
        cam_rel = f"log1/CAM_F0/{k:03d}.jpg"
        lidar_rel = f"log1/MergedPointCloud/{k:03d}.pcd"
        _write_jpg(root / cam_rel, 10 * k)
        external.write_pcd_binary(root / lidar_rel, cloud, ("x", "y", "z", "intensity", "ring", "lidar_info"))
        frames.append({
            "token": f"tok{k}", "timestamp": 1_600_000_000_000_000 + k * 500_000, "log_name": "log1",
            "scene_token": "scene1", "map_location": "us-nv-las-vegas-strip",
            "ego2global_translation": np.array([x, y, 0.0]), "ego2global_rotation": np.array(_quat(yaw)),
            "ego_dynamic_state": [speed, 0.0, 0.1, 0.0],
            "driving_command": np.array([1, 0, 0, 0]) if k >= 6 else np.array([0, 1, 0, 0]),
            "lidar_path": lidar_rel,
            "cams": {"CAM_F0": {"data_path": cam_rel, "cam_intrinsic": np.eye(3)}},
            "anns": {"gt_boxes": np.array([[10.0, 0.0, 0.8, 4.5, 2.0, 1.6, 0.0]]), "gt_names": ["vehicle"],
                     "gt_velocity_3d": np.array([[speed, 0.0, 0.0]]), "instance_tokens": ["i1"], "track_tokens": ["t1"]},
        })
    return frames, cloud


def test_openscene_export_to_log(tmp_path):
    blobs = tmp_path / "sensor_blobs"
    frames, cloud = _openscene_frames(blobs)
    pkl = tmp_path / "log1.pkl"
    pkl.write_bytes(pickle.dumps(frames))
    with pytest.raises(PermissionError):
        external.convert_openscene_pickle(pkl, tmp_path / "log1.json")
    assert not (tmp_path / "log1.json").exists()
    export = external.convert_openscene_pickle(pkl, tmp_path / "exports" / "log1.json", trusted=True)
    out = external.openscene_to_log(export, blobs, tmp_path / "logs" / "navsim_log1")
    log = DrivingLog(out)
    assert log.num_frames == 12 and log.dt_s == pytest.approx(0.5)
    assert log.meta["source"] == "navsim-openscene" and log.camera_names == ["cam_f0"]
    assert log.stamp_ns(1) - log.stamp_ns(0) == 500_000_000
    # 2 Hz: the 4 s future is the next 8 frames -> frames 0..3 valid; straight at 8 m/s along +x
    assert np.asarray(log.future_valid).tolist() == [True] * 4 + [False] * 8
    np.testing.assert_allclose(log.future_trajectory(0)[:, 0], 4.0 * np.arange(1, 9), atol=1e-4)
    np.testing.assert_allclose(log.future_trajectory(0)[:, 1:], 0.0, atol=1e-4)
    assert log.command(0) == DrivingCommand.STRAIGHT and log.command(7) == DrivingCommand.LEFT
    state = log.ego_state(2)
    np.testing.assert_allclose(state.velocity, [8.0, 0.0]) and np.testing.assert_allclose(state.acceleration, [0.1, 0.0])
    np.testing.assert_allclose(log.lidar_points(3), cloud[:, :4])
    # agent 10 m ahead in the ego frame, stored in world coordinates
    boxes = log.agents(5)
    assert len(boxes) == 1 and boxes[0].track_id == 0 and boxes[0].length == pytest.approx(4.5)
    np.testing.assert_allclose(world_to_ego(np.array([[boxes[0].x, boxes[0].y]]), log.ego_pose(5)), [[10.0, 0.0]], atol=1e-3)
    assert math.hypot(boxes[0].vx, boxes[0].vy) == pytest.approx(8.0, rel=1e-4)
    img = log.camera(4)[0]
    assert img.shape == (360, 640, 3) and abs(int(img[..., 0].mean()) - 40) <= 2  # resized to 640 wide
    # the same export without the pickle step (JSON written by hand)
    direct = tmp_path / "direct.json"
    direct.write_text(json.dumps({"format": external.OPENSCENE_EXPORT_FORMAT, "frames": external._to_jsonable(frames)}))
    out2 = external.openscene_to_log(direct, blobs, tmp_path / "logs" / "direct", image_width=None)
    np.testing.assert_array_equal(DrivingLog(out2).ego_pose_array, log.ego_pose_array)


def test_openscene_export_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": external.OPENSCENE_EXPORT_FORMAT, "frames": [{"token": "x"}]}))
    with pytest.raises(external.ExternalDataError, match="timestamp"):
        external.read_openscene_export(bad)
    bad.write_text(json.dumps({"format": "something-else", "frames": []}))
    with pytest.raises(external.ExternalDataError, match="format"):
        external.read_openscene_export(bad)
    with pytest.raises(external.ExternalDataError):
        external.read_openscene_export(tmp_path / "missing.json")


def test_read_pcd_ascii_and_binary(tmp_path):
    pts = np.array([[1.0, 2.0, 3.0, 0.5], [-1.0, 0.0, 0.25, 1.0]], np.float32)
    external.write_pcd_binary(tmp_path / "a.pcd", pts)
    np.testing.assert_array_equal(external.read_pcd(tmp_path / "a.pcd"), pts)
    ascii_pcd = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
                 "POINTS 2\nDATA ascii\n1 2 3\n4 5 6\n")
    (tmp_path / "b.pcd").write_text(ascii_pcd)
    np.testing.assert_array_equal(external.read_pcd(tmp_path / "b.pcd"), [[1, 2, 3, 0], [4, 5, 6, 0]])
    (tmp_path / "c.pcd").write_text(ascii_pcd.replace("DATA ascii", "DATA binary_compressed"))
    with pytest.raises(external.ExternalDataError, match="not supported"):
        external.read_pcd(tmp_path / "c.pcd")


# ----------------------------------------------------------------------------- nuScenes


def _nuscenes_fixture(root, seconds=5.0, speed=10.0, yaw=0.3, with_sensor_table=True):
    t0 = 1_531_000_000_000_000
    tables = {k: [] for k in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sample_annotation", "sensor")}
    lidar_rot, lidar_t = _quat(math.pi / 2), [0.9, 0.0, 1.8]
    tables["sensor"] = [{"token": "s_lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
                        {"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"}]
    tables["calibrated_sensor"] = [
        {"token": "cs_lidar", "sensor_token": "s_lidar", "translation": lidar_t, "rotation": lidar_rot, "camera_intrinsic": []},
        {"token": "cs_cam", "sensor_token": "s_cam", "translation": [1.7, 0, 1.5], "rotation": _quat(0.0),
         "camera_intrinsic": np.eye(3).tolist()},
    ]
    n_samples = int(seconds * 2) + 1

    def ego_at(t_us):
        d = speed * (t_us - t0) * 1e-6
        return [500 + d * math.cos(yaw), 200 + d * math.sin(yaw), 0.0]

    for k in range(n_samples):
        ts = t0 + k * 500_000
        tables["sample"].append({"token": f"smp{k}", "timestamp": ts, "scene_token": "scn",
                                 "prev": f"smp{k - 1}" if k else "", "next": f"smp{k + 1}" if k + 1 < n_samples else ""})
        ego = ego_at(ts)
        car = [ego[0] + 15 * math.cos(yaw), ego[1] + 15 * math.sin(yaw), 0.8]
        tables["sample_annotation"].append({"token": f"ann{k}", "sample_token": f"smp{k}", "instance_token": "inst_car",
                                            "translation": car, "size": [1.9, 4.6, 1.6], "rotation": _quat(yaw)})
    tables["scene"] = [{"token": "scn", "name": "scene-0001", "description": "test", "first_sample_token": "smp0",
                        "last_sample_token": f"smp{n_samples - 1}", "nbr_samples": n_samples}]
    # points on the car's rear face in the ego frame -> lidar frame (p_l = R^T (p_e - t))
    face = np.array([[15 - 2.3, y, z] for y in (-0.8, 0.0, 0.8) for z in (0.6, 1.2)], np.float64)
    r = external.quaternion_wxyz_to_matrix(lidar_rot)
    in_lidar = (face - lidar_t) @ r
    cloud = np.concatenate([in_lidar, np.full((len(face), 1), 0.5), np.zeros((len(face), 1))], axis=1).astype(np.float32)

    def add(channel, calib, t_us, key, idx, ext):
        folder = "samples" if key else "sweeps"
        fn = f"{folder}/{channel}/{channel}_{idx:04d}.{ext}"
        sample_k = min(int(round((t_us - t0) / 500_000)), n_samples - 1)
        tables["ego_pose"].append({"token": f"ep_{channel}_{idx}", "timestamp": t_us, "translation": ego_at(t_us),
                                   "rotation": _quat(yaw)})
        tables["sample_data"].append({"token": f"sd_{channel}_{idx}", "sample_token": f"smp{sample_k}",
                                      "ego_pose_token": f"ep_{channel}_{idx}", "calibrated_sensor_token": calib,
                                      "filename": fn, "timestamp": t_us, "is_key_frame": key, "prev": "", "next": ""})
        return root / fn

    for m in range(int(seconds * 20) + 1):
        t_us = t0 + m * 50_000
        path = add("LIDAR_TOP", "cs_lidar", t_us, m % 10 == 0, m, "pcd.bin")
        path.parent.mkdir(parents=True, exist_ok=True)
        cloud.tofile(path)
    cam_times = []
    for c in range(int(seconds * 12) + 1):
        t_us = t0 + 7_000 + int(c * 1e6 / 12)
        cam_times.append(t_us)
        _write_jpg(add("CAM_FRONT", "cs_cam", t_us, c % 6 == 0, c, "jpg"), (3 * c) % 250)
    if not with_sensor_table:
        del tables["sensor"]
    (root / "v1.0-mini").mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))
    return np.array(cam_times), t0


@pytest.mark.parametrize("with_sensor_table", [True, False])
def test_nuscenes_scene_to_log(tmp_path, with_sensor_table):
    cam_times, t0 = _nuscenes_fixture(tmp_path / "nus", with_sensor_table=with_sensor_table)
    logs = external.nuscenes_to_logs(tmp_path / "nus", tmp_path / "logs", image_width=None)
    assert [p.name for p in logs] == ["nuscenes_scene-0001"]
    log = DrivingLog(logs[0])
    assert log.num_frames == 51 and log.dt_s == pytest.approx(0.1)  # 20 Hz sweeps -> 10 Hz
    stamps = log.timestamps_ns
    assert stamps[0] == t0 * 1000 and np.all(np.diff(stamps) == 100_000_000)
    valid = np.asarray(log.future_valid)
    assert valid[:11].all() and not valid[11:].any()
    np.testing.assert_allclose(log.future_trajectory(0)[:, 0], 5.0 * np.arange(1, 9), atol=1e-3)
    np.testing.assert_allclose(log.future_trajectory(0)[:, 1:], 0.0, atol=1e-3)
    assert log.command(0) == DrivingCommand.STRAIGHT and log.command(40) == DrivingCommand.UNKNOWN
    np.testing.assert_allclose(np.asarray(log.ego_status_array)[:, 0], 10.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(log.ego_status_array)[:, 1:], 0.0, atol=1e-3)
    for t in (0, 17, 50):
        pts = log.lidar_points(t)
        np.testing.assert_allclose(pts[:, 0], 12.7, atol=1e-4)  # moved from the rotated LiDAR into the ego frame
        assert np.abs(pts[:, 1]).max() <= 0.8 + 1e-4 and pts[:, 2].min() > 0.5
        boxes = log.agents(t)
        assert len(boxes) == 1 and boxes[0].track_id == 0
        assert (boxes[0].length, boxes[0].width) == pytest.approx((4.6, 1.9))
        np.testing.assert_allclose(world_to_ego(np.array([[boxes[0].x, boxes[0].y]]), log.ego_pose(t)), [[15.0, 0.0]], atol=1e-3)
        assert math.hypot(boxes[0].vx, boxes[0].vy) == pytest.approx(10.0, abs=1e-3)
        # the nearest camera image was used
        nearest = int(np.argmin(np.abs(cam_times - stamps[t] // 1000)))
        assert abs(int(log.camera(t)[0][..., 0].mean()) - (3 * nearest) % 250) <= 2


def test_nuscenes_errors(tmp_path):
    _nuscenes_fixture(tmp_path / "nus", seconds=1.0)
    (tmp_path / "nus" / "v1.0-mini" / "ego_pose.json").unlink()
    with pytest.raises(external.ExternalDataError, match="ego_pose"):
        external.NuScenesTables(tmp_path / "nus")
    with pytest.raises(external.ExternalDataError):
        external.NuScenesTables(tmp_path / "nus", version="v1.0-trainval")
    _nuscenes_fixture(tmp_path / "nus2", seconds=1.0)
    tables = external.NuScenesTables(tmp_path / "nus2")
    with pytest.raises(external.ExternalDataError, match="no scene"):
        external.nuscenes_scene_to_log(tables, "scene-9999", tmp_path / "out")
