"""highway-env log generation: determinism, shapes and frame conventions."""
from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

import highway_env  # noqa: F401  (a requirement: a missing install fails, not skips)
import numpy as np
import pytest

from latentvla_ros.core.features import lidar_bev_histogram
from latentvla_ros.core.types import DrivingCommand
from latentvla_ros.data import highway
from latentvla_ros.data.log_format import DrivingLog, list_logs, world_to_ego

FRAMES = 30


@pytest.fixture(scope="module")
def highway_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("hw") / "highway"
    stats = highway.generate_log(path, "highway", seed=7, density=2.0, num_frames=FRAMES)
    return path, stats


def _arrays(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.suffix in (".npy", ".json")}


def test_log_shapes_and_meta(highway_log):
    path, stats = highway_log
    log = DrivingLog(path)
    assert stats.frames == log.num_frames == FRAMES and stats.steps_per_s > 0
    assert log.camera_array.shape == (FRAMES, 1, 128, 128, 3)
    meta = log.meta
    assert meta["source"] == "highway-env" and meta["scenario"] == "highway" and meta["dt_s"] == pytest.approx(0.1)
    assert meta["camera_meters_per_pixel"] == 0.5 and meta["camera_ego_pixel_xy"] == [63.5, 96.0]
    assert meta["terminated_reason"] in ("max_frames", "crashed", "off_road")
    assert len(log.map.lane_centerlines) >= 3 and len(log.map.drivable_polygons) >= 3
    assert set(np.unique(log.command_array)) <= {int(DrivingCommand.STRAIGHT)}
    for t in range(FRAMES):
        pts = log.lidar_points(t)
        assert pts.dtype == np.float32 and pts.shape[1] == 4 and np.isfinite(pts).all()


def test_same_seed_gives_identical_arrays(tmp_path, highway_log):
    path, _ = highway_log
    # an intersection first: IntersectionEnv mutates IDMVehicle class attributes process-wide
    highway.generate_log(tmp_path / "inter", "intersection", seed=1, num_frames=5)
    again = tmp_path / "again"
    highway.generate_log(again, "highway", seed=7, density=2.0, num_frames=FRAMES)
    a, b = _arrays(path), _arrays(again)
    assert a.keys() == b.keys()
    for name in a:
        if name != "meta.json":
            assert a[name] == b[name], name
    other = tmp_path / "other"
    highway.generate_log(other, "highway", seed=8, density=2.0, num_frames=FRAMES)
    assert _arrays(other)["ego_pose.npy"] != a["ego_pose.npy"]


def test_ego_status_matches_motion(highway_log):
    log = DrivingLog(highway_log[0])
    pose = np.asarray(log.ego_pose_array)
    speed = np.hypot(*np.diff(pose[:, :2], axis=0).T) / 0.1
    status = np.asarray(log.ego_status_array)
    np.testing.assert_allclose(np.hypot(status[1:, 0], status[1:, 1]), speed, atol=0.5)
    assert (status[:, 0] > 5.0).all()  # driving forwards in the ego frame
    # the ego moves forward in its own frame (future poses at positive x)
    fut = world_to_ego(pose[5::5, :2], pose[0])
    assert (np.diff(np.r_[0.0, fut[:, 0]]) > 0).all() and (np.abs(fut[:, 1]) < 4.5).all()
    assert not np.asarray(log.future_valid).any()  # 30 frames < 4 s horizon


def _camera_pixel(log, xy_ego):
    c0, r0 = log.meta["camera_ego_pixel_xy"]
    mpp = log.meta["camera_meters_per_pixel"]
    return c0 - xy_ego[1] / mpp, r0 - xy_ego[0] / mpp


def test_camera_and_lidar_frame_conventions(highway_log):
    log = DrivingLog(highway_log[0])
    c0, r0 = log.meta["camera_ego_pixel_xy"]
    checked_ahead = 0
    for t in range(0, FRAMES, 3):
        img = log.camera(t)[0].astype(int)
        # the ego (green) is drawn at the ego pixel
        g = img[int(r0), int(round(c0))]
        assert g[1] > g[0] + 60 and g[1] > g[2] + 60, g
        pose = log.ego_pose(t)
        agents = log.agents_array(t)
        if not len(agents):
            continue
        rel = world_to_ego(agents[:, :2], pose)
        bev = lidar_bev_histogram(log.lidar_points(t), 256, 32.0)[0]
        for (x, y), row in zip(rel, agents):
            col, r = _camera_pixel(log, (x, y))
            if not (4 <= col < 124 and 4 <= r < 124):
                continue
            pix = img[int(round(r)), int(round(col))]
            assert pix[2] > pix[0] + 60, (t, x, y, pix)  # other vehicles are drawn blue
            if x > 3.0 and abs(y) < 2.0:
                checked_ahead += 1
                assert r < r0  # ahead of the ego -> above the ego pixel
                # lidar hits on the agent's rear face at positive x (unless a nearer agent
                # in the same corridor hides it)
                pts = log.lidar_points(t)
                near = pts[(np.hypot(pts[:, 0] - x, pts[:, 1] - y) < 3.5) & (pts[:, 2] > 0.25)]
                hidden = bool(np.any((rel[:, 0] > 0.0) & (rel[:, 0] < x - 1.0) & (np.abs(rel[:, 1] - y) < 1.0)))
                if x < 40 and not hidden:
                    assert len(near) > 0 and (near[:, 0] > 0).all()
                    assert near[:, 2].min() > 0.2 and near[:, 2].max() < 1.6
        assert bev.max() <= 1.0
    assert checked_ahead > 0, "no agent ahead of the ego in this log: pick another seed"


