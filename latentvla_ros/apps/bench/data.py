"""The bench's inputs (a generated driving log and checkpoints per config) and the bare model chain."""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentvla_ros.apps.bench.meters import CpuMeter, ThreadCpu, ratio_of, stats_ms
from latentvla_ros.apps.bench.options import CAMERA, CAMERA_NAME, MODEL_KINDS
from latentvla_ros.core.agent import agent_input_of

log = logging.getLogger(__name__)


@dataclass
class ConfigData:
    config: str
    log_dir: Path
    frames: list  # core SensorFrame, in memory
    checkpoint_dir: Path
    checkpoint_source: str
    msgs: list | None = None  # per frame (CameraInfo, PointCloud2, Odometry, Image), publication order


def prepare_log(config: str, num_frames: int, data_dir: Path, seed: int):
    """A highway-env driving log with the config's camera (cached)."""
    from latentvla_ros.data.highway import CameraConfig, generate_log
    from latentvla_ros.data.log_format import DrivingLog

    path = data_dir / f"{config}_highway_seed{seed}_{num_frames}f"
    if path.exists():
        try:
            return DrivingLog(path)
        except Exception:  # noqa: BLE001 - a broken cache is regenerated
            shutil.rmtree(path, ignore_errors=True)
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    generate_log(path, scenario="highway", seed=seed, num_frames=num_frames, camera=CameraConfig(**CAMERA[config]),
                 stop_on_crash=False, stop_off_road=False)
    return DrivingLog(path)


def prepare_checkpoints(config: str, root: Path | None, out: Path, seed: int) -> tuple[Path, str]:
    """``<root>/<config>`` when it holds all three checkpoints, else random-init ones under ``<out>``."""
    import torch

    from latentvla_ros.runtime import MODEL_SPECS

    def complete(d: Path) -> bool:
        return all((d / k / "config.json").is_file() and (d / k / "model.safetensors").is_file() for k in MODEL_KINDS)

    if root is not None and complete(root / config):
        return (root / config).resolve(), f"checkpoints from {root / config}"
    target = (out / "checkpoints" / config).resolve()
    if not complete(target):
        for kind in MODEL_KINDS:
            spec = MODEL_SPECS[kind]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = spec.model_cls(spec.config_cls.preset(config))
            model.save_pretrained(target / kind, meta={"note": f"random init (seed {seed}) for latentvla bench"})
    return target, f"random init (seed {seed}; latency does not depend on weight values)"


def frame_messages(log, t: int):
    """(CameraInfo, PointCloud2, Odometry, Image) of log frame ``t`` (stamps set when published)."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo

    from latentvla_ros.ros.conversions import make_header, numpy_to_image, quaternion_from_yaw, xyzi_to_pointcloud2

    cam = np.ascontiguousarray(log.camera(t)[0])
    h, w = cam.shape[:2]
    image = numpy_to_image(cam, 0, f"camera_{CAMERA_NAME}")
    mpp = float(log.meta.get("camera_meters_per_pixel", 0.5) or 0.5)
    k = [1.0 / mpp, 0.0, (w - 1) / 2.0, 0.0, 1.0 / mpp, 0.75 * h, 0.0, 0.0, 1.0]
    info = CameraInfo(header=make_header(0, f"camera_{CAMERA_NAME}"), height=h, width=w, distortion_model="plumb_bob",
                      k=k)
    cloud = xyzi_to_pointcloud2(log.lidar_points(t), 0, "base_link")
    pose, status = log.ego_pose(t), np.asarray(log.ego_status_array[t], dtype=np.float64)
    odom = Odometry(header=make_header(0, "map"), child_frame_id="base_link")
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(pose[0]), float(pose[1])
    odom.pose.pose.orientation = quaternion_from_yaw(float(pose[2]))
    odom.twist.twist.linear.x, odom.twist.twist.linear.y = float(status[0]), float(status[1])
    odom.twist.twist.angular.z = float(status[4])
    return info, cloud, odom, image


# ============================================================================ runtimes
def build_agent(ckpt_dir: Path, config: str, backend: str, threads: int, onnx_dir: Path | None = None):
    """The pipeline objects exactly as ``ros.model_loading.load_model_runtime`` builds them, with the
    trajectory_planner node's obstacle guard (its schema defaults) on the plans as the graph has it."""
    from latentvla_ros.models.configuration_bev import BevBackboneConfig
    from latentvla_ros.models.configuration_planner import PlannerConfig
    from latentvla_ros.models.configuration_student import StudentConfig
    from latentvla_ros.runtime import BevFeatureExtractor, LatentReasoner, LatentVLAAgent, TrajectoryPlanner

    common = dict(device="cpu", torch_threads=threads, backend=backend)
    onnx = (lambda k: onnx_dir / f"{k}.onnx") if onnx_dir else (lambda k: None)
    bev = BevFeatureExtractor(config=BevBackboneConfig.preset(config), checkpoint_dir=ckpt_dir / "bev_backbone",
                              onnx_path=onnx("bev_backbone"), **common)
    planner = TrajectoryPlanner(config=PlannerConfig.preset(config), checkpoint_dir=ckpt_dir / "planner",
                                onnx_path=onnx("planner"), **common)
    reasoner = None
    if planner.needs_plan:
        reasoner = LatentReasoner(config=StudentConfig.preset(config), checkpoint_dir=ckpt_dir / "student",
                                  onnx_path=onnx("student"), **common)
    return with_guard(LatentVLAAgent(bev, reasoner, planner), planner_guard_config())


