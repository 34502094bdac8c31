"""Options of ``latentvla bench``: the argument parser, per-config values, targets (stdlib only: the CLI
builds this parser for ``--help`` without numpy)."""
from __future__ import annotations

import argparse
import logging
import os
import random
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


CONFIGS = ("edge", "paper")
MODES = ("bare", "composed", "processes", "instant", "floor")
BACKENDS = ("onnx", "torch")  # the nodes ship with onnx (config/*.param.yaml): first, so processes/instant/floor use it
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
                             "pass answered at once (its first output replayed): what the graph costs besides the models. floor: "
                             "a no-work rclpy graph of the same topology and message sizes (apps/bench/floor.py)")
    parser.add_argument("--backends", default=None,
                        help="inference backends of the graph runs, onnx,torch (default onnx,torch; quick: torch). "
                             "processes and instant modes run with the first one only")
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
                             "(runtime.threads.resolve_intra_op_threads: half the usable cores)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up frames before each measured run")
    parser.add_argument("--checkpoints", default="checkpoints",
                        help="root holding <config>/{bev_backbone,student,planner}; configs without them get "
                             "random-init checkpoints written under <out>/checkpoints (latency does not depend on weights)")
    parser.add_argument("--teacher-mem-gb", type=float, default=0.0,
                        help="memory the teacher may take (0: MemAvailable - 4 GB); decides full vs. scaled Qwen2.5-VL-3B")
    parser.add_argument("--teacher-runs", type=int, default=3, help="timed teacher forward passes (after one warm-up)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the graph section this many times in the one command: docs/performance.json "
                             "gives the median over the runs and each run's figures (their spread)")
    parser.add_argument("--write-docs", action="store_true",
                        help="also write docs/performance.md, docs/performance.json and README.md's latency "
                             "paragraph (between its latency markers) from the results")
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
    repeat: int = 1
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
    get = lambda name, default=None: getattr(args, name, default)
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
        repeat=max(1, int(get("repeat", 1) or 1)),
        write_docs=bool(get("write_docs", False)), docs_path=Path(docs) if docs else None, domain_id=domain,
        seed=int(get("seed", 3) if get("seed") is not None else 3), command=get("command_line") or _command_line(),
        executors=executors, overrides=_overrides(get("set") or []),
    )


def _threads(value: Any, configs: list[str]) -> dict[str, int]:
    from latentvla_ros.runtime import resolve_intra_op_threads

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
