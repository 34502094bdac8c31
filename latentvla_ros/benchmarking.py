"""`latentvla bench`: latency of the node graph against the bare model chain, ONNX, teacher.

One run measures, for each model config (``edge``, ``paper``) on the same pre-generated
frames (a highway-env driving log, cached under ``<out>/data``):

- ``bare``: the bare model chain, i.e. ``LatentVLAAgent.compute_trajectory`` on the
  pipeline objects themselves (BEV backbone -> student -> planner, one after the other,
  no ROS). When the composed graph is measured too, these are the very runtime objects
  of the composed nodes (same weights, backend and torch threads). Frames are fed on the
  same schedule as the graph's input (``--rate``) after a warm-up. The targets' reference.
- ``bare-parallel``: the same with ``LatentVLAAgent(concurrent=True)`` (student beside
  the BEV backbone, as in the graph): graph / bare-parallel is what ROS itself costs.
- ``composed``: every node of the graph in this process (``ros.graph.create_composed_nodes``
  spun by ``ros.executors.GraphExecutor``, as ``latentvla run``, in-process delivery
  between the nodes; ``composed-events-dds``: over DDS), fed by a harness
  node that publishes camera image + camera info + LiDAR + odometry at ``--rate`` with
  header stamps = wall clock at publication, and receives the trajectories.
- ``processes``: the same nodes as separate processes (``ros.graph.spawn_processes``, the
  same environment, the shipped Fast DDS profile in every process), the
  harness in this process.

End-to-end latency of a frame = receive time of its (non-fallback) trajectory in the
harness minus the sensor stamp. Ratio = graph latency / bare-chain latency (ratio of the
medians, ratio of the p99s, and the median of per-frame ratios on the same frames).
Dropped = input frames without any trajectory; fallbacks = frames answered by a
fallback (plan timeout or model error); ``dropped_synchronized`` = frames that
``sensor_sync`` synchronized and that did not get a model trajectory. Per-node processing
times come from each node's ``~/debug/processing_time_ms`` topic (the time inside the
node's ``processing()`` block: model call + output conversion + publish).

Also: ``onnx`` (per model: max |torch - onnxruntime| on real inputs, both timed with the
same thread count), ``teacher`` (the largest Qwen2.5-VL teacher that fits in memory
here vs. the paper student on the same frame) and ``conversions`` (message
conversion costs and zero-copy checks).

Every run writes ``<out>/bench.json`` (after each section, so a crash keeps what was
measured) and prints a table; ``--write-docs`` also writes ``docs/performance.md``.
The CPU use of *other* processes during each run is measured from ``/proc`` and
reported (``cpu.foreign_cores``): figures taken on a loaded machine say so.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import logging
import os
import platform
import random
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


class _LazyNumpy:
    """numpy on first use: ``latentvla --help`` builds this module's parser without it."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        globals()["np"] = numpy
        return getattr(numpy, name)


np: Any = _LazyNumpy()

CONFIGS = ("edge", "paper")
MODES = ("bare", "composed", "processes", "instant")
BACKENDS = ("torch", "onnx")
SECTIONS = ("graph", "onnx", "teacher", "conversions")
#: composed-graph variants: a ros/executors.py kind, "-per-node" for one thread per node, "-dds" with
#: in-process delivery off (ros/intra_process.py); events ships
EXECUTORS = ("events", "events-dds", "events-per-node", "single", "multi")
GRAPH_NODES = ("sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner")
MODEL_KINDS = ("bev_backbone", "student", "planner")
DEFAULT_RATES: dict[str, list[float]] = {"edge": [10.0], "paper": [2.0]}
#: camera of the generated log per config: the edge models see 128x128, the paper
#: models a 256x1024 stitched front view (NAVSIM TransFuser's input size).
CAMERA = {"edge": dict(height=128, width=128, meters_per_pixel=0.5),
          "paper": dict(height=256, width=1024, meters_per_pixel=0.25)}
CAMERA_NAME = "front"
TARGETS = {"composed_median": 1.10, "composed_p99": 1.30, "processes_median": 1.30, "teacher_speedup": 20.0}
#: ONNX outputs must match torch: max|torch - ort| <= ONNX_ATOL + ONNX_RTOL * max|torch|.
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4


# ============================================================================ options
def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``latentvla bench`` (also used by ``benchmarks/bench_*.py``)."""
    parser.add_argument("--out", default="artifacts/bench", help="output folder (bench.json, logs, cached data)")
    parser.add_argument("--frames", default=None,
                        help="measured frames per run: N, or per config 'edge=200,paper=60' (default 100; quick 20)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: edge only, bare+composed, 20 frames, tiny teacher")
    parser.add_argument("--configs", default=None, help="comma-separated model configs (default edge,paper; quick: edge)")
    parser.add_argument("--modes", default=None,
                        help="comma-separated graph modes of bare,composed,processes,instant (default all; quick: "
                             "bare,composed). instant: the bare chain and the composed graph again with every forward "
                             "pass answered at once (its first output replayed): what the graph costs besides the models")
    parser.add_argument("--backends", default=None,
                        help="inference backends of the graph runs, torch,onnx (default torch,onnx; quick: torch). "
                             "processes mode runs with the first one only")
    parser.add_argument("--rate", default=None,
                        help="input rate [Hz]: one number, or per config 'edge=10,paper=2'; several rates with ':' "
                             "('paper=2:10'); the first is the one the targets refer to (default edge=10,paper=2)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--executors", default=None,
                        help="composed-graph executors to compare (ros/executors.py): events (what `latentvla run` "
                             "ships: EventsExecutors, io nodes on one thread, each model node on its own, in-process delivery between "
                             "nodes), events-dds (the same, every message over DDS), events-per-node (one thread per "
                             "node), single (the shipped layout with SingleThreadedExecutors, as on Humble/Jazzy), multi "
                             "(one MultiThreadedExecutor). Default all; quick: events")
    parser.add_argument("--threads", default=None,
                        help="intra-op threads of torch / onnxruntime in every model stage (nodes and bare chain alike): "
                             "N, or per config 'edge=1,paper=2'; 0 (default): automatic, as the nodes ship "
                             "(core.pipeline.resolve_intra_op_threads: half the usable cores)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up frames before each measured run")
    parser.add_argument("--checkpoints", default="checkpoints",
                        help="root holding <config>/{bev_backbone,student,planner}; configs without them get "
                             "random-init checkpoints written under <out>/checkpoints (latency does not depend on weights)")
    parser.add_argument("--teacher-mem-gb", type=float, default=0.0,
                        help="memory the teacher may take (0: MemAvailable - 4 GB); decides full vs. scaled Qwen2.5-VL-3B")
    parser.add_argument("--teacher-runs", type=int, default=3, help="timed teacher forward passes (after one warm-up)")
    parser.add_argument("--write-docs", action="store_true", help="also write docs/performance.md from the results")
    parser.add_argument("--docs-path", default=None, help="where --write-docs writes (default <repo>/docs/performance.md)")
    parser.add_argument("--domain-id", type=int, default=-1, help="ROS domain id (default: $ROS_DOMAIN_ID or a random one)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the generated driving log and random weights")
    parser.add_argument("--set", action="append", default=None, metavar="NODE.PARAM=VALUE",
                        help="extra node parameter for the graph runs (YAML value, repeatable), e.g. "
                             "sensor_sync.qos.input_reliability=reliable")
    return parser


@dataclass
class BenchOptions:
    out: Path
    configs: list[str]
    modes: list[str]
    backends: list[str]
    rates: dict[str, list[float]]
    frames: dict[str, int]
    sections: list[str]
    threads: dict[str, int] = field(default_factory=dict)  # per config, resolved (> 0)
    warmup: int = 5
    checkpoints: Path | None = None
    teacher_mem_gb: float = 0.0
    teacher_runs: int = 3
    quick: bool = False
    write_docs: bool = False
    docs_path: Path | None = None
    domain_id: int = 0
    seed: int = 3
    command: str = ""
    startup_timeout_s: float = 240.0
    executors: list[str] = field(default_factory=lambda: ["events"])
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _per_config(value: Any, configs: list[str], default: dict[str, Any], cast: Callable[[str], Any]) -> dict[str, Any]:
    """'10' -> every config; 'edge=10,paper=2' -> per config; missing configs keep ``default``."""
    out = {c: default[c] for c in configs}
    if value is None or value == "":
        return out
    if isinstance(value, (int, float)):
        return {c: cast(str(value)) for c in configs}
    for item in _split(str(value)):
        key, sep, raw = item.partition("=")
        if sep:
            if key not in CONFIGS:
                raise SystemExit(f"latentvla bench: unknown config {key!r} in {value!r}")
            if key in out:
                out[key] = cast(raw)
        else:
            out = {c: cast(item) for c in configs}
    return out


def _rates(raw: str) -> list[float]:
    rates = [float(r) for r in raw.split(":") if r]
    if not rates or any(r <= 0 for r in rates):
        raise SystemExit(f"latentvla bench: bad rate {raw!r}")
    return rates


def _command_line() -> str:
    argv0 = Path(sys.argv[0]).name if sys.argv else ""
    rest = sys.argv[1:]
    if argv0 in ("latentvla", "cli.py", "__main__.py") or argv0.endswith("latentvla_ros.cli"):
        return shlex.join(["latentvla", *rest])
    if argv0.startswith("bench_"):
        return shlex.join(["python", f"benchmarks/{argv0}", *rest])
    return shlex.join(["python", *sys.argv])


def resolve_options(args: argparse.Namespace) -> BenchOptions:
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731 - namespaces from older parsers
    quick = bool(get("quick", False))
    configs = _split(get("configs")) or (["edge"] if quick else list(CONFIGS))
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"latentvla bench: unknown config {c!r} (expected {CONFIGS})")
    modes = _split(get("modes")) or (["bare", "composed"] if quick else list(MODES))
    backends = _split(get("backends")) or (["torch"] if quick else list(BACKENDS))
    sections = _split(get("sections")) or list(SECTIONS)
    executors = _split(get("executors")) or (["events"] if quick else list(EXECUTORS))
    for name, values, allowed in (("mode", modes, MODES), ("backend", backends, BACKENDS), ("section", sections, SECTIONS),
                                  ("executor", executors, EXECUTORS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise SystemExit(f"latentvla bench: unknown {name} {bad} (expected {allowed})")
    frames_default = {c: (20 if quick else 100) for c in CONFIGS}
    frames = _per_config(get("frames"), configs, frames_default, int)
    rates = _per_config(get("rate"), configs, DEFAULT_RATES, _rates)
    domain = int(get("domain_id", -1) if get("domain_id") is not None else -1)
    if domain < 0:
        domain = int(os.environ.get("ROS_DOMAIN_ID") or random.SystemRandom().randint(1, 100))
    ckpt = get("checkpoints", "checkpoints")
    docs = get("docs_path")
    return BenchOptions(
        out=Path(get("out", "artifacts/bench")), configs=configs, modes=modes, backends=backends, rates=rates,
        frames=frames, sections=sections, threads=_threads(get("threads"), configs), warmup=int(get("warmup", 5) or 0),
        checkpoints=Path(ckpt) if ckpt else None, teacher_mem_gb=float(get("teacher_mem_gb", 0.0) or 0.0),
        teacher_runs=max(1, int(get("teacher_runs", 3) or 3)) if not quick else 2, quick=quick,
        write_docs=bool(get("write_docs", False)), docs_path=Path(docs) if docs else None, domain_id=domain,
        seed=int(get("seed", 3) if get("seed") is not None else 3), command=get("command_line") or _command_line(),
        executors=executors, overrides=_overrides(get("set") or []),
    )


def _threads(value: Any, configs: list[str]) -> dict[str, int]:
    from latentvla_ros.core.pipeline import resolve_intra_op_threads

    raw = _per_config(value, configs, {c: 0 for c in CONFIGS}, int)
    if any(v < 0 for v in raw.values()):
        raise SystemExit(f"latentvla bench: threads must be >= 0, got {value!r}")
    return {c: resolve_intra_op_threads(v) for c, v in raw.items()}


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    from latentvla_ros.ros.graph import parse_param_overrides

    try:
        return parse_param_overrides(items)
    except ValueError as exc:
        raise SystemExit(f"latentvla bench: {exc}") from exc


# ============================================================================ helpers
def stats_ms(values) -> dict[str, float]:
    """count, median, p90, p99, mean, min, max of a list of milliseconds."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    return {"count": int(arr.size), "median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()), "min_ms": float(arr.min()),
            "max_ms": float(arr.max())}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b <= 0:
        return None
    return float(a / b)