def with_guard(agent, guard_config):
    """``agent`` with the trajectory_planner node's obstacle guard on its plans (``GuardedAgent``), as the
    graph runs it; ``agent`` itself when the guard is off. The bare chain does the graph's work without ROS."""
    from latentvla_ros.core.obstacle_guard import ObstacleGuard
    from latentvla_ros.runtime.agent import GuardedAgent

    return GuardedAgent(agent, ObstacleGuard(guard_config)) if guard_config.enabled else agent


def planner_guard_config():
    """The trajectory_planner node's obstacle guard configuration (its schema defaults)."""
    from latentvla_ros.core.obstacle_guard import GuardConfig
    from latentvla_ros.ros.contracts.parameters import load_schema, parse_parameters

    return GuardConfig(**parse_parameters(load_schema("trajectory_planner"), "trajectory_planner", {}).obstacle_guard.as_dict())


def sleep_until(deadline: float) -> None:
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 0.05))


def run_bare(agent, frames: list, warmup: list, rate: float) -> dict[str, Any]:
    """The bare chain on ``frames`` at ``rate`` (an overrun starts the next frame at once).

    Runs in a worker thread, as the executor runs the nodes' callbacks: under CPU
    contention torch's 2-thread OpenMP team started from the main thread was measured
    up to 3x slower than the same work started from a worker thread, which would bias
    the reference (on a quiet machine both are the same).
    """
    return in_worker(_run_bare, agent, frames, warmup, rate)


def in_worker(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh thread (torch timings are taken off the main
    thread everywhere, like the graph's executor threads; see ``run_bare``)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"bench_{getattr(fn, '__name__', 'worker')}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _run_bare(agent, frames: list, warmup: list, rate: float) -> dict[str, Any]:
    inputs = [agent_input_of(f) for f in frames]  # built before the clock starts
    for f in warmup:
        agent.compute_trajectory(agent_input_of(f))
    totals, bev, reason, plan, errors = [], [], [], [], 0
    meter = CpuMeter()
    threads = ThreadCpu()
    threads.start()
    meter.start()
    t0 = time.perf_counter()
    for i, agent_input in enumerate(inputs):
        sleep_until(t0 + i / rate)
        try:
            agent.compute_trajectory(agent_input)
        except (ValueError, RuntimeError):
            errors += 1
            continue
        t = agent.timings
        totals.append(t.total_ms)
        bev.append(t.bev_ms)
        reason.append(t.reason_ms)
        plan.append(t.plan_ms)
    cpu = meter.stop()
    if cpu.get("own_cpu_s") is not None and frames:
        cpu["own_cpu_ms_per_frame"] = cpu["own_cpu_s"] * 1e3 / len(frames)
    cpu["cpu_ms_per_frame_by_thread"] = {"this process": threads.stop(len(frames))}
    return {"mode": "bare", "concurrent": bool(getattr(agent, "concurrent", False)), "rate_hz": rate,
            "frames": len(frames), "errors": errors,
            "latency_ms": stats_ms(totals), "stages_ms": {"bev_backbone": stats_ms(bev), "student": stats_ms(reason),
                                                           "planner": stats_ms(plan)},
            "max_throughput_hz": ratio_of(1000.0, float(np.median(totals))) if totals else None,
            "per_frame_ms": [round(v, 3) for v in totals], "cpu": cpu}