def test_ray_box_and_synthetic_lidar_conventions():
    # a box 10 m ahead: ray at azimuth 0 hits its rear face at 10 - 2.25 m
    d = highway.ray_box_distances(np.array([0.0, np.pi / 2, np.pi]), np.array([[10.0, 0.0, 0.3, 4.5, 2.0]]))
    assert np.isinf(d[1]) and np.isinf(d[2])
    assert 7.0 < d[0] < 8.0
    # world: ego at (5, 5) heading 60 deg, an agent 12 m straight ahead of it
    yaw = np.deg2rad(60)
    ego = np.array([5.0, 5.0, yaw])
    agent = np.array([[5 + 12 * np.cos(yaw), 5 + 12 * np.sin(yaw), yaw, 5.0, 2.0, 0, 0, 1]], dtype=np.float32)
    cfg = highway.LidarConfig(ground_ranges_m=())
    pts = highway.synthesize_lidar(ego, agent, None, cfg, np.random.default_rng(0))
    assert len(pts) > 0
    assert (pts[:, 0] > 9.0).all() and (pts[:, 0] < 10.2).all() and (np.abs(pts[:, 1]) < 1.2).all()
    assert pts[:, 2].min() > 0.2 and pts[:, 2].max() < 1.6
    bev = lidar_bev_histogram(pts, 64, 32.0)[0]
    rows, cols = np.nonzero(bev)
    assert (rows < 32).all()  # ahead -> upper half, like the camera


def test_ground_points_only_on_drivable_area():
    road = np.array([[-100.0, -4.0], [100.0, -4.0], [100.0, 4.0], [-100.0, 4.0]])
    raster = highway.DrivableRaster([road], 0.25)
    assert raster.contains(np.array([[0.0, 0.0], [50.0, 3.5], [0.0, 6.0], [300.0, 0.0]])).tolist() == [True, True, False, False]
    pts = highway.synthesize_lidar(np.array([0.0, 0.0, 0.0]), np.zeros((0, 8), np.float32), raster,
                                   highway.LidarConfig(), np.random.default_rng(0))
    assert len(pts) > 0 and (np.abs(pts[:, 2]) < 0.15).all() and (np.abs(pts[:, 1]) < 4.2).all()
    assert lidar_bev_histogram(pts).max() == 0.0  # ground is filtered out of the BEV


def test_generate_dataset_resumes(tmp_path, capsys):
    stats = highway.generate_dataset(tmp_path, ["merge"], seeds=[0, 1], densities=[1.0], frames_per_log=8, workers=1)
    assert [s.frames for s in stats] == [8, 8]
    assert [p.name for p in list_logs(tmp_path)] == ["merge_d1_s00000", "merge_d1_s00001"]
    again = highway.generate_dataset(tmp_path, ["merge"], seeds=[0, 1], frames_per_log=8, workers=1)
    assert again == []
    assert "frames/s" in capsys.readouterr().out
    with pytest.raises(ValueError):
        highway.generate_dataset(tmp_path, ["nope"], seeds=[0])


@pytest.mark.parametrize("scenario", ["merge", "roundabout", "intersection"])
def test_scenario_logs_are_consistent_on_a_few_frames(tmp_path, scenario):
    """Fast coverage of each non-highway scenario (the slow test below runs 60 frames)."""
    from latentvla_ros.evaluation.geometry import points_in_union

    stats = highway.generate_log(tmp_path / scenario, scenario, seed=2, num_frames=12)
    log = DrivingLog(tmp_path / scenario)
    assert log.meta["scenario"] == scenario and log.num_frames == stats.frames == 12
    poses, status = np.asarray(log.ego_pose_array), np.asarray(log.ego_status_array)
    assert np.isfinite(poses).all() and np.isfinite(status).all()
    # the logged poses move by the logged speed: |pose step| / dt within 15% of the speed
    step = np.hypot(*np.diff(poses[:, :2], axis=0).T) / log.dt_s
    speed = np.hypot(status[1:, 0], status[1:, 1])
    assert (speed > 1.0).all()
    np.testing.assert_allclose(step, speed, rtol=0.15)
    # the map is in the same frame: the ego stays on the drivable area, near a lane
    road = log.map
    assert road.lane_centerlines and road.drivable_polygons
    polys = [np.asarray(p, float).reshape(-1, 2) for p in road.drivable_polygons]
    assert points_in_union(poses[:, :2], polys).all()
    assert set(np.unique(log.command_array).tolist()) <= {int(c) for c in DrivingCommand}
    frame = log.sensor_frame(5)
    assert frame.cameras[0].image.shape == tuple(log.meta["camera_shape_hw"]) + (3,)
    assert len(frame.lidar_points) > 0 and np.isfinite(frame.lidar_points).all()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["merge", "roundabout", "intersection"])
def test_scenarios_produce_valid_logs(tmp_path, scenario):
    stats = highway.generate_log(tmp_path / scenario, scenario, seed=2, num_frames=60)
    log = DrivingLog(tmp_path / scenario)
    assert log.num_frames == stats.frames > 10
    assert np.isfinite(np.asarray(log.ego_status_array)).all()
    yaw = np.unwrap(np.asarray(log.ego_pose_array)[:, 2])
    commands = set(np.unique(log.command_array).tolist())
    assert commands <= {int(c) for c in DrivingCommand}
    if abs(yaw[-1] - yaw[0]) > 1.2:  # the route turned: a turn command was given before
        assert commands & {int(DrivingCommand.LEFT), int(DrivingCommand.RIGHT)}