def _round(obj: Any, nd: int = 3) -> Any:
    """``nd`` decimals; values smaller than that keep 3 significant digits (an ONNX-vs-torch
    difference of 1.4e-06 must not be reported as 0)."""
    if isinstance(obj, float):
        if not np.isfinite(obj):
            return None
        if obj != 0.0 and abs(obj) < 10.0 ** -nd:
            return float(f"{obj:.3g}")
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: _round(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, nd) for v in obj]
    if isinstance(obj, np.generic):
        return _round(obj.item(), nd)
    return obj


def _meminfo_gb(key: str = "MemAvailable") -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


class CpuMeter:
    """Busy cores of the whole machine vs. of our own processes over an interval (/proc)."""

    def __init__(self, pids: Callable[[], list[int]] | None = None):
        self._pids = pids or (lambda: [])
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._ncpu = os.cpu_count() or 1
        self._start: tuple[float, float, float, float] | None = None

    @staticmethod
    def _machine() -> tuple[float, float]:
        try:
            fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return float("nan"), float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        total = sum(fields[:8])
        return total - idle, total

    def _own(self) -> float:
        ticks = 0.0
        for pid in [os.getpid(), *self._pids()]:
            try:
                parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += float(parts[11]) + float(parts[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return ticks

    def start(self) -> None:
        busy, total = self._machine()
        self._start = (busy, total, self._own(), time.monotonic())

    def stop(self) -> dict[str, float]:
        if self._start is None:
            return {}
        busy0, total0, own0, t0 = self._start
        busy1, total1 = self._machine()
        own1, t1 = self._own(), time.monotonic()
        if not (total1 > total0) or t1 <= t0:
            return {}
        busy = (busy1 - busy0) / (total1 - total0) * self._ncpu
        own = (own1 - own0) / self._hz / (t1 - t0)
        return {"busy_cores": busy, "own_cores": own, "foreign_cores": max(0.0, busy - own), "cores": self._ncpu,
                "own_cpu_s": (own1 - own0) / self._hz, "wall_s": t1 - t0,
                "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}


def _thread_label(name: str | None, comm: str) -> str:
    if comm.startswith("dds."):
        return "Fast DDS threads"
    if name is None:
        return "native threads (OpenMP workers, ...)"
    if name.startswith("ThreadPoolExecutor"):
        return "executor workers (callbacks)"
    return {"bench_graph": "executor wait loop", "bench_harness": "harness executor",
            "MainThread": "main (feeder)"}.get(name, name)


class ThreadCpu:
    """CPU time per thread category of one process over an interval (``/proc/<pid>/task``).

    For our own process, Python threads are told apart by name; for another process,
    Python threads and native threads (OpenMP workers) cannot be told apart and are
    reported together as ``python + native``.
    """

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: dict[int, tuple[str, float]] = {}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        own = self.pid == os.getpid()
        names = {t.native_id: t.name for t in threading.enumerate()} if own else {}
        out = {}
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                comm = Path(f"/proc/{self.pid}/task/{tid}/comm").read_text().strip()
                parts = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            label = _thread_label(names.get(int(tid)), comm) if own else (
                "Fast DDS threads" if comm.startswith("dds.") else "python + native")
            out[int(tid)] = (label, float(parts[11]) + float(parts[12]))
        return out

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self, frames: int) -> dict[str, float]:
        """CPU milliseconds per frame per thread category."""
        end = self._snapshot()
        totals: dict[str, float] = {}
        for tid, (label, ticks) in end.items():
            ticks0 = self._start.get(tid, (label, 0.0))[1]
            totals[label] = totals.get(label, 0.0) + (ticks - ticks0) / self._hz * 1e3 / max(1, frames)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def machine_info() -> dict[str, Any]:
    from latentvla_ros.core.pipeline import usable_cores

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cores": os.cpu_count(), "usable_cores": usable_cores(),
                            "mem_total_gb": round(_meminfo_gb("MemTotal"), 1)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
        info["simd"] = sorted(f for f in flags.split() if f.startswith(("avx", "amx")) or f == "fma")
    except OSError:
        pass
    for name, module in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("transformers", "transformers"),
                         ("numpy", "numpy")):
        try:
            info[name] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            info[name] = None
    try:
        from importlib.metadata import version

        info["rclpy"] = f"ros-kilted-rclpy {version('ros-kilted-rclpy')}"
    except Exception:  # noqa: BLE001
        info["rclpy"] = None
    info["rmw"] = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    info["fastdds_builtin_transports"] = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS")
    info["fastdds_profiles_file"] = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    return info


def other_processes(limit: int = 8) -> list[str]:
    """The busiest processes that are not ours (``ps``), to say whether the machine was quiet."""
    import subprocess

    try:
        text = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etimes,args", "--sort=-pcpu"], capture_output=True,
                              text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        pid, ppid, pcpu = int(parts[0]), int(parts[1]), float(parts[2])
        if pid == me or ppid == me or pcpu < 5.0:
            continue
        out.append(f"{pcpu:.0f}% {parts[4][:100]}")
        if len(out) >= limit:
            break
    return out


# ============================================================================ data
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

    from latentvla_ros.core.pipeline import MODEL_SPECS

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
    """The pipeline objects exactly as ``ros.node_base.load_model_runtime`` builds them."""
    from latentvla_ros.core.pipeline import BevFeatureExtractor, LatentReasoner, LatentVLAAgent, TrajectoryPlanner
    from latentvla_ros.models.configuration_bev import BevBackboneConfig
    from latentvla_ros.models.configuration_planner import PlannerConfig
    from latentvla_ros.models.configuration_student import StudentConfig

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
    return LatentVLAAgent(bev, reasoner, planner)


def _sleep_until(deadline: float) -> None:
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
    for f in warmup:
        agent.compute_trajectory(f)
    totals, bev, reason, plan, errors = [], [], [], [], 0
    meter = CpuMeter()
    threads = ThreadCpu()
    threads.start()
    meter.start()
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        _sleep_until(t0 + i / rate)
        try:
            agent.compute_trajectory(frame)
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
            "max_throughput_hz": _ratio(1000.0, float(np.median(totals))) if totals else None,
            "per_frame_ms": [round(v, 3) for v in totals], "cpu": cpu}


# ============================================================================ ROS harness
class Harness:
    """Publishes the sensor topics (stamps = wall clock now) and records what comes back."""

    def __init__(self, context, node_names=GRAPH_NODES):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from latentvla_ros.msg import PlannedTrajectory
        from latentvla_ros.ros.executors import GraphExecutor
        from latentvla_ros.ros.topology import SENSOR_TOPICS, TRAJECTORY

        self._context = context
        self.node = rclpy.create_node("latentvla_bench_harness", context=context)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.topics = {
            "camera_info": SENSOR_TOPICS["camera_info"].format(name=CAMERA_NAME),
            "lidar": SENSOR_TOPICS["lidar"], "odometry": SENSOR_TOPICS["odometry"],
            "image": SENSOR_TOPICS["camera_image"].format(name=CAMERA_NAME), "trajectory": "/" + TRAJECTORY,
        }
        self.pubs = [self.node.create_publisher(CameraInfo, self.topics["camera_info"], pub_qos),
                     self.node.create_publisher(PointCloud2, self.topics["lidar"], pub_qos),
                     self.node.create_publisher(Odometry, self.topics["odometry"], pub_qos),
                     self.node.create_publisher(Image, self.topics["image"], pub_qos)]
        self._cond = threading.Condition()
        self.trajectories: dict[int, tuple[int, bool, str]] = {}  # stamp -> (receive ns, fallback, reason)
        self.duplicates = 0
        # per-node times come from the nodes' own statistics (InProcessNodeTimes, DiagnosticsNodeTimes), not
        # from their ~/debug/*_ms topics: eight more subscriptions per frame would load the graph being measured
        self.node_names = tuple(node_names)
        self.diagnostics: dict[str, tuple[int, dict[str, str]]] = {}
        self.node.create_subscription(PlannedTrajectory, self.topics["trajectory"], self._on_trajectory, sub_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, sub_qos)
        # its own thread, on the executor the graph ships with (cheap: the C++ EventsExecutor where rclpy has it)
        self.spinner = GraphExecutor(context=context).add(self.node).start()

    def _on_trajectory(self, msg) -> None:
        now = time.time_ns()
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._cond:
            if stamp in self.trajectories:
                self.duplicates += 1
            else:
                self.trajectories[stamp] = (now, bool(msg.is_fallback), str(msg.fallback_reason))
            self._cond.notify_all()

    def _on_diagnostics(self, msg) -> None:
        now = time.time_ns()
        for status in msg.status:
            name = status.name.split("/")[-1]
            if name in self.node_names:
                self.diagnostics[name] = (now, {kv.key: kv.value for kv in status.values})

    def publish(self, msgs) -> int:
        """Stamp every message with the wall clock now and publish (the image last)."""
        from builtin_interfaces.msg import Time

        stamp_ns = time.time_ns()
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        for pub, msg in zip(self.pubs, msgs):
            msg.header.stamp = stamp
            pub.publish(msg)
        return stamp_ns

    def wait_for(self, stamps, timeout_s: float) -> bool:
        want = set(stamps)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not want <= set(self.trajectories):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def model_trajectory(self, stamp: int) -> bool:
        with self._cond:
            entry = self.trajectories.get(stamp)
        return entry is not None and not entry[1]

    def connected(self, graph_publishes: bool = True) -> bool:
        counts = [p.get_subscription_count() for p in self.pubs]
        # sensor_sync takes info, lidar, odometry, image; the planner also odometry
        ok = counts[1] >= 1 and counts[2] >= 2 and counts[3] >= 1
        return ok and (not graph_publishes or self.node.count_publishers(self.topics["trajectory"]) >= 1)

    def close(self) -> None:
        self.spinner.stop()
        with contextlib.suppress(Exception):
            self.node.destroy_node()


