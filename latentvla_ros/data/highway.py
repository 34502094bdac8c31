"""Driving logs from highway-env (synthetic expert data in the driving-log format).

The ego is driven by an expert built on highway-env's own models: IDM (speed) +
MOBIL (lane changes) + the lane-following steering controller, plus a small
crossing-conflict rule for intersections and roundabouts (yield to a vehicle that
reaches a point of our route first, unless we can no longer stop comfortably).
Regulation of ``RegulatedRoad`` does not act on it. Other vehicles are highway-env's
IDM vehicles. No action is ever passed to ``env.step`` (we step ``road`` ourselves at
``sim_hz``), so the merge/roundabout ``_rewards`` that fail on array actions are never
called; the subclasses below override them anyway.

Frames (policy/log rate 10 Hz):

- camera: highway-env's top-down render, rotated ego-up (ego heading = image up),
  ``meters_per_pixel`` fixed, the ego at pixel ``camera_ego_pixel_xy`` (lower part of the
  image so more road ahead is visible); both stored in ``meta.json``.
- LiDAR: synthesized in the ego frame: ``num_azimuths`` 2-D rays cast against the
  other vehicles' boxes (one point per height in ``vehicle_heights``, 0.3..1.5 m) and
  ground rings (z ~ 0) where the ray reaches the drivable area unoccluded, with
  small range/height noise from a per-log seeded generator.
- ego status: vx, vy, ax, ay (ego frame) and yaw rate from finite differences of the
  simulated state at the simulation rate.
- command: from the ego route (LEFT/RIGHT when the route heading turns by more than
  ``TURN_THRESHOLD_RAD`` within ``COMMAND_LOOKAHEAD_M``), STRAIGHT otherwise.
- agents: every other vehicle and road object (world frame), stable track ids.
- map: lane centerlines and per-lane drivable polygons, cropped to the region the ego visits.

World frame: highway-env draws y downwards, so its (x, y, heading) is a mirrored
frame; we store x, -y, -heading, which makes the world right-handed (x right, y up on
the map, headings CCW) and keeps highway-env's right-hand traffic.

Run ``python -m latentvla_ros.data.highway --help`` for a command line.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.types import MapGeometry
from latentvla_ros.data.highway_expert import (  # noqa: F401 - the expert's public names, also from here
    COMMAND_LOOKAHEAD_M,
    TURN_THRESHOLD_RAD,
    _expert_class,
    _path_samples,
    ego_color_mixin,
    route_command,
)
from latentvla_ros.data.highway_fast import accelerate_road
from latentvla_ros.data.highway_sensors import DrivableRaster, LidarConfig, ray_box_distances, synthesize_lidar  # noqa: F401
from latentvla_ros.data.log_format import LogWriter, is_log_dir, wrap_angle
from latentvla_ros.data.perturbation import PerturbationConfig, burst_schedule, schedule_rng
from latentvla_ros.data.scenarios import EXPERT_CRUISE_MPS, EXPERT_CRUISE_SPREAD, POLICY_HZ, SCENARIOS, log_name

# IDMVehicle class attributes that IntersectionEnv mutates process-wide; restored
# before and after every log so logs do not depend on what ran before in the process.
_IDM_CLASS_DEFAULTS = {"DISTANCE_WANTED": 10.0, "COMFORT_ACC_MAX": 3.0, "COMFORT_ACC_MIN": -5.0}


@dataclass
class CameraConfig:
    """Ego-up top-down camera."""

    height: int = 128
    width: int = 128
    meters_per_pixel: float = 0.5
    ego_row_fraction: float = 0.75  # ego row / height: 0.75 -> 3x more road ahead than behind
    background_rgb: tuple[int, int, int] = (100, 100, 100)  # highway-env's grass/background grey

    @property
    def ego_pixel_xy(self) -> tuple[float, float]:
        """Continuous pixel coordinates (col, row) of the ego reference point."""
        return ((self.width - 1) / 2.0, float(round(self.height * self.ego_row_fraction)))


@dataclass
class GenerationStats:
    path: str
    scenario: str
    seed: int
    density: float
    frames: int
    terminated_reason: str
    wall_s: float
    steps_per_s: float
    render_s: float
    lidar_s: float
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- highway-env setup


def _prepare_sdl() -> None:
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver == "dummy":
        warnings.warn("SDL_VIDEODRIVER=dummy renders black frames; using offscreen", stacklevel=3)
    if driver in ("", "dummy"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")  # keep SIGINT/SIGTERM working in generator processes


def _reset_idm_class() -> None:
    from highway_env.vehicle.behavior import IDMVehicle

    for key, value in _IDM_CLASS_DEFAULTS.items():
        setattr(IDMVehicle, key, value)


_CLASSES: dict[str, Any] = {}


def _env_classes() -> dict[str, Any]:
    """Scenario -> env class (built lazily so importing this module stays light)."""
    if _CLASSES:
        return _CLASSES
    _prepare_sdl()
    from highway_env.envs.highway_env import HighwayEnvFast
    from highway_env.envs.intersection_env import IntersectionEnv
    from highway_env.envs.merge_env import MergeGenericEnv
    from highway_env.envs.roundabout_env import RoundaboutGenericEnv

    class LogMergeEnv(MergeGenericEnv):
        """Merge whose rewards accept any action (array actions break the parent)."""

        def _rewards(self, action: Any) -> dict[str, float]:
            return {"collision_reward": float(self.vehicle.crashed), "on_road_reward": float(self.vehicle.on_road)}

        def _reward(self, action: Any) -> float:
            return 0.0

    class LogRoundaboutEnv(RoundaboutGenericEnv):
        """Roundabout whose rewards accept any action."""

        def _rewards(self, action: Any) -> dict[str, float]:
            return {"collision_reward": float(self.vehicle.crashed), "on_road_reward": float(self.vehicle.on_road)}

        def _reward(self, action: Any) -> float:
            return 0.0

    _CLASSES.update(highway=HighwayEnvFast, merge=LogMergeEnv, roundabout=LogRoundaboutEnv, intersection=IntersectionEnv)
    return _CLASSES


def _scenario_config(scenario: str, density: float, num_frames: int, render_px: int, scaling: float, sim_hz: int,
                     initial_lane: int | None = None) -> dict:
    base = {
        "simulation_frequency": sim_hz,
        "policy_frequency": POLICY_HZ,
        "screen_width": render_px,
        "screen_height": render_px,
        "scaling": scaling,
        "centering_position": [0.5, 0.5],
        "offscreen_rendering": True,
        "show_trajectories": False,
        "duration": 10_000,
        # highway-env >= 1.12: IDM also sees leaders on the next/previous lane segment
        # (without it followers rear-end vehicles waiting just past a segment boundary)
        "neighbour_vehicles_connected_lanes": True,
    }
    if scenario == "highway":
        base.update(vehicles_count=max(1, round(20 * density)), vehicles_density=max(density, 0.1))
        if initial_lane is not None:  # the ego's starting lane (lane changes both ways in a preset)
            base["initial_lane_id"] = int(initial_lane)
    elif scenario == "merge":
        # long enough road after the merge for the whole log at up to 32 m/s
        after = max(150.0, 32.0 * num_frames / POLICY_HZ + 60.0)
        base.update(vehicles_count=max(1, round(6 * density)), after_merge_length=after)
    elif scenario == "roundabout":
        base.update(vehicles_count=max(1, round(8 * density)))
    elif scenario == "intersection":
        base.update(
            initial_vehicle_count=max(2, round(10 * density)),
            spawn_probability=float(min(1.0, 0.6 * density)),
            destination=None,
        )
    else:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    return base


# ----------------------------------------------------------------------------- geometry


def _flip_pose(x: float, y: float, heading: float) -> tuple[float, float, float]:
    """highway-env (y down) -> our right-handed world frame."""
    return float(x), float(-y), float(wrap_angle(-heading))


def _object_row(obj, track_id: int) -> tuple:
    x, y, h = _flip_pose(obj.position[0], obj.position[1], getattr(obj, "heading", 0.0))
    vel = np.asarray(getattr(obj, "velocity", (0.0, 0.0)), dtype=np.float64)
    if not getattr(obj, "speed", 0.0):
        vel = np.zeros(2)
    return (x, y, h, float(obj.LENGTH), float(obj.WIDTH), float(vel[0]), float(-vel[1]), float(track_id))


def extract_map(road, bbox: tuple[float, float, float, float] | None = None, straight_step_m: float = 5.0,
                curved_step_m: float = 1.0, shoulder_m: float = 0.5) -> MapGeometry:
    """Lane centerlines + one drivable polygon per lane (run), in our world frame.

    ``bbox`` = (xmin, ymin, xmax, ymax) in our frame crops long lanes to that region.
    Each lane's drivable polygon is widened by ``shoulder_m`` on both sides: highway-env's
    lanes end exactly at the marking, where real roads have a shoulder, and without it
    the expert's corners graze the edge on curves (DAC = 0 for the logged expert).
    """
    from highway_env.road.lane import SineLane, StraightLane

    centerlines: list[np.ndarray] = []
    polygons: list[np.ndarray] = []
    for _from, tos in road.network.graph.items():
        for _to, lanes in tos.items():
            for lane in lanes:
                length = float(lane.length)
                straight = isinstance(lane, StraightLane) and not isinstance(lane, SineLane)
                step = straight_step_m if straight else curved_step_m
                n = max(2, int(math.ceil(length / step)) + 1)
                s = np.linspace(0.0, length, n)
                center = np.array([lane.position(si, 0.0) for si in s])
                center[:, 1] *= -1.0
                keep = np.ones(n, dtype=bool)
                if bbox is not None:
                    keep = (center[:, 0] >= bbox[0]) & (center[:, 0] <= bbox[2]) & (center[:, 1] >= bbox[1]) & (center[:, 1] <= bbox[3])
                    # keep one sample either side so cropped runs reach the box edge
                    keep = keep | np.r_[keep[1:], False] | np.r_[False, keep[:-1]]
                idx = np.flatnonzero(keep)
                if idx.size < 2:
                    continue
                runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
                for run in runs:
                    if run.size < 2:
                        continue
                    centerlines.append(center[run])
                    s_run = s[run].copy()
                    s_run[0] -= 0.5  # small overlap between consecutive lanes
                    s_run[-1] += 0.5
                    half = np.array([lane.width_at(si) / 2.0 + shoulder_m for si in s_run])
                    left = np.array([lane.position(si, hw) for si, hw in zip(s_run, half)])
                    right = np.array([lane.position(si, -hw) for si, hw in zip(s_run, half)])
                    poly = np.concatenate([left, right[::-1]])
                    poly[:, 1] *= -1.0
                    polygons.append(poly)
    return MapGeometry(lane_centerlines=centerlines, drivable_polygons=polygons)


def _camera_affine(ego_xy: np.ndarray, yaw: float, origin_hw: np.ndarray, scaling: float, cam: CameraConfig) -> np.ndarray:
    """2x3 map from output pixel (col, row) to render pixel (u, v) (for WARP_INVERSE_MAP)."""
    c0, r0 = cam.ego_pixel_xy
    mpp = cam.meters_per_pixel
    cy, sy = math.cos(yaw), math.sin(yaw)

    def src(col: float, row: float) -> np.ndarray:
        ex, ey = (r0 - row) * mpp, (c0 - col) * mpp
        px, py = ego_xy[0] + cy * ex - sy * ey, ego_xy[1] + sy * ex + cy * ey
        return np.array([(px - origin_hw[0]) * scaling - 0.5, (-py - origin_hw[1]) * scaling - 0.5])

    o = src(0.0, 0.0)
    return np.stack([src(1.0, 0.0) - o, src(0.0, 1.0) - o, o], axis=1)


def render_ego_camera(env, ego_pose: np.ndarray, cam: CameraConfig) -> np.ndarray:
    """Render highway-env top-down and warp it into the ego-up camera (H, W, 3) uint8."""
    import cv2

    frame = env.render()
    env.enable_auto_render = False
    surface = env.viewer.sim_surface
    m = _camera_affine(ego_pose[:2], float(ego_pose[2]), np.asarray(surface.origin, dtype=np.float64), float(surface.scaling), cam)
    return cv2.warpAffine(
        frame, m, (cam.width, cam.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=cam.background_rgb,
    )


# ----------------------------------------------------------------------------- generation


def _rng_for(seed: int, scenario: str, density: float) -> np.random.Generator:
    return np.random.default_rng([int(seed), SCENARIOS.index(scenario), int(round(density * 1000))])


def generate_log(
    out_dir: str | Path,
    scenario: str = "highway",
    seed: int = 0,
    density: float = 1.0,
    num_frames: int = 200,
    *,
    camera: CameraConfig | None = None,
    lidar: LidarConfig | None = None,
    sim_hz: int = 20,
    stop_on_crash: bool = True,
    stop_off_road: bool = True,
    overwrite: bool = False,
    verbose: bool = False,
    destination: str | None = None,
    initial_lane: int | None = None,
    perturb: PerturbationConfig | None = None,
) -> GenerationStats:
    """Roll out one expert episode and write it as a driving log at ``out_dir``.

    ``density`` scales the scenario's default traffic. The log has ``num_frames`` frames
    unless the ego crashes or leaves the mapped road first (recorded as
    ``meta["terminated_reason"]``; the crash frame itself is not logged). The same
    arguments give byte-identical arrays. ``destination``: the roundabout exit / intersection
    exit to take (``data/missions.py``; None: drawn from the seed as before);
    ``initial_lane``: the highway lane the ego starts in (None: highway-env's choice).
    ``perturb``: DART recovery data (``data/perturbation.py``): bursts of noise on the expert's
    executed controls, seeded by the log's key; training seeds only; stored as
    ``perturbation.npy``, and frames whose 4 s future a burst touches get ``future_valid = False``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    if sim_hz % POLICY_HZ:
        raise ValueError(f"sim_hz must be a multiple of {POLICY_HZ}")
    if perturb is not None:
        from latentvla_ros.data.splits import check_training_seeds

        check_training_seeds([seed])  # perturbed logs are training data: never in the evaluation range
    cam = camera or CameraConfig()
    lid = lidar or LidarConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (pass overwrite=True)")
    classes = _env_classes()
    expert_cls = _expert_class()
    import highway_env

    c0, r0 = cam.ego_pixel_xy
    reach = math.hypot(max(r0, cam.height - r0), max(c0, cam.width - c0)) * cam.meters_per_pixel
    scaling = 1.0 / cam.meters_per_pixel
    render_px = int(math.ceil(2.0 * reach * scaling)) + 4
    rng = _rng_for(seed, scenario, density)
    t_start = time.perf_counter()
    _reset_idm_class()
    config = _scenario_config(scenario, density, num_frames, render_px, scaling, sim_hz, initial_lane)
    if scenario == "intersection":
        config["destination"] = destination
    if initial_lane is not None:  # checked before the env exists: its constructor already places the ego
        lanes = int({**classes[scenario].default_config(), **config}.get("lanes_count", 1))
        if not 0 <= int(initial_lane) < lanes:
            raise ValueError(f"initial_lane {initial_lane}: the {scenario} road has lanes 0..{lanes - 1}")
    env = classes[scenario](config=config, render_mode="rgb_array")
    try:
        env.reset(seed=int(seed))
        road = env.road
        accelerate_road(road)  # exact: cached traffic loops (data/highway_fast.py)
        old = env.vehicle
        ego = expert_cls.create_from(old)
        if scenario == "roundabout":
            drawn = ["exr", "nxr", "wxr"][int(rng.integers(3))]  # drawn either way: the rest of the stream stays
            ego.plan_route_to(destination or drawn)
        cruise = EXPERT_CRUISE_MPS[scenario]
        ego.lock_cruise_speed(cruise * float(rng.uniform(1.0 - EXPERT_CRUISE_SPREAD, 1.0 + EXPERT_CRUISE_SPREAD)))
        ego.set_scenario(scenario)
        road.vehicles[road.vehicles.index(old)] = ego
        env.vehicle = ego
        substeps = sim_hz // POLICY_HZ
        dt_sim = 1.0 / sim_hz
        schedule = executed = None
        if perturb is not None:
            schedule = burst_schedule(perturb, num_frames, 1.0 / POLICY_HZ, schedule_rng(seed, SCENARIOS.index(scenario), density))
            executed = np.zeros((num_frames, 2), dtype=np.float32)

        tracks: dict[int, tuple[Any, int]] = {}

        def track_id(obj) -> int:
            entry = tracks.get(id(obj))
            if entry is None or entry[0] is not obj:
                entry = (obj, len(tracks))
                tracks[id(obj)] = entry
            return entry[1]

        def policy_step(k: int | None = None) -> list[tuple[float, float, float]]:
            """Simulate policy step ``k`` (frame k -> k + 1; None: the warm-up step, never perturbed)."""
            if schedule is not None and k is not None:
                row = schedule[k]
                ego.control_noise = (float(row[0]), float(row[1]), perturb) if row.any() else None
                ego.executed_noise = []
            states = []
            for _ in range(substeps):
                road.act()
                road.step(dt_sim)
                states.append(_flip_pose(ego.position[0], ego.position[1], ego.heading))
            if scenario == "intersection":
                env._clear_vehicles()
                env._spawn_vehicle(spawn_probability=env.config["spawn_probability"])
            if schedule is not None and k is not None:
                if ego.control_noise is not None and ego.executed_noise:
                    executed[k] = np.mean(ego.executed_noise, axis=0)
                ego.control_noise = None
            return states

        history = [_flip_pose(ego.position[0], ego.position[1], ego.heading)]
        history += policy_step()  # warm-up step: frame 0 has a motion history
        cams, poses, fine_index, commands, agents = [], [], [], [], []
        reason = "max_frames"
        render_s = 0.0
        for t in range(num_frames):
            if t > 0:
                history += policy_step(t - 1)
            if stop_on_crash and ego.crashed:
                reason = "crashed"
                break
            if stop_off_road and not ego.on_road:
                reason = "off_road"
                break
            pose = np.asarray(history[-1])
            t0 = time.perf_counter()
            cams.append(render_ego_camera(env, pose, cam))
            render_s += time.perf_counter() - t0
            poses.append(pose)
            fine_index.append(len(history) - 1)
            commands.append(route_command(ego))
            rows = [_object_row(v, track_id(v)) for v in road.vehicles if v is not ego]
            rows += [_object_row(o, track_id(o)) for o in road.objects]
            agents.append(np.asarray(rows, dtype=np.float32).reshape(-1, 8))
        sim_wall = time.perf_counter() - t_start
        n = len(poses)
        if n == 0:
            raise RuntimeError(f"{scenario} seed {seed}: episode ended before the first frame ({reason})")
        # ---- ego status from finite differences at the simulation rate
        hist = np.asarray(history)
        fine = np.asarray(fine_index)
        vel_w = (hist[fine] - hist[fine - 1])[:, :2] / dt_sim
        vel_prev = (hist[fine - 1] - hist[fine - 2])[:, :2] / dt_sim
        acc_w = (vel_w - vel_prev) / dt_sim
        yaw_rate = wrap_angle(hist[fine, 2] - hist[fine - 1, 2]) / dt_sim
        yaw = hist[fine, 2]
        cyw, syw = np.cos(yaw), np.sin(yaw)

        def to_ego(v):
            return np.stack([cyw * v[:, 0] + syw * v[:, 1], -syw * v[:, 0] + cyw * v[:, 1]], axis=1)

        status = np.concatenate([to_ego(vel_w), to_ego(acc_w), yaw_rate[:, None]], axis=1).astype(np.float32)
        # ---- map (cropped to where the ego went) and LiDAR
        pose_arr = np.asarray(poses)
        margin = 90.0
        bbox = (pose_arr[:, 0].min() - margin, pose_arr[:, 1].min() - margin, pose_arr[:, 0].max() + margin, pose_arr[:, 1].max() + margin)
        map_geometry = extract_map(road, bbox)
        t0 = time.perf_counter()
        drivable = DrivableRaster(map_geometry.drivable_polygons, lid.drivable_resolution_m)
        lidar_rng = np.random.default_rng(rng.integers(2**63))
        clouds = [synthesize_lidar(poses[t], agents[t], drivable, lid, lidar_rng) for t in range(n)]
        lidar_s = time.perf_counter() - t0
    finally:
        env.close()
        _reset_idm_class()
    meta = {
        "source": "highway-env",
        "scenario": scenario,
        "seed": int(seed),
        "density": float(density),
        "highway_env_version": highway_env.__version__,
        "env_class": type(env).__mro__[0].__name__,
        "sim_hz": sim_hz,
        "policy_hz": POLICY_HZ,
        "requested_frames": int(num_frames),
        "terminated_reason": reason,
        "camera_view": "topdown_ego_up",
        "camera_meters_per_pixel": cam.meters_per_pixel,
        "camera_ego_pixel_xy": [c0, r0],
        "ego_length_m": float(ego.LENGTH),
        "ego_width_m": float(ego.WIDTH),
        "ego_reference": "vehicle_center",
        "ego_cruise_speed_mps": float(ego.target_speed),
        "destination": str(ego.route[-1][1]) if scenario in ("roundabout", "intersection") and ego.route else "",
        "initial_lane": -1 if initial_lane is None else int(initial_lane),
        "lidar": asdict(lid),
        "world_frame": "highway-env x, -y (right-handed, y up), heading CCW",
    }
    if executed is not None:
        meta["perturbation"] = perturb.to_meta() | {"perturbed_steps": int(np.any(executed[:n] != 0.0, axis=1).sum())}
    writer = LogWriter(out_dir, meta, dt_s=1.0 / POLICY_HZ, camera_names=("front",), overwrite=overwrite)
    for t in range(n):
        writer.append(camera=cams[t], lidar_points=clouds[t], ego_pose=poses[t], ego_status=status[t], command=commands[t],
                      agents=agents[t])
    writer.set_map(map_geometry)
    writer.close(perturbation=None if executed is None else executed[:n])
    wall = time.perf_counter() - t_start
    stats = GenerationStats(
        path=str(out_dir), scenario=scenario, seed=int(seed), density=float(density), frames=n,
        terminated_reason=reason, wall_s=wall, steps_per_s=n / max(sim_wall, 1e-9), render_s=render_s, lidar_s=lidar_s,
    )
    if verbose:
        print(f"{out_dir.name}: {n} frames ({reason}), sim+render {stats.steps_per_s:.1f} steps/s, "
              f"render {render_s:.2f} s, lidar {lidar_s:.2f} s, total {wall:.2f} s ({n / wall:.1f} frames/s)")
    return stats


def generate_dataset(
    root: str | Path,
    scenarios: Sequence[str] = SCENARIOS,
    seeds: Sequence[int] = range(4),
    densities: Sequence[float] = (1.0,),
    frames_per_log: int = 200,
    workers: int = 1,
    *,
    overwrite: bool = False,
    progress: bool = True,
    backend: str = "process",
    address: str | None = None,
    **log_kwargs: Any,
) -> list[GenerationStats]:
    """One log per (scenario, seed, density) under ``root`` (``<scenario>_d<density>_s<seed>``).

    Existing logs are kept (resume) unless ``overwrite``. ``workers`` > 1 uses separate
    processes (spawned, each with its own SDL). Prints overall frames/s at the end.
    """
    root = Path(root)
    jobs = []
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        for density in densities:
            for seed in seeds:
                jobs.append(dict(out_dir=root / log_name(scenario, seed, density), scenario=scenario, seed=int(seed),
                                 density=float(density), num_frames=frames_per_log, **log_kwargs))
    return run_generation_jobs(jobs, workers, overwrite=overwrite, progress=progress, backend=backend, address=address)


def _generation_task(job: dict) -> tuple[GenerationStats | None, str]:
    try:
        return generate_log(**job), ""
    except Exception as exc:  # noqa: BLE001 - keep going: one bad episode should not stop a dataset (reported)
        return None, repr(exc)


def run_generation_jobs(jobs: Sequence[dict], workers: int = 1, *, overwrite: bool = False, progress: bool = True,
                        backend: str = "process", address: str | None = None) -> list[GenerationStats]:
    """Run ``generate_log`` keyword-argument dicts (``generate_dataset``, ``data/presets.py``);
    existing logs are kept unless ``overwrite``; failures are reported, not raised.
    ``backend``/``address``: ``core.fanout`` ('ray' locally or on a cluster, 'process')."""
    from latentvla_ros.core.fanout import run_tasks

    todo = []
    skipped = 0
    for job in jobs:
        if is_log_dir(job["out_dir"]) and not overwrite:
            skipped += 1
            continue
        Path(job["out_dir"]).parent.mkdir(parents=True, exist_ok=True)
        todo.append({**job, "overwrite": overwrite})
    jobs = todo
    t0 = time.perf_counter()
    costs = [float(j.get("num_frames", 200)) * (2.0 if j.get("scenario") == "intersection" else 1.0) for j in jobs]
    outcomes = run_tasks([(_generation_task, (job,)) for job in jobs], workers, backend=backend, address=address,
                         costs=costs, desc="highway-env logs", progress=progress, init_inline=False) if jobs else []
    results = [r for r, _ in outcomes if r is not None]
    failures = [(job["out_dir"], err) for job, (r, err) in zip(jobs, outcomes) if r is None]
    wall = time.perf_counter() - t0
    frames = sum(r.frames for r in results)
    if progress:
        per_log = np.mean([r.steps_per_s for r in results]) if results else 0.0
        print(f"generated {len(results)} logs ({skipped} existing kept, {len(failures)} failed), "
              f"{frames} frames in {wall:.1f} s = {frames / max(wall, 1e-9):.1f} frames/s with {max(workers, 1)} worker(s); "
              f"simulation+render {per_log:.1f} steps/s per worker")
        crashed = [r for r in results if r.terminated_reason != "max_frames"]
        if crashed:
            print(f"  {len(crashed)} log(s) ended early: "
                  + ", ".join(f"{Path(r.path).name} ({r.terminated_reason} at {r.frames})" for r in crashed))
        for path, err in failures:
            print(f"  failed {path}: {err}", file=sys.stderr)
    results.sort(key=lambda r: r.path)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    from latentvla_ros.data.presets import PRESETS

    parser = argparse.ArgumentParser(description="Generate highway-env driving logs")
    parser.add_argument("root", type=Path)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--seeds", type=int, nargs=2, default=(0, 4), metavar=("START", "STOP"),
                        help="training seeds (below the evaluation range, 10000)")
    parser.add_argument("--densities", type=float, nargs="+", default=None,
                        help="traffic densities (default 1.0; with --preset its DENSITIES)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="data/presets.py: every command balanced per scenario, several densities "
                             "(--seeds START STOP: seeds per scenario and density, a multiple of 12 balances all); "
                             "'recovery': the same, every log perturbed (DART), seeds START+500...")
    parser.add_argument("--backend", choices=["process", "ray", "inline"], default="process",
                        help="fan-out of the logs over --workers: a process pool, or Ray (core/fanout.py)")
    parser.add_argument("--address", default=None, help="Ray cluster address (ray://head:10001 or auto)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    fan = dict(backend="ray" if args.address else args.backend, address=args.address)
    if args.preset:
        from latentvla_ros.data.presets import DENSITIES, command_counts, preset_jobs

        jobs = preset_jobs(args.preset, args.root, args.seeds[1] - args.seeds[0], args.frames,
                           args.densities or DENSITIES, args.seeds[0], args.scenarios)
        stats = run_generation_jobs(jobs, args.workers, overwrite=args.overwrite, **fan)
        print(command_counts([j["out_dir"] for j in jobs if is_log_dir(j["out_dir"])]))
        return 0 if stats or not jobs else 1
    stats = generate_dataset(args.root, args.scenarios, range(*args.seeds), args.densities or [1.0], args.frames,
                             args.workers, overwrite=args.overwrite, **fan)
    return 0 if stats or not args.scenarios else 1


if __name__ == "__main__":
    raise SystemExit(main())