class InProcessNodeTimes:
    """Per-node processing time and output latency of composed nodes over the measured
    frames, read from each node's own statistics (``NodeStats``) in this process."""

    def __init__(self, nodes: list):
        self._nodes = {nd.get_name(): nd for nd in nodes}
        self._marks: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self._marks = {name: nd.stats.mark() for name, nd in self._nodes.items()}

    def stop(self) -> tuple[dict[str, dict], dict[str, dict]]:
        processing, latency = {}, {}
        for name, nd in self._nodes.items():
            p, lat = nd.stats.since(self._marks.get(name, (0, 0)))
            processing[name], latency[name] = stats_ms(p), stats_ms(lat)
        return processing, latency


class DiagnosticsNodeTimes:
    """The same for node processes: each node's own summary in its next ``/diagnostics``
    (``processing_*`` / ``latency_*`` over every frame it processed, warm-up included)."""

    def __init__(self, harness: Harness):
        self._harness = harness

    def start(self) -> None:
        pass

    def stop(self) -> tuple[dict[str, dict], dict[str, dict]]:
        t = time.time_ns()
        names = self._harness.node_names
        _wait(lambda: all(self._harness.diagnostics.get(n, (0, {}))[0] > t for n in names), 3.0)
        processing, latency = {}, {}
        for name in names:
            values = self._harness.diagnostics.get(name, (0, {}))[1]
            processing[name], latency[name] = _diagnostics_summary(values, "processing"), _diagnostics_summary(values, "latency")
        return processing, latency


def _diagnostics_summary(values: dict[str, str], prefix: str) -> dict[str, float]:
    """``processing_median_ms`` ... of a node's diagnostics -> a ``stats_ms``-like dict."""
    try:
        out = {"count": int(values[f"{prefix}_count"])}
        out.update({k: float(values[f"{prefix}_{k}"]) for k in ("median_ms", "p99_ms", "max_ms")})
        return out
    except (KeyError, ValueError):
        return {"count": 0}


def _wait(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.05, alive: Callable[[], bool] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(period_s)
    return predicate()


def warm_up_graph(harness: Harness, msgs: list, rate: float, need: int, timeout_s: float,
                  alive: Callable[[], bool] | None = None) -> int:
    """Publish warm-up frames one at a time until ``need`` in a row got a model trajectory."""
    consecutive, sent, i = 0, 0, 0
    deadline = time.monotonic() + timeout_s
    wait_s = max(3.0, 6.0 / rate)
    while consecutive < max(1, need) and time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError("a graph process exited during warm-up")
        start = time.perf_counter()
        stamp = harness.publish(msgs[i % len(msgs)])
        i += 1
        sent += 1
        ok = harness.wait_for([stamp], wait_s) and harness.model_trajectory(stamp)
        consecutive = consecutive + 1 if ok else 0
        _sleep_until(start + 1.0 / rate)
    if consecutive < max(1, need):
        raise RuntimeError(f"the graph did not answer {need} warm-up frames in a row within {timeout_s:.0f} s")
    return sent


def measure_graph(harness: Harness, msgs: list, rate: float, bare: dict | None, counters: Callable[[], dict],
                  cpu_pids: Callable[[], list[int]], drain_s: float, node_times: InProcessNodeTimes | DiagnosticsNodeTimes,
                  process_names: dict[int, str] | None = None, bare_parallel: dict | None = None) -> dict[str, Any]:
    """Publish ``msgs`` at ``rate`` on an absolute schedule; latency, drops, node times.

    ``process_names`` (pid -> node) adds a CPU-per-frame breakdown of those processes;
    this process is always broken down by thread.
    """
    time.sleep(0.5)  # let the warm-up settle
    before = counters()
    node_times.start()
    meter = CpuMeter(cpu_pids)
    thread_meters = {"this process": ThreadCpu()}
    for pid, name in (process_names or {}).items():
        thread_meters[name] = ThreadCpu(pid)
    for m in thread_meters.values():
        m.start()
    meter.start()
    stamps: list[int] = []
    t0 = time.perf_counter()
    late = 0
    for i, m in enumerate(msgs):
        deadline = t0 + i / rate
        _sleep_until(deadline)
        if time.perf_counter() - deadline > 0.5 / rate:
            late += 1
        stamps.append(harness.publish(m))
    publish_span_s = time.perf_counter() - t0
    _drain(harness, stamps, drain_s)
    time.sleep(0.2)
    cpu = meter.stop()
    if cpu.get("own_cpu_s") is not None and msgs:
        cpu["own_cpu_ms_per_frame"] = cpu["own_cpu_s"] * 1e3 / len(msgs)
    cpu["cpu_ms_per_frame_by_thread"] = {name: m.stop(len(msgs)) for name, m in thread_meters.items()}
    after = counters()
    with harness._cond:
        got = {s: harness.trajectories.get(s) for s in stamps}
    latencies, per_frame, fallbacks, dropped = [], [], 0, 0
    reasons: dict[str, int] = {}
    for s in stamps:
        entry = got[s]
        if entry is None:
            dropped += 1
            per_frame.append(None)
        elif entry[1]:
            fallbacks += 1
            reasons[entry[2]] = reasons.get(entry[2], 0) + 1
            per_frame.append(None)
        else:
            latencies.append((entry[0] - s) * 1e-6)
            per_frame.append(round((entry[0] - s) * 1e-6, 3))
    received = [got[s][0] for s in stamps if got[s] is not None and not got[s][1]]
    nodes, node_latency = node_times.stop()
    synced = None
    if before.get("sensor_sync") is not None and after.get("sensor_sync") is not None:
        synced = int(after["sensor_sync"]) - int(before["sensor_sync"])
    result: dict[str, Any] = {
        "rate_hz": rate, "frames": len(stamps), "model_trajectories": len(latencies), "fallbacks": fallbacks,
        "fallback_reasons": reasons, "dropped": dropped, "synchronized": synced,
        "dropped_synchronized": (max(0, synced - len(latencies)) if synced is not None else None),
        "late_publications": late, "latency_ms": stats_ms(latencies), "nodes_processing_ms": nodes,
        "nodes_output_latency_ms": node_latency,
        "output_hz": (len(latencies) / publish_span_s * (len(stamps) - 1) / len(stamps)) if publish_span_s > 0 and len(stamps) > 1 else None,
        "receive_span_hz": ((len(received) - 1) / ((max(received) - min(received)) * 1e-9)
                            if len(received) > 1 and max(received) > min(received) else None),
        "per_frame_ms": per_frame, "cpu": cpu, "counters_before": before, "counters_after": after,
    }
    if bare is not None:
        result["ratio_vs_bare"] = _ratios(result, bare)
    if bare_parallel is not None:
        result["ratio_vs_bare_parallel"] = _ratios(result, bare_parallel)
    return result


def _idle_drain_s(rate: float, bare: dict | None) -> float:
    p99 = ((bare or {}).get("latency_ms") or {}).get("p99_ms") or 0.0
    return max(3.0, 3.0 / rate, 4.0 * p99 / 1e3)


def _drain(harness: Harness, stamps: list[int], idle_s: float, cap_s: float = 180.0) -> None:
    """Wait until every stamp has a trajectory, or none came for ``idle_s`` (a backed-up
    graph keeps delivering: those frames count, they are late, not dropped)."""
    start = last_progress = time.monotonic()
    last = -1
    while time.monotonic() - start < cap_s:
        with harness._cond:
            done = sum(1 for s in stamps if s in harness.trajectories)
        if done == len(stamps):
            return
        now = time.monotonic()
        if done != last:
            last, last_progress = done, now
        elif now - last_progress > idle_s:
            return
        time.sleep(0.05)


def _ratios(run: dict, bare: dict) -> dict[str, Any]:
    g, b = run.get("latency_ms", {}), bare.get("latency_ms", {})
    per_frame = [x / y for x, y in zip(run.get("per_frame_ms", []), bare.get("per_frame_ms", []))
                 if x is not None and y is not None and y > 0]
    return {"median": _ratio(g.get("median_ms"), b.get("median_ms")), "p99": _ratio(g.get("p99_ms"), b.get("p99_ms")),
            "per_frame_median": float(np.median(per_frame)) if per_frame else None,
            "overhead_median_ms": (g["median_ms"] - b["median_ms"]) if "median_ms" in g and "median_ms" in b else None}


def _graph_options(config: str, ckpt_dir: Path, backend: str, threads: int, min_rate: float,
                   extra: dict[str, dict[str, Any]] | None = None):
    from latentvla_ros.ros.graph import GraphOptions
    from latentvla_ros.ros.topology import graph_nodes

    model = {"checkpoint": str(ckpt_dir), "preset": config, "torch_threads": threads, "backend": backend}
    overrides = {
        "sensor_sync": {"camera_names": [CAMERA_NAME]},
        "bev_features": {**model, "checkpoint": str(ckpt_dir / "bev_backbone")},
        "latent_reasoner": {**model, "checkpoint": str(ckpt_dir / "student")},
        # the watchdog must not call a 2 Hz input silent: 2.5 input periods
        "trajectory_planner": {**model, "checkpoint": str(ckpt_dir / "planner"),
                               "input_timeout_s": max(0.5, 2.5 / min_rate)},
    }
    for node, params in (extra or {}).items():
        overrides.setdefault(node, {}).update(params)
    return GraphOptions(nodes=graph_nodes([CAMERA_NAME]), overrides=overrides, log_level="warn")


@contextlib.contextmanager
def _std_to(path: Path):
    """Point fds 1 and 2 at ``path`` (children spawned inside inherit it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _new_context(domain_id: int):
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    return ctx


def _shutdown_context(ctx) -> None:
    import rclpy

    with contextlib.suppress(Exception):
        if ctx.ok():
            rclpy.shutdown(context=ctx)


def run_config_graph(opts: BenchOptions, data: ConfigData, report: Callable[[str], None]) -> dict[str, Any]:
    """bare / composed / processes runs of one config, every backend and rate."""
    from latentvla_ros.core.pipeline import LatentVLAAgent

    config = data.config
    rates = opts.rates[config]
    n = opts.frames[config]
    warm = max(1, opts.warmup)
    frames = data.frames[warm:warm + n]
    warm_frames = data.frames[:warm]
    msgs = data.msgs[warm:warm + n]
    warm_msgs = data.msgs[:warm]
    runs: dict[str, Any] = {}
    for bi, backend in enumerate(opts.backends):
        ctx = nodes = None
        try:
            if "composed" in opts.modes:
                from latentvla_ros.ros.graph import create_composed_nodes

                ctx = _new_context(opts.domain_id)
                options = _graph_options(config, data.checkpoint_dir, backend, opts.threads[config], min(rates), opts.overrides)
                nodes = create_composed_nodes(options, context=ctx)
                by_name = {nd.get_name(): nd for nd in nodes}
                agent = LatentVLAAgent(by_name["bev_features"].extractor, by_name["latent_reasoner"].reasoner,
                                       by_name["trajectory_planner"].planner)
                agent_source = "the composed nodes' runtime objects"
            else:
                agent = build_agent(data.checkpoint_dir, config, backend, opts.threads[config])
                agent_source = "built like ros.node_base.load_model_runtime"
            bare = run_bare(agent, frames, warm_frames, rates[0])
            bare.update(backend=backend, agent=agent_source, model_id=agent.model_id)
            runs[f"bare[{backend}]"] = bare
            report(f"  {config} bare[{backend}] @ {rates[0]:g} Hz: median {bare['latency_ms'].get('median_ms', float('nan')):.1f} ms")
            bare_parallel = None
            if agent.reasoner is not None and agent.planner.needs_plan:
                agent.concurrent = True  # the graph's own DAG without ROS: student beside the BEV backbone
                try:
                    bare_parallel = run_bare(agent, frames, warm_frames[:2], rates[0])
                finally:
                    agent.close()
                    agent.concurrent = False
                bare_parallel.update(backend=backend, agent=agent_source, model_id=agent.model_id)
                runs[f"bare-parallel[{backend}]"] = bare_parallel
                report(f"  {config} bare-parallel[{backend}] @ {rates[0]:g} Hz: median "
                       f"{bare_parallel['latency_ms'].get('median_ms', float('nan')):.1f} ms")
            if nodes is not None:
                variants = opts.executors if bi == 0 else opts.executors[:1]
                for variant in variants:
                    for rate in rates:
                        key = f"{_composed_name(variant)}[{backend}]@{rate:g}Hz"
                        try:
                            first = rate == rates[0]
                            run = run_composed(opts, nodes, ctx, variant, rate, warm_msgs, msgs,
                                               bare if first else None, bare_parallel if first else None)
                            run.update(backend=backend)
                        except Exception as exc:  # noqa: BLE001 - record and go on with the next run
                            run = {"mode": "composed", "executor": variant, "backend": backend, "rate_hz": rate,
                                   "error": f"{type(exc).__name__}: {exc}"}
                        runs[key] = run
                        report(_run_line(config, key, run))
                if "instant" in opts.modes and bi == 0:
                    runs.update(run_instant(opts, config, agent, nodes, ctx, backend, rates[0], frames, warm_frames,
                                            warm_msgs, msgs, bare, report))
                # the reference again, after the graph runs: how much the machine drifted meanwhile
                k = min(len(frames), 30)
                again = run_bare(agent, frames[:k], [], rates[0])
                bare["recheck_after_graph"] = {"frames": k, "latency_ms": again["latency_ms"],
                                               "cpu": again["cpu"]}
                first = stats_ms(bare["per_frame_ms"][:k]).get("median_ms")
                bare["recheck_after_graph"]["drift_median"] = _ratio(again["latency_ms"].get("median_ms"), first)
        finally:
            agent = None
            if nodes:
                for nd in nodes:
                    with contextlib.suppress(Exception):
                        nd.destroy_node()
            nodes = None
            if ctx is not None:
                _shutdown_context(ctx)
            gc.collect()
        if "processes" in opts.modes and bi == 0:
            for rate in rates:
                key = f"processes[{backend}]@{rate:g}Hz"
                try:
                    first = rate == rates[0]
                    run = run_processes(opts, data, backend, rate, min(rates), msgs, warm_msgs,
                                        runs.get(f"bare[{backend}]") if first else None,
                                        runs.get(f"bare-parallel[{backend}]") if first else None)
                except Exception as exc:  # noqa: BLE001
                    run = {"mode": "processes", "backend": backend, "rate_hz": rate, "error": f"{type(exc).__name__}: {exc}"}
                runs[key] = run
                report(_run_line(config, key, run))
    return runs


class ReplayedForwardPass:
    """Stands in for a pipeline stage's model call in the ``instant`` runs: the first call
    runs the real model, every later one returns copies of those outputs at once. A graph
    run with these measures everything but the forward passes."""

    def __init__(self, runner: Callable[..., list]):
        self.runner = runner
        self.outputs: list | None = None

    def __call__(self, **arrays: Any) -> list:
        if self.outputs is None:
            self.outputs = self.runner(**arrays)
        return [np.array(o, copy=True) for o in self.outputs]


@contextlib.contextmanager
def instant_forward_passes(stages: list):
    """Replace the model call of each pipeline stage (``_Stage._run``) by a ``ReplayedForwardPass``."""
    saved = [(stage, stage._run) for stage in stages]
    try:
        for stage, runner in saved:
            stage._run = ReplayedForwardPass(runner)
        yield
    finally:
        for stage, runner in saved:
            stage._run = runner


def run_instant(opts: BenchOptions, config: str, agent, nodes: list, ctx, backend: str, rate: float, frames: list,
                warm_frames: list, warm_msgs: list, msgs: list, bare: dict, report: Callable[[str], None]) -> dict[str, Any]:
    """The bare chain and the shipped composed graph with instant forward passes (the
    composed nodes' own runtime objects, so both change together). The composed run's
    ratio is against the bare chain with the real models: a lower bound of composed / bare."""
    runs: dict[str, Any] = {}
    stages = [s for s in (agent.bev, agent.reasoner, agent.planner) if s is not None]
    bare_key, key = f"bare-instant[{backend}]", f"composed-instant[{backend}]@{rate:g}Hz"
    with instant_forward_passes(stages):
        try:
            runs[bare_key] = run_bare(agent, frames, warm_frames[:2], rate)
            runs[bare_key].update(backend=backend, instant_forward_passes=True)
            report(f"  {config} {bare_key}: median {runs[bare_key]['latency_ms'].get('median_ms', float('nan')):.1f} ms")
            run = run_composed(opts, nodes, ctx, "events", rate, warm_msgs, msgs, bare)
            run.update(backend=backend, instant_forward_passes=True, bare_run=bare_key)
        except Exception as exc:  # noqa: BLE001 - record and go on
            run = {"mode": "composed", "executor": "events", "backend": backend, "rate_hz": rate,
                   "instant_forward_passes": True, "error": f"{type(exc).__name__}: {exc}"}
    runs[key] = run
    report(_run_line(config, key, run))
    return runs


def _composed_name(variant: str) -> str:
    return "composed" if variant == "events" else f"composed-{variant}"


def run_composed(opts: BenchOptions, nodes: list, ctx, variant: str, rate: float, warm_msgs: list, msgs: list,
                 bare: dict | None, bare_parallel: dict | None = None) -> dict[str, Any]:
    from latentvla_ros.ros.executors import GraphExecutor

    by_name = {nd.get_name(): nd for nd in nodes}
    per_node = variant.endswith("-per-node")
    over_dds = variant.endswith("-dds")
    bus = nodes[0].intra_process
    bus.enabled = not over_dds
    spinner = GraphExecutor(context=ctx, kind=variant.removesuffix("-per-node").removesuffix("-dds"),
                            layout="per_node" if per_node else "grouped").add(*nodes).start()
    harness = Harness(ctx)
    sync_node = by_name["sensor_sync"]
    try:
        _wait(lambda: harness.connected(), 30.0)
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s)
        counters = lambda: {"sensor_sync": sync_node.stats.snapshot()["published"].get("frame", 0)}  # noqa: E731
        run = measure_graph(harness, msgs, rate, bare, counters, lambda: [], drain_s=_idle_drain_s(rate, bare),
                            node_times=InProcessNodeTimes(nodes), bare_parallel=bare_parallel)
        run.update(mode="composed", executor=variant, executor_threads=spinner.thread_layout(),
                   intra_process=bus.enabled)
        run["node_stats"] = {nd.get_name(): _node_snapshot(nd) for nd in nodes}
        return run
    finally:
        harness.close()
        spinner.stop()  # detaches the nodes: the next variant spins them again
        bus.enabled = True


def _node_snapshot(node) -> dict[str, Any]:
    snap = node.stats.snapshot()
    return {k: snap.get(k) for k in ("received", "published", "dropped", "dropped_total")}


def run_processes(opts: BenchOptions, data: ConfigData, backend: str, rate: float, min_rate: float, msgs: list,
                  warm_msgs: list, bare: dict | None, bare_parallel: dict | None = None) -> dict[str, Any]:
    from latentvla_ros.ros.graph import apply_transport_env, spawn_processes, stop_processes

    options = _graph_options(data.config, data.checkpoint_dir, backend, opts.threads[data.config], min_rate, opts.overrides)
    env = apply_transport_env(dict(os.environ))
    env["ROS_DOMAIN_ID"] = str(opts.domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    logfile = opts.out / "logs" / f"processes_{data.config}_{backend}_{rate:g}Hz.log"
    ctx = _new_context(opts.domain_id)
    harness = None
    procs: list = []
    try:
        harness = Harness(ctx)
        with _std_to(logfile):
            procs = spawn_processes(options, env=env)
        alive = lambda: all(p.poll() is None for p in procs)  # noqa: E731
        started = time.monotonic()
        if not _wait(lambda: harness.connected(), opts.startup_timeout_s, 0.2, alive):
            raise RuntimeError(f"graph processes did not come up (see {logfile})")
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s, alive)
        startup_s = time.monotonic() - started

        def counters() -> dict:
            # diagnostics come once a second: wait for a fresh one
            t = time.time_ns()
            _wait(lambda: harness.diagnostics.get("sensor_sync", (0, {}))[0] > t, 3.0)
            entry = harness.diagnostics.get("sensor_sync")
            return {"sensor_sync": int(entry[1].get("published/frame", 0)) if entry else None}

        names = {p.pid: spec.name for p, spec in zip(procs, options.nodes)}
        run = measure_graph(harness, msgs, rate, bare, counters, lambda: [p.pid for p in procs],
                            drain_s=_idle_drain_s(rate, bare), node_times=DiagnosticsNodeTimes(harness),
                            process_names=names, bare_parallel=bare_parallel)
        run.update(mode="processes", backend=backend, startup_s=startup_s, log=str(logfile),
                   node_diagnostics={k: v[1] for k, v in harness.diagnostics.items()})
        return run
    finally:
        if harness is not None:
            harness.close()
        if procs:
            codes = stop_processes(procs, timeout_s=10.0)
            log.debug("graph processes exited with %s", codes)
        _shutdown_context(ctx)


def _run_line(config: str, key: str, run: dict) -> str:
    if "error" in run:
        return f"  {config} {key}: ERROR {run['error']}"
    lat = run.get("latency_ms", {})
    ratio = run.get("ratio_vs_bare") or {}
    fmt = lambda v: "  n/a" if v is None else f"{v:5.2f}"  # noqa: E731
    return (f"  {config} {key}: median {lat.get('median_ms', float('nan')):.1f} ms, p99 {lat.get('p99_ms', float('nan')):.1f} ms, "
            f"ratio median {fmt(ratio.get('median'))} p99 {fmt(ratio.get('p99'))} "
            f"(vs bare-parallel {fmt((run.get('ratio_vs_bare_parallel') or {}).get('median'))}), dropped {run.get('dropped')}, "
            f"fallbacks {run.get('fallbacks')}, foreign load {run.get('cpu', {}).get('foreign_cores', float('nan')):.2f} cores")


# ============================================================================ ONNX
def onnx_section(opts: BenchOptions, data: ConfigData, runs: int) -> dict[str, Any]:
    """Per model: export, max |torch - onnxruntime| on a real frame's inputs, median latencies."""
    from latentvla_ros.core.pipeline import BevFeatureExtractor, LatentReasoner, TrajectoryPlanner, _spec

    frame = data.frames[min(len(data.frames) - 1, max(1, opts.warmup))]
    onnx_dir = opts.out / "onnx" / data.config
    stages = {"bev_backbone": BevFeatureExtractor, "student": LatentReasoner, "planner": TrajectoryPlanner}
    torch_stages, onnx_stages, export_s = {}, {}, {}
    threads = opts.threads[data.config]
    for kind, cls in stages.items():
        torch_stages[kind] = cls(checkpoint_dir=data.checkpoint_dir / kind, torch_threads=threads, backend="torch")
        path = onnx_dir / f"{kind}.onnx"
        if path.exists():
            path.unlink()  # time a fresh export
        t = time.perf_counter()
        onnx_stages[kind] = cls(checkpoint_dir=data.checkpoint_dir / kind, torch_threads=threads, backend="onnx",
                                onnx_path=path)
        export_s[kind] = time.perf_counter() - t
    bev = torch_stages["bev_backbone"].extract(frame)
    plan = torch_stages["student"].reason(frame)
    context = np.concatenate([plan.visual_embeddings, plan.action_embeddings], axis=0)[None].astype(np.float32)
    inputs = {
        "bev_backbone": torch_stages["bev_backbone"].features(frame),
        "student": torch_stages["student"].features(frame),
        "planner": {"bev_tokens": bev.tokens[None].astype(np.float32), "ego_status": bev.ego_status[None].astype(np.float32),
                    **({"context": context} if torch_stages["planner"].needs_plan else {})},
    }
    out: dict[str, Any] = {"tolerance": f"max|torch - onnxruntime| <= {ONNX_ATOL:g} + {ONNX_RTOL:g} * max|torch| per output",
                           "threads": threads, "runs": runs}
    for kind in stages:
        ts, os_ = torch_stages[kind], onnx_stages[kind]
        ref, got = ts._run(**inputs[kind]), os_._run(**inputs[kind])
        outputs = {}
        ok = True
        for name, a, b in zip(_spec(kind).outputs, ref, got):
            diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            scale = float(np.max(np.abs(a)))
            within = diff <= ONNX_ATOL + ONNX_RTOL * scale
            ok &= within
            outputs[name] = {"max_abs_diff": diff, "max_abs_torch": scale, "within_tolerance": bool(within)}
        times = {}
        for label, st in (("torch", ts), ("onnx", os_)):
            for _ in range(2):
                st._run(**inputs[kind])
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                st._run(**inputs[kind])
                samples.append((time.perf_counter() - t) * 1e3)
            times[label] = stats_ms(samples)
        params = sum(p.numel() for p in ts.model.parameters())
        out[kind] = {"outputs": outputs, "within_tolerance": bool(ok), "torch_ms": times["torch"], "onnx_ms": times["onnx"],
                     "speedup_onnx_over_torch": _ratio(times["torch"].get("median_ms"), times["onnx"].get("median_ms")),
                     "export_s": export_s[kind], "onnx_file": str(onnx_dir / f"{kind}.onnx"), "parameters": int(params)}
    del torch_stages, onnx_stages
    gc.collect()
    return out


# ============================================================================ teacher vs student
def _teacher_param_model(text: dict, vision: dict, top: dict) -> int:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    qcfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **top)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qcfg)
    return int(sum(p.numel() for p in model.parameters()))


def _scaled_arch(text: dict, vision: dict, layers: int, depth: int) -> tuple[dict, dict]:
    text = {**text, "num_hidden_layers": layers}
    full = [i for i in vision.get("fullatt_block_indexes", []) if i < depth] or [depth - 1]
    vision = {**vision, "depth": depth, "fullatt_block_indexes": full}
    return text, vision


def choose_teacher(mem_budget_gb: float, quick: bool) -> tuple[Any, dict[str, Any]]:
    """The largest Qwen2.5-VL-3B-shaped teacher (fp32) whose weights fit ``mem_budget_gb``.

    Width, heads, vocabulary and vision tower stay those of Qwen2.5-VL-3B; if the full
    model does not fit, text layers and vision blocks are cut by the same fraction.
    """
    from latentvla_ros.models.configuration_teacher import TeacherConfig

    if quick:
        return TeacherConfig(preset="tiny"), {"name": "tiny (quick run)", "scaled": False}
    base = TeacherConfig(preset="qwen2.5-vl-3b", dtype="float32")
    text, vision, top = base.qwen_config_dicts()
    top = {k: v for k, v in top.items()}
    full_layers, full_depth = int(text["num_hidden_layers"]), int(vision["depth"])
    full_params = _teacher_param_model(text, vision, top)
    p11 = _teacher_param_model(*_scaled_arch(text, vision, 1, 1), top)
    per_text = _teacher_param_model(*_scaled_arch(text, vision, 2, 1), top) - p11
    per_vision = _teacher_param_model(*_scaled_arch(text, vision, 1, 2), top) - p11
    fixed = p11 - per_text - per_vision
    overhead_gb = 1.5  # activations, KV cache, tokenizer, allocator slack
    info = {"full_params": full_params, "mem_budget_gb": mem_budget_gb, "dtype": "float32"}
    for frac in np.linspace(1.0, 0.05, 20):
        layers, depth = max(1, round(full_layers * frac)), max(1, round(full_depth * frac))
        params = fixed + layers * per_text + depth * per_vision
        if params * 4 / 1024**3 + overhead_gb <= mem_budget_gb:
            arch_text, arch_vision = _scaled_arch(text, vision, layers, depth)
            scaled = layers != full_layers or depth != full_depth
            overrides = {"text": {"num_hidden_layers": layers},
                         "vision": {"depth": depth, "fullatt_block_indexes": arch_vision["fullatt_block_indexes"]}}
            cfg = TeacherConfig(preset="qwen2.5-vl-3b", dtype="float32", arch_overrides=overrides if scaled else None)
            info.update(name=("Qwen2.5-VL-3B architecture" if not scaled else
                              f"Qwen2.5-VL-3B widths with {layers}/{full_layers} text layers and {depth}/{full_depth} vision blocks"),
                        scaled=scaled, text_layers=layers, vision_depth=depth, estimated_params=int(params),
                        layer_fraction=layers / full_layers)
            return cfg, info
    raise MemoryError(f"not even a 1-layer Qwen2.5-VL-3B-wide teacher fits in {mem_budget_gb:.1f} GB")


def teacher_section(opts: BenchOptions, data: ConfigData) -> dict[str, Any]:
    import torch

    from latentvla_ros.core.features import stitch_cameras
    from latentvla_ros.core.pipeline import LatentReasoner, usable_cores
    from latentvla_ros.models.modeling_teacher import LatentTeacher

    threads = usable_cores()  # the same hardware for both: every core
    torch.set_num_threads(threads)
    frame = data.frames[min(len(data.frames) - 1, max(1, opts.warmup))]
    student = LatentReasoner(checkpoint_dir=data.checkpoint_dir / "student", torch_threads=threads)
    student.reason(frame)
    s_times = []
    for _ in range(10 if not opts.quick else 3):
        t = time.perf_counter()
        student.reason(frame)
        s_times.append((time.perf_counter() - t) * 1e3)
    s_params = sum(p.numel() for p in student.model.parameters())
    del student
    gc.collect()
    avail = _meminfo_gb()
    budget = opts.teacher_mem_gb if opts.teacher_mem_gb > 0 else max(0.0, avail - 4.0)
    cfg, info = choose_teacher(budget, opts.quick)
    t = time.perf_counter()
    teacher = LatentTeacher.build(cfg).eval()
    build_s = time.perf_counter() - t
    t_params = teacher.num_parameters()

    def run_teacher():
        image = stitch_cameras(frame.cameras, cfg.image_size)
        images = torch.from_numpy(image)[None]
        ego = torch.from_numpy(frame.ego.status_vector())[None]
        with torch.inference_mode():
            return teacher.predict(images, ego)

    run_teacher()
    t_times = []
    for _ in range(opts.teacher_runs):
        t = time.perf_counter()
        run_teacher()
        t_times.append((time.perf_counter() - t) * 1e3)
    prompt_len = int(teacher.prepare_inputs(torch.zeros(1, 3, *cfg.image_size), torch.zeros(1, 8))["input_ids"].shape[1])
    del teacher
    gc.collect()
    s_stats, t_stats = stats_ms(s_times), stats_ms(t_times)
    result = {
        "student": {"config": f"{data.config} student", "checkpoint": str(data.checkpoint_dir / "student"),
                    "parameters": int(s_params), "latency_ms": s_stats,
                    "input": f"camera {list(frame.cameras[0].image.shape)} -> stitched/resized to the student's input"},
        "teacher": {**info, "parameters": int(t_params), "build_s": build_s, "latency_ms": t_stats,
                    "image_size": list(cfg.image_size), "image_tokens": cfg.num_image_tokens, "prompt_tokens": prompt_len,
                    "decode_steps": cfg.num_latent_tokens, "mem_available_gb": avail,
                    "what": "LatentTeacher.predict: tokenise + patchify + prefill + 12 greedy steps with KV cache"},
        "speedup_student_over_teacher": _ratio(t_stats.get("median_ms"), s_stats.get("median_ms")),
    }
    if info.get("scaled"):
        frac = info["layer_fraction"]
        result["teacher"]["note"] = (f"scaled to fit: {frac:.0%} of the layers; the full 3B teacher would take about "
                                     f"1/{frac:.2f} of this latency (lower bound on the speedup)")
    return result


# ============================================================================ conversions
def conversions_section(data: ConfigData, repeats: int = 50) -> dict[str, Any]:
    """Message conversion costs of the graph's messages and zero-copy checks."""
    from rclpy.serialization import deserialize_message, serialize_message

    from latentvla_ros.core.pipeline import LatentReasoner
    from latentvla_ros.msg import SensorFrame
    from latentvla_ros.ros.conversions import (
        bev_to_msg, image_to_numpy, make_header, msg_to_bev, msg_to_plan, numpy_to_image, plan_to_msg,
        pointcloud2_to_xyzi, sensor_frame_to_core, trajectory_to_msg, xyzi_to_pointcloud2,
    )
    from latentvla_ros.core.types import Trajectory

    info, cloud, odom, image = data.msgs[0]
    frame = data.frames[0]
    cam = frame.cameras[0].image
    sf = SensorFrame(header=make_header(1, "base_link"), images=[image], camera_infos=[info], lidar=cloud, odometry=odom)
    from latentvla_ros.core.pipeline import BevFeatureExtractor

    bev_stage = BevFeatureExtractor(checkpoint_dir=data.checkpoint_dir / "bev_backbone")
    student = LatentReasoner(checkpoint_dir=data.checkpoint_dir / "student")
    bev = bev_stage.extract(frame)
    plan = student.reason(frame)
    del bev_stage, student
    traj = Trajectory(poses=np.cumsum(np.ones((8, 3)), axis=0) * 0.1, stamp_ns=1, model_id="bench")
    bev_msg, plan_msg = bev_to_msg(bev, "base_link"), plan_to_msg(plan, "base_link")
    traj_msg = trajectory_to_msg(traj, "base_link")
    cases: dict[str, Callable[[], Any]] = {
        "numpy_to_image": lambda: numpy_to_image(cam, 1, "cam"),
        "image_to_numpy": lambda: image_to_numpy(image),
        "xyzi_to_pointcloud2": lambda: xyzi_to_pointcloud2(frame.lidar_points, 1, "base_link"),
        "pointcloud2_to_xyzi": lambda: pointcloud2_to_xyzi(cloud),
        "sensor_frame_to_core": lambda: sensor_frame_to_core(sf),
        "bev_to_msg": lambda: bev_to_msg(bev, "base_link"),
        "msg_to_bev": lambda: msg_to_bev(bev_msg),
        "plan_to_msg": lambda: plan_to_msg(plan, "base_link"),
        "msg_to_plan": lambda: msg_to_plan(plan_msg),
        "trajectory_to_msg": lambda: trajectory_to_msg(traj, "base_link"),
        "serialize SensorFrame": lambda: serialize_message(sf),
        "serialize BevFeatures": lambda: serialize_message(bev_msg),
        "serialize LatentActionPlan": lambda: serialize_message(plan_msg),
    }
    raw_sf = serialize_message(sf)
    cases["deserialize SensorFrame"] = lambda: deserialize_message(raw_sf, SensorFrame)
    out: dict[str, Any] = {"sizes_bytes": {"Image.data": len(image.data), "PointCloud2.data": len(cloud.data),
                                           "SensorFrame (CDR)": len(raw_sf), "BevFeatures (CDR)": len(serialize_message(bev_msg)),
                                           "LatentActionPlan (CDR)": len(serialize_message(plan_msg)),
                                           "PlannedTrajectory (CDR)": len(serialize_message(traj_msg))}}
    timing = {}
    for name, fn in cases.items():
        fn()
        samples = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
        timing[name] = stats_ms(samples)
    out["time_ms"] = timing
    view = image_to_numpy(image)
    core = sensor_frame_to_core(sf)
    back = msg_to_bev(bev_msg)
    out["zero_copy"] = {
        "image_to_numpy shares the message buffer": bool(np.shares_memory(view, np.frombuffer(image.data, np.uint8))),
        "sensor_frame_to_core image shares the message buffer": bool(
            np.shares_memory(core.cameras[0].image, np.frombuffer(image.data, np.uint8))),
        "pointcloud2_to_xyzi shares the message buffer": bool(
            np.shares_memory(pointcloud2_to_xyzi(cloud), np.frombuffer(cloud.data, np.uint8))),
        "msg_to_bev tokens share the message buffer": bool(np.shares_memory(back.tokens, np.frombuffer(bev_msg.tokens, np.float32))),
    }
    return out


# ============================================================================ report
def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def add(name, value, target, met):
        out.append({"target": name, "value": value, "goal": target, "met": (bool(met) if value is not None else None)})

    for config, cres in results.get("configs", {}).items():
        runs = cres.get("runs", {})
        rate = cres.get("rates_hz", [None])[0]
        if not rate:
            continue
        for backend in BACKENDS:  # every backend measured: the nodes ship with onnx (config/*.param.yaml)
            comp = runs.get(f"composed[{backend}]@{rate:g}Hz", {})
            proc = runs.get(f"processes[{backend}]@{rate:g}Hz", {})
            tag = f"{config}[{backend}]"
            if comp.get("ratio_vs_bare"):
                r = comp["ratio_vs_bare"]
                add(f"{tag}: composed / bare, median", r.get("median"), f"<= {TARGETS['composed_median']}",
                    r.get("median") is not None and r["median"] <= TARGETS["composed_median"])
                add(f"{tag}: composed / bare, p99", r.get("p99"), f"<= {TARGETS['composed_p99']}",
                    r.get("p99") is not None and r["p99"] <= TARGETS["composed_p99"])
            if proc.get("ratio_vs_bare"):
                r = proc["ratio_vs_bare"]
                add(f"{tag}: processes / bare, median", r.get("median"), f"<= {TARGETS['processes_median']}",
                    r.get("median") is not None and r["median"] <= TARGETS["processes_median"])
            for label, run in (("composed", comp), ("processes", proc)):
                if "dropped" in run:
                    lost = run["dropped"] + run.get("fallbacks", 0)
                    add(f"{tag}: input frames without a model trajectory at {rate:g} Hz ({label})", lost, "0", lost == 0)
                    if run.get("dropped_synchronized") is not None:
                        add(f"{tag}: dropped synchronized frames at {rate:g} Hz ({label})", run["dropped_synchronized"],
                            "0", run["dropped_synchronized"] == 0)
        onnx = cres.get("onnx") or {}
        for kind in MODEL_KINDS:
            if kind in onnx:
                worst = max(o["max_abs_diff"] for o in onnx[kind]["outputs"].values())
                add(f"{config}: ONNX {kind} matches torch ({onnx['tolerance']})", worst, "within tolerance",
                    onnx[kind]["within_tolerance"])
    tvs = results.get("teacher_vs_student")
    if tvs and tvs.get("speedup_student_over_teacher") is not None:
        v = tvs["speedup_student_over_teacher"]
        add("teacher latency / student latency (same frame)", v, f">= {TARGETS['teacher_speedup']}", v >= TARGETS["teacher_speedup"])
    return out


def floor_lines(results: dict[str, Any]) -> list[str]:
    """The ``instant`` runs read against the targets: what the composed graph costs besides
    the forward passes, and the share of the bare chain that leaves for the models."""
    lines = []
    for config, cres in results.get("configs", {}).items():
        runs = cres.get("runs", {})
        for run in runs.values():
            if not run.get("instant_forward_passes") or run.get("mode") != "composed" or "error" in run:
                continue
            backend = run.get("backend")
            g0 = run.get("latency_ms", {}).get("median_ms")
            g0_p99 = run.get("latency_ms", {}).get("p99_ms")
            b0 = runs.get(run.get("bare_run", ""), {}).get("latency_ms", {}).get("median_ms")
            bare = runs.get(f"bare[{backend}]", {})
            b = bare.get("latency_ms", {}).get("median_ms")
            stages = bare.get("stages_ms", {})
            calls = {k: stages.get(k, {}).get("median_ms") for k in ("bev_backbone", "student", "planner")}
            if None in (g0, b0, b) or calls["bev_backbone"] is None or calls["planner"] is None:
                continue
            limit = TARGETS["composed_median"]
            # the best the graph's parallel branches allow: the student entirely hidden behind the BEV backbone
            critical = max(calls["bev_backbone"], calls["student"] or 0.0) + calls["planner"]
            bound = g0 - b0 + critical
            lines.append(
                f"{config}[{backend}]: with instant forward passes the composed graph takes {g0:.1f} ms median (p99 "
                f"{_fmt(g0_p99)}) from sensor stamp to trajectory received, the bare chain {b0:.1f} ms: the graph costs "
                f"{g0 - b0:.1f} ms per frame besides the models. The composed target (<= {limit} x the bare chain's "
                f"{b:.1f} ms = {limit * b:.1f} ms) leaves {(limit - 1) * b:.1f} ms for that. With the models' "
                f"critical path at its shortest (the student wholly beside the BEV backbone: max({calls['bev_backbone']:.1f}, "
                f"{_fmt(calls['student'])}) + {calls['planner']:.1f} ms of model calls) the graph would still need about "
                f"{bound:.1f} ms = {bound / b:.2f} x the bare chain"
                + (": the target is out of reach on this machine with this graph." if bound > limit * b else "."))
    return lines


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if nd >= 3 and v and abs(v) < 0.5 * 10.0 ** -nd:  # target values: a tolerance check's 5e-06 must show
            return f"{v:.1e}"
        return f"{v:.{nd}f}"
    return str(v)


def latency_table(results: dict[str, Any]) -> list[str]:
    head = ["config", "run", "input Hz", "median ms", "p99 ms", "ratio median", "ratio p99", "per-frame ratio",
            "vs bare-parallel median / p99", "dropped", "fallbacks", "dropped sync", "output Hz", "foreign load (cores)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, cres in results.get("configs", {}).items():
        for key, run in cres.get("runs", {}).items():
            if "error" in run:
                rows.append(f"| {config} | {key} | {_fmt(run.get('rate_hz'), 0)} | error: {run['error']} ||||||||||")
                continue
            lat = run.get("latency_ms", {})
            r = run.get("ratio_vs_bare") or {}
            rp = run.get("ratio_vs_bare_parallel")
            vs_par = f"{_fmt(rp.get('median'), 2)} / {_fmt(rp.get('p99'), 2)}" if rp else "n/a"
            out_hz = run.get("output_hz") if run.get("mode") != "bare" else run.get("max_throughput_hz")
            rows.append(
                f"| {config} | {key} | {_fmt(run.get('rate_hz'), 0)} | {_fmt(lat.get('median_ms'))} | {_fmt(lat.get('p99_ms'))} | "
                f"{_fmt(r.get('median'), 2)} | {_fmt(r.get('p99'), 2)} | {_fmt(r.get('per_frame_median'), 2)} | {vs_par} | "
                f"{_fmt(run.get('dropped', 0 if run.get('mode') == 'bare' else None))} | {_fmt(run.get('fallbacks'))} | "
                f"{_fmt(run.get('dropped_synchronized'))} | {_fmt(out_hz)}{' (max)' if run.get('mode') == 'bare' else ''} | "
                f"{_fmt(run.get('cpu', {}).get('foreign_cores'), 2)} |")
    return rows


def node_table(results: dict[str, Any]) -> list[str]:
    rows = ["| config | run | " + " | ".join(f"{n} median / p99 ms" for n in GRAPH_NODES) + " |",
            "|---|---|" + "---|" * len(GRAPH_NODES)]
    for config, cres in results.get("configs", {}).items():
        for key, run in cres.get("runs", {}).items():
            if run.get("mode") == "bare" and "stages_ms" in run:
                s = run["stages_ms"]
                cells = ["-", _pair(s["bev_backbone"]), _pair(s["student"]), _pair(s["planner"])]
                rows.append(f"| {config} | {key} (model calls) | " + " | ".join(cells) + " |")
            elif "nodes_processing_ms" in run:
                rows.append(f"| {config} | {key} | " + " | ".join(_pair(run["nodes_processing_ms"].get(n, {})) for n in GRAPH_NODES) + " |")
    return rows


def breakdown_table(results: dict[str, Any]) -> list[str]:
    """Median time from the sensor stamp until each node had published its output, and
    until the harness had the trajectory: where a graph's latency goes, next to the bare
    chain's model calls."""
    head = ["config", "run", "bare: BEV / student / planner model calls", *[f"{n} out" for n in GRAPH_NODES],
            "trajectory received"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, cres in results.get("configs", {}).items():
        runs = cres.get("runs", {})
        for key, run in runs.items():
            lat = run.get("nodes_output_latency_ms")
            if not lat:
                continue
            bare = runs.get(run.get("bare_run", f"bare[{run.get('backend')}]"), {}).get("stages_ms", {})
            calls = " / ".join(_fmt(bare.get(k, {}).get("median_ms")) for k in ("bev_backbone", "student", "planner"))
            cells = [_fmt(lat.get(n, {}).get("median_ms")) for n in GRAPH_NODES]
            rows.append(f"| {config} | {key} | {calls} | " + " | ".join(cells)
                        + f" | {_fmt(run.get('latency_ms', {}).get('median_ms'))} |")
    return rows


def cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU milliseconds per frame, by thread category (this process) and by node process."""
    rows = ["| config | run | CPU ms / frame (all our processes) | breakdown (ms / frame) |", "|---|---|---|---|"]
    for config, cres in results.get("configs", {}).items():
        for key, run in cres.get("runs", {}).items():
            cpu = run.get("cpu") or {}
            if "own_cpu_ms_per_frame" not in cpu:
                continue
            parts = []
            for proc, cats in (cpu.get("cpu_ms_per_frame_by_thread") or {}).items():
                cats = {k: v for k, v in cats.items() if v is not None and v >= 0.05}
                if not cats:
                    continue
                inner = ", ".join(f"{k} {v:.1f}" for k, v in cats.items())
                parts.append(f"{proc}: {inner}")
            rows.append(f"| {config} | {key} | {cpu['own_cpu_ms_per_frame']:.1f} | {'; '.join(parts)} |")
    return rows


def _pair(s: dict) -> str:
    if not s or not s.get("count"):
        return "n/a"
    return f"{s['median_ms']:.1f} / {s['p99_ms']:.1f}"


def onnx_table(results: dict[str, Any]) -> list[str]:
    head = ["config", "model", "params", "max abs diff (per output)", "within tol.", "torch median ms",
            "onnxruntime median ms", "speedup onnx/torch", "export s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, cres in results.get("configs", {}).items():
        onnx = cres.get("onnx") or {}
        for kind in MODEL_KINDS:
            if kind not in onnx:
                continue
            o = onnx[kind]
            diffs = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in o["outputs"].items())
            rows.append(f"| {config} | {kind} | {o['parameters'] / 1e6:.2f}M | {diffs} | {o['within_tolerance']} | "
                        f"{_fmt(o['torch_ms'].get('median_ms'), 2)} | {_fmt(o['onnx_ms'].get('median_ms'), 2)} | "
                        f"{_fmt(o['speedup_onnx_over_torch'], 2)} | {_fmt(o['export_s'])} |")
    return rows


def print_report(results: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    p = lambda s="": print(s, file=out)  # noqa: E731
    p(f"\nlatentvla bench ({results['meta']['date']}, {results['meta']['machine'].get('cpu', '?')}, "
      f"intra-op threads {_threads_text(results['meta']['threads'])})")
    for line in latency_table(results):
        p(line)
    p()
    for line in node_table(results):
        p(line)
    p()
    for line in breakdown_table(results):
        p(line)
    p()
    for line in cpu_table(results):
        p(line)
    if any(c.get("onnx") for c in results.get("configs", {}).values()):
        p()
        for line in onnx_table(results):
            p(line)
    tvs = results.get("teacher_vs_student")
    if tvs and "teacher" in tvs:
        p(f"\nteacher ({tvs['teacher'].get('name')}, {tvs['teacher']['parameters'] / 1e9:.2f}B params): median "
          f"{tvs['teacher']['latency_ms'].get('median_ms', float('nan')):.0f} ms; student ({tvs['student']['parameters'] / 1e6:.1f}M): "
          f"{tvs['student']['latency_ms'].get('median_ms', float('nan')):.1f} ms; speedup {_fmt(tvs.get('speedup_student_over_teacher'))}x")
    p("\ntargets:")
    for t in results.get("targets", []):
        mark = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        p(f"  [{mark}] {t['target']}: {_fmt(t['value'], 3)} (goal {t['goal']})")
    floor = floor_lines(results)
    if floor:
        p("\nwhat the graph costs besides the models (instant forward passes):")
        for line in floor:
            p(f"  {line}")


def _profile_text(machine: dict[str, Any]) -> str:
    """Which Fast DDS transport setting the run had (older results: the builtin LARGE_DATA)."""
    path = machine.get("fastdds_profiles_file")
    if path:
        return f"`{Path(path).name}`" + (f", FASTDDS_BUILTIN_TRANSPORTS={machine['fastdds_builtin_transports']}"
                                         if machine.get("fastdds_builtin_transports") else "")
    return f"none (FASTDDS_BUILTIN_TRANSPORTS={machine.get('fastdds_builtin_transports')})"


def _threads_text(threads: Any) -> str:
    if isinstance(threads, dict):
        return ", ".join(f"{c} {n}" for c, n in threads.items())
    return str(threads)


def write_docs(results: dict[str, Any], path: Path) -> Path:
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        "# Performance",
        "",
        "Every figure on this page was produced by one run of",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"on {meta['date']} (machine: {m.get('cpu', '?')}, {m.get('cores')} cores "
        f"({', '.join(m.get('simd', [])) or 'no AVX-512/AMX'}), {m.get('mem_total_gb')} GB RAM; "
        f"{m.get('platform')}; Python {m.get('python')}, torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
        f"{m.get('rclpy')}, {m.get('rmw')}, Fast DDS profile {_profile_text(m)}). "
        f"Intra-op threads of torch and onnxruntime in every model stage, graph nodes and bare chain alike: "
        f"{_threads_text(meta['threads'])}. Raw numbers: `{meta['out']}/bench.json`.",
        "",
        "Machine load: " + meta.get("load_note", ""),
        "",
        "## How it is measured",
        "",
        "- **bare**: `LatentVLAAgent.compute_trajectory` on the pipeline objects (BEV backbone, student, planner one "
        "after the other, no ROS), fed the measured frames at the input rate after a warm-up. With the composed graph in the "
        "run these are the composed nodes' own runtime objects. This is the reference of the targets.",
        "- **bare-parallel**: the same objects with `LatentVLAAgent(concurrent=True)`: the student in a worker thread "
        "beside the BEV backbone, then the planner: the graph's own dataflow without ROS. Graph / bare-parallel is what "
        "ROS itself costs; graph / bare also counts what the graph's parallel branches win back.",
        "- **composed**: all nodes in one process, spun as `latentvla run` spins them (`ros/executors.py`: rclpy "
        "`EventsExecutor`s; sensor_sync on one thread, each model node on its own; messages between the nodes handed over "
        "in-process, `ros/intra_process.py`), fed by a harness node in the same process "
        "that publishes image + camera info + LiDAR + odometry of pre-generated frames (a highway-env log) at the input "
        "rate with header stamps = wall clock at publication.",
        "- **composed-events-dds**: the same, with every message between the nodes sent over DDS "
        "(`latentvla run --no-intra-process`): what in-process delivery saves.",
        "- **composed-events-per-node** / **composed-single** / **composed-multi**: the same composed nodes with one "
        "EventsExecutor thread per node; on the shipped layout with `SingleThreadedExecutor`s (what `auto` picks on "
        "Humble/Jazzy, whose rclpy has no EventsExecutor); on one 4-thread `MultiThreadedExecutor` (what `latentvla "
        "run` used before): where executor overhead goes.",
        "- **processes**: the same nodes as separate processes (`ros/graph.py spawn_processes`, "
        "the shipped Fast DDS profile `config/fastdds/large_data.xml` in every process), harness in the benchmark process.",
        "- End-to-end latency = receive time of the frame's trajectory in the harness - sensor stamp. "
        "Ratio = graph latency / bare-chain latency on the same frames: ratio of the medians, of the p99s, and the "
        "median of per-frame ratios. In the graph `bev_features` and `latent_reasoner` run in parallel; the bare chain "
        "runs them one after the other, bare-parallel side by side.",
        "- Dropped = input frames without any trajectory; fallbacks = frames answered with a fallback trajectory; "
        "dropped sync = frames synchronized by `sensor_sync` without a model trajectory. Per-node times are what each "
        "node publishes as `~/debug/processing_time_ms` (model call + output conversion + publish) and "
        "`~/debug/pipeline_latency_ms`, read from the nodes' own statistics: in-process in composed runs, from their "
        "`/diagnostics` summary in processes runs (every frame the node processed, warm-up included). The harness "
        "subscribes only to the trajectory and `/diagnostics`: eight debug subscriptions more per frame would load "
        "the graph being measured.",
        "- **-instant** runs (`--modes ...,instant`): the bare chain and the composed graph (shipped executors) with "
        "every forward pass answered at once; see *What the graph costs besides the models*.",
        "- foreign load = cores used by processes other than the benchmark during the run (from `/proc`).",
        "",
        "## Inputs",
        "",
        *[f"- `{c}`: {r.get('frames')} measured frames (+ {meta.get('warmup')} warm-up) at {r.get('rates_hz')} Hz from "
          f"`{r.get('log')}` (camera {r.get('camera')}, median {r.get('lidar_points_median')} LiDAR points); weights: "
          f"{r.get('weights')} (`{r.get('checkpoints')}`)." for c, r in results.get("configs", {}).items()],
        "",
        "## End-to-end latency, ratios, drops",
        "",
        *latency_table(results),
        "",
        "## Per-node processing time",
        "",
        *node_table(results),
        "",
        "## Where the latency goes",
        "",
        "Median milliseconds from the sensor stamp until each node had published its output (its "
        "`~/debug/pipeline_latency_ms`) and until the harness had the trajectory; the bare chain's model calls for "
        "comparison. What is not model time is the ROS graph's: message (de)serialisation into Python objects (the "
        "sensor messages; in the `-dds` and `processes` runs also every message between the nodes), "
        "executor wake-ups, the GIL shared by every node of a process, the synchroniser and the conversions.",
        "",
        *breakdown_table(results),
        "",
        "## CPU per frame",
        "",
        "CPU time of the benchmark process (harness + composed graph) and of the node processes, per input frame, "
        "by thread: where the graph's overhead over the bare chain goes (see also the executor variants above).",
        "",
        *cpu_table(results),
        "",
    ]
    if any(c.get("onnx") for c in results.get("configs", {}).values()):
        tol = next(c["onnx"]["tolerance"] for c in results["configs"].values() if c.get("onnx"))
        lines += ["## ONNX export (onnxruntime vs torch)", "",
                  f"Inputs: a real frame's features. Tolerance: {tol}. Speedup = torch median / onnxruntime median "
                  "(model call only). Nodes pick the backend with the `backend` parameter (`torch` | `onnx`); graph runs "
                  "with `[onnx]` above use it.", "", *onnx_table(results), ""]
    tvs = results.get("teacher_vs_student")
    if tvs and "teacher" in tvs:
        t, s = tvs["teacher"], tvs["student"]
        lines += ["## Teacher vs student", "",
                  f"Same frame (camera {s['input']}); teacher = {t.get('name')} ({t['parameters'] / 1e9:.3f}B parameters, "
                  f"{t.get('dtype', 'float32')}, image {t['image_size']} -> {t['image_tokens']} image tokens, "
                  f"{t['prompt_tokens']}-token prompt, {t['decode_steps']} greedy steps with KV cache; memory budget "
                  f"{_fmt(t.get('mem_budget_gb'))} GB of {_fmt(t.get('mem_available_gb'))} GB available). "
                  f"Student = {s['config']} ({s['parameters'] / 1e6:.1f}M parameters).", "",
                  "| model | params | median ms | p99 ms | runs |", "|---|---|---|---|---|",
                  f"| teacher | {t['parameters'] / 1e9:.3f}B | {_fmt(t['latency_ms'].get('median_ms'))} | "
                  f"{_fmt(t['latency_ms'].get('p99_ms'))} | {t['latency_ms'].get('count')} |",
                  f"| student | {s['parameters'] / 1e6:.1f}M | {_fmt(s['latency_ms'].get('median_ms'))} | "
                  f"{_fmt(s['latency_ms'].get('p99_ms'))} | {s['latency_ms'].get('count')} |", "",
                  f"Speedup (teacher median / student median): **{_fmt(tvs.get('speedup_student_over_teacher'))}x**. "
                  + (t.get("note", "")), ""]
    conv = {c: r["conversions"] for c, r in results.get("configs", {}).items() if r.get("conversions")}
    if conv:
        lines += ["## Message conversions", "", "| config | conversion | median ms | p99 ms |", "|---|---|---|---|"]
        for c, r in conv.items():
            for name, s in r["time_ms"].items():
                lines.append(f"| {c} | {name} | {_fmt(s.get('median_ms'), 3)} | {_fmt(s.get('p99_ms'), 3)} |")
        lines += ["", "Zero-copy checks:", ""]
        for c, r in conv.items():
            for name, v in r["zero_copy"].items():
                lines.append(f"- {c}: {name}: {v}")
            lines.append(f"- {c}: sizes: " + ", ".join(f"{k} {v} B" for k, v in r["sizes_bytes"].items()))
        lines.append("")
    floor = floor_lines(results)
    if floor:
        lines += ["## What the graph costs besides the models", "",
                  "The `instant` runs (`-instant` above) repeat the bare chain and the shipped composed graph with every "
                  "forward pass answered at once (each stage's first output replayed; `ReplayedForwardPass` in "
                  "`latentvla_ros/benchmarking.py`); everything else is unchanged: messages, conversions, feature "
                  "building, synchronisation, executors, the harness. The composed graph's latency then is what ROS and "
                  "the nodes' Python cost by themselves on this machine.", "", *[f"- {line}" for line in floor], ""]
    lines += ["## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {_fmt(t['value'], 3)} | {t['goal']} | {t['met']} |")
    lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


# ============================================================================ main
def run(opts: BenchOptions, report: Callable[[str], None] = print) -> dict[str, Any]:
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from latentvla_ros.ros.graph import apply_transport_env

    apply_transport_env()
    import torch

    opts.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "command": opts.command,
                 "out": str(opts.out), "threads": opts.threads, "quick": opts.quick, "configs": opts.configs,
                 "modes": opts.modes, "backends": opts.backends, "rates_hz": opts.rates, "frames": opts.frames,
                 "warmup": opts.warmup, "sections": opts.sections, "domain_id": opts.domain_id,
                 "executors": opts.executors, "node_overrides": opts.overrides,
                 "machine": machine_info(), "loadavg_start": list(os.getloadavg()),
                 "other_processes_start": other_processes()},
        "configs": {}, "notes": [],
    }
    json_path = opts.out / "bench.json"

    def save() -> None:
        results["targets"] = evaluate_targets(results)
        json_path.write_text(json.dumps(_round(results), indent=1))

    save()
    for config in opts.configs:
        cres: dict[str, Any] = {"rates_hz": opts.rates[config], "frames": opts.frames[config], "runs": {}}
        results["configs"][config] = cres
        t = time.perf_counter()
        torch.set_num_threads(opts.threads[config])  # torch's count is per process; onnxruntime's per session
        need = opts.frames[config] + max(1, opts.warmup)
        log_ = prepare_log(config, need, opts.out / "data", opts.seed)
        idx = [i % log_.num_frames for i in range(need)]
        ckpt_dir, source = prepare_checkpoints(config, opts.checkpoints, opts.out, opts.seed)
        frames = [log_.sensor_frame(i) for i in idx]
        data = ConfigData(config, log_.path, frames, ckpt_dir, source)
        data.msgs = [frame_messages(log_, i) for i in idx]
        cres.update(log=str(log_.path), log_frames=log_.num_frames, checkpoints=str(ckpt_dir), weights=source,
                    camera=list(frames[0].cameras[0].image.shape),
                    lidar_points_median=int(np.median([len(f.lidar_points) for f in frames])),
                    prepare_s=time.perf_counter() - t)
        report(f"[{config}] data {log_.path} ({log_.num_frames} frames), weights: {source}")
        if "conversions" in opts.sections:
            try:
                cres["conversions"] = in_worker(conversions_section, data)
            except Exception as exc:  # noqa: BLE001
                cres["conversions_error"] = f"{type(exc).__name__}: {exc}"
            save()
        if "graph" in opts.sections:
            cres["runs"] = run_config_graph(opts, data, report)
            save()
        if "onnx" in opts.sections:
            report(f"[{config}] onnx export + comparison")
            try:
                cres["onnx"] = in_worker(onnx_section, opts, data, runs=10 if opts.quick or config == "paper" else 30)
            except Exception as exc:  # noqa: BLE001
                cres["onnx_error"] = f"{type(exc).__name__}: {exc}"
            save()
        teacher_here = config == "paper" or ("paper" not in opts.configs and config == opts.configs[-1])
        if "teacher" in opts.sections and teacher_here:
            report(f"[{config}] teacher vs student")
            try:
                results["teacher_vs_student"] = in_worker(teacher_section, opts, data)
            except Exception as exc:  # noqa: BLE001
                results["teacher_vs_student"] = {"error": f"{type(exc).__name__}: {exc}"}
            save()
        del data, frames
        gc.collect()
    for config, cres in results["configs"].items():
        for key, run in cres.get("runs", {}).items():
            again = run.get("recheck_after_graph")
            if again and again.get("drift_median") is not None:
                results["notes"].append(
                    f"{config} {key}: re-measured on {again['frames']} frames after the graph runs: median "
                    f"{again['latency_ms'].get('median_ms', float('nan')):.1f} ms, {again['drift_median']:.2f}x the first "
                    f"measurement of the same frames (machine drift during the graph runs).")
    results["meta"]["loadavg_end"] = list(os.getloadavg())
    results["meta"]["other_processes_end"] = other_processes()
    foreign = [r.get("cpu", {}).get("foreign_cores") for c in results["configs"].values() for r in c.get("runs", {}).values()]
    foreign = [f for f in foreign if f is not None]
    if foreign:
        results["meta"]["load_note"] = (
            f"other processes used {np.median(foreign):.2f} cores (median over runs, max {max(foreign):.2f}) of "
            f"{os.cpu_count()} during the measured runs; load average {results['meta']['loadavg_start'][0]:.1f} at the "
            f"start, {results['meta']['loadavg_end'][0]:.1f} at the end."
            + (" The machine was NOT quiet: figures are pessimistic." if max(foreign) > 0.25 else " The machine was quiet."))
    else:
        results["meta"]["load_note"] = f"load average {results['meta']['loadavg_start'][0]:.1f} at the start."
    save()
    return results


def main(args: argparse.Namespace) -> int:
    opts = resolve_options(args)
    logging.basicConfig(level=logging.WARNING)
    results = run(opts)
    print_report(results)
    print(f"\nwrote {opts.out / 'bench.json'}")
    if opts.write_docs:
        path = opts.docs_path or Path(__file__).resolve().parents[1] / "docs" / "performance.md"
        write_docs(_round(results), path)
        print(f"wrote {path}")
    return 0


def script_main(argv: list[str] | None = None, **defaults: Any) -> int:
    """Entry point of ``benchmarks/bench_*.py``: the bench options with other defaults."""
    parser = add_bench_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.set_defaults(**defaults)
    return main(parser.parse_args(argv))
