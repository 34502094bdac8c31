"""``latentvla evaluate``: open-loop PDMS and closed-loop driving for every method.

(a) Open loop: NAVSIM-style PDMS on held-out highway-env logs (``data/splits.py``:
    scenarios x reserved seeds, generated once into ``--test-data``), one scene every
    ``scene_stride`` frames with 4 s of logged future, for constant velocity, the
    ego-status MLP, the PDM-Closed-style reference planner, the E2E planner without
    fusion, fused with the distilled student, fused with the teacher, and the logged
    expert (ceiling). Every trajectory of a scene is scored in one batch against the
    same reference progress.
(b) Closed loop: ``closed_loop.py`` episodes on the fixed seeds: our planner variants
    through the ROS 2 node graph (``apps/sim_bridge.py``), the baselines through the same env
    loop, the IDM/MOBIL expert (ceiling; its progress is EP's reference).

A method whose checkpoint is missing is listed as 'not available (no checkpoint)' and
never replaced by another one; ``--allow-untrained`` runs it with random weights instead,
flagged 'UNTRAINED' everywhere. Output in ``--out``: ``scores.json`` (every scene and
episode), ``open_loop_pdms.png``, ``closed_loop_score.png``, ``examples.png``,
``closed_loop_paths.png``, ``summary.md``; ``--write-docs`` also rewrites
``docs/results.md``. 95 % confidence intervals: percentile bootstrap of the mean
(2000 resamples, fixed seed).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.apps.eval_methods import MethodSpec, build_open_loop_agent, prepare_ego_mlp, resolve_methods
from latentvla_ros.apps.eval_tasks import _run_tasks, closed_loop_task
from latentvla_ros.apps.reporting import machine_info
from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.data import splits
from latentvla_ros.evaluation.report import (
    METHOD_LABELS,
    markdown_tables,
    plot_bars,
    plot_examples,
    plot_paths,
    write_results_doc,
)
from latentvla_ros.evaluation.results_json import bootstrap_ci, per_scenario_pdms

OPEN_LOOP_METHODS = ("constant_velocity", "ego_mlp", "pdm_closed", "latentvla_none", "latentvla_student",
                     "latentvla_teacher", "latentvla_student_unguarded", "expert")
CLOSED_LOOP_METHODS = ("constant_velocity", "ego_mlp", "pdm_closed", "latentvla_none", "latentvla_student",
                       "latentvla_teacher", "latentvla_student_shuffled", "latentvla_student_zeroed",
                       "latentvla_student_unguarded", "expert")
ROS_SUFFIX = "_ros"  # a method driven through the ROS graph on the ROS subset: '<method>_ros'
SCHEMA_VERSION = 1
GUARD_HISTORY_FRAMES = 5
"""Open loop: a guarded agent's obstacle tracker sees this many logged frames before the scene's (0.5 s at
10 Hz, the tracker's velocity window), as NAVSIM gives agents the past frames of a scene."""


# ----------------------------------------------------------------------------- plan
@dataclass
class EvalPlan:
    """What one evaluation run covers (``full()`` / ``quick()``)."""

    scenarios: tuple[str, ...] = splits.SCENARIOS
    open_loop_seeds: tuple[int, ...] = splits.OPEN_LOOP_TEST_SEEDS
    open_loop_frames: int = splits.OPEN_LOOP_FRAMES
    scene_stride: int = splits.OPEN_LOOP_SCENE_STRIDE
    density: float = splits.OPEN_LOOP_DENSITY
    closed_loop_seeds: tuple[int, ...] = splits.CLOSED_LOOP_SEEDS
    closed_loop_steps: int | None = None  # None: each mission's time limit (data/missions.py)
    closed_loop_scenarios: tuple[str, ...] | None = None  # None: ``scenarios``
    ros_subset_seeds: tuple[int, ...] = splits.ROS_SUBSET_SEEDS  # the ROS-graph run (per scenario)
    ros_subset_methods: tuple[str, ...] = ("latentvla_student",)
    episodes_per_task: int = 5  # closed-loop episodes per fan-out task
    failure_pictures: bool = True
    open_loop_methods: tuple[str, ...] = OPEN_LOOP_METHODS
    closed_loop_methods: tuple[str, ...] = CLOSED_LOOP_METHODS
    run_open_loop: bool = True
    run_closed_loop: bool = True
    reference_lateral_offsets_closed_loop: tuple[float, ...] = (0.0,)  # cheaper PDM-Closed at 10 Hz
    reference_replan_every: int = 1
    graph_mode: str = "composed"  # or "processes": the node graph as separate processes
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0
    # experiments (scripts/validation_closed_loop.py --guard-param / --tracker-param): GuardConfig fields for every
    # guarded agent (open loop and the direct closed-loop path), highway_tracker_config fields for every method
    guard_overrides: tuple[tuple[str, Any], ...] = ()
    tracker_overrides: tuple[tuple[str, Any], ...] = ()
    num_examples: int = 4
    ego_mlp_epochs: int = 30

    @classmethod
    def full(cls) -> "EvalPlan":
        return cls()

    @classmethod
    def quick(cls) -> "EvalPlan":
        return cls(open_loop_seeds=splits.QUICK_OPEN_LOOP_SEEDS, open_loop_frames=splits.QUICK_OPEN_LOOP_FRAMES,
                   closed_loop_seeds=splits.QUICK_CLOSED_LOOP_SEEDS, closed_loop_steps=40,
                   ros_subset_seeds=splits.QUICK_CLOSED_LOOP_SEEDS, bootstrap_samples=500, ego_mlp_epochs=10)

    @property
    def cl_scenarios(self) -> tuple[str, ...]:
        return tuple(self.closed_loop_scenarios or self.scenarios)


# ----------------------------------------------------------------------------- workers
_WORKER_CACHE: dict[str, Any] = {}


def _planner_for(spec: MethodSpec) -> Any:
    key = json.dumps(asdict(spec), sort_keys=True)
    if key in _WORKER_CACHE:
        return _WORKER_CACHE[key]
    if spec.kind == "constant_velocity":
        from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner

        obj = ConstantVelocityPlanner(use_yaw_rate=False)
    elif spec.kind == "ego_mlp":
        from latentvla_ros.evaluation.ego_mlp import EgoMLPPlanner
        from latentvla_ros.models.configuration_ego_mlp import EgoMLPConfig
        from latentvla_ros.models.modeling_ego_mlp import EgoStatusMLP

        obj = EgoMLPPlanner.from_checkpoint(spec.ego_mlp) if spec.ego_mlp else EgoMLPPlanner(EgoStatusMLP(EgoMLPConfig()))
    elif spec.kind == "agent":
        obj = build_open_loop_agent(spec)
    else:
        raise ValueError(spec.kind)
    _WORKER_CACHE[key] = obj
    return obj


def open_loop_log_task(log_dir: str, specs: list[MethodSpec], scene_stride: int, want_example: bool) -> dict:
    """Score every method on the scenes of one held-out log (runs in a worker)."""
    from latentvla_ros.data.log_format import DrivingLog
    from latentvla_ros.data.route import log_route_ego
    from latentvla_ros.evaluation.pdms import score_trajectories
    from latentvla_ros.evaluation.reference_planner import ReferencePlanner
    from latentvla_ros.evaluation.scenes import scene_from_log, scene_indices

    log = DrivingLog(log_dir)
    meta = dict(log.meta)
    rows, examples, errors = [], [], []
    indices = [t for t in scene_indices(log, stride=scene_stride) if bool(np.asarray(log.future_valid)[t])]
    example_t = indices[len(indices) // 2] if indices and want_example else None
    ref_planner = ReferencePlanner()
    for t in indices:
        scene = scene_from_log(log, t)
        if scene.expert_trajectory is None:
            continue
        frame = log.sensor_frame(t)
        history: list = []  # the frames before t, read once per scene for every guarded agent
        route = log_route_ego(log, t)  # the agents' route input: the scene's mission route (data/route.py)
        trajs, names, plan_ms = [], [], {}
        for spec in specs:
            try:
                if spec.kind in ("agent", "ego_mlp", "constant_velocity"):
                    _planner_for(spec)  # built (and cached) outside the timing
            except Exception as exc:  # noqa: BLE001 - a method that cannot be built is recorded, the others run
                errors.append(f"{spec.name}: cannot build: {type(exc).__name__}: {exc}")
                continue
            t0 = time.perf_counter()
            try:
                if spec.kind == "expert":
                    poses = np.asarray(scene.expert_trajectory, dtype=np.float64)
                elif spec.kind == "pdm_closed":
                    ref_plan = ref_planner.plan_detailed(scene)
                    poses = np.asarray(ref_plan.trajectory.poses)
                    scene._cache["ref_plan"] = ref_plan
                else:  # core.agent.AbstractAgent: our agents and the sensor-only baselines
                    agent = _planner_for(spec)
                    if hasattr(agent, "observe"):  # a guarded agent: its tracker sees the frames before t
                        agent.reset()
                        if not history:
                            history = [log.sensor_frame(past) for past in range(max(0, t - GUARD_HISTORY_FRAMES), t)]
                        for past_frame in history:
                            agent.observe(past_frame)
                    poses = np.asarray(agent.compute_trajectory(agent_input_of(frame, route=route)).poses)
            except Exception as exc:  # noqa: BLE001 - a failing method is recorded, not fatal
                errors.append(f"{spec.name} @ {Path(log_dir).name}:{t}: {type(exc).__name__}: {exc}")
                continue
            plan_ms[spec.name] = (time.perf_counter() - t0) * 1e3
            trajs.append(poses)
            names.append(spec.name)
        ref_plan = scene._cache.get("ref_plan") or ref_planner.plan_detailed(scene)
        ref_progress = ref_planner.reference_progress(scene, ref_plan)
        results = score_trajectories(scene, trajs, reference_progress=ref_progress) if trajs else []
        for name, res in zip(names, results):
            row = {"method": name, "scenario": meta.get("scenario"), "seed": int(meta.get("seed", -1)), "frame": int(t),
                   "token": scene.token, **{k: float(v) for k, v in res.as_dict().items()},
                   "collision_time_s": res.collision_time_s, "plan_ms": plan_ms[name],
                   "comfort_checks": res.comfort_checks}
            rows.append(row)
        if t == example_t:
            examples.append({
                "token": scene.token, "scenario": meta.get("scenario"), "seed": int(meta.get("seed", -1)), "frame": int(t),
                "image": np.asarray(log.camera(t)[0]).tolist(),
                "meters_per_pixel": float(meta.get("camera_meters_per_pixel", 0.5)),
                "ego_pixel_xy": list(meta.get("camera_ego_pixel_xy", [63.5, 96.0])),
                "trajectories": {n: np.asarray(p).tolist() for n, p in zip(names, trajs)},
                "pdms": {r["method"]: r["pdms"] for r in rows if r["frame"] == t},
            })
    return {"rows": rows, "examples": examples, "errors": errors, "log": str(log_dir)}


# ----------------------------------------------------------------------------- closed-loop methods
def agent_guard(spec: MethodSpec, plan: EvalPlan) -> bool | dict:
    """The guard a learned agent of ``spec`` drives with: none, the shipped one, or (a guarded agent with
    ``plan.guard_overrides``) one with those ``GuardConfig`` fields changed; open and closed loop alike."""
    return dict(plan.guard_overrides) if spec.guard and plan.guard_overrides else spec.guard


def open_loop_specs(specs: dict[str, MethodSpec], plan: EvalPlan) -> list[MethodSpec]:
    """The available open-loop methods of ``plan``, a learned agent's with ``agent_guard``."""
    return [replace(specs[m], guard=agent_guard(specs[m], plan)) if specs[m].kind == "agent" else specs[m]
            for m in plan.open_loop_methods if specs[m].available]


def closed_loop_methods(specs: dict[str, MethodSpec], plan: EvalPlan) -> dict[str, Any]:
    """ClosedLoopMethod per available method (ours through the ROS graph)."""
    from latentvla_ros.evaluation.drivers import ClosedLoopMethod

    out: dict[str, Any] = {}
    for name in plan.closed_loop_methods:
        spec = specs[name]
        if not spec.available:
            continue
        if spec.kind == "agent":
            # the big suite runs the core stages directly (kind 'agent'); the ROS subset
            # (ros_closed_loop_method) the node graph with the same checkpoints
            graph = dict(name=name, fusion=spec.fusion, bev_checkpoint=spec.bev, planner_checkpoint=spec.planner,
                         student_checkpoint=spec.student, teacher_path=spec.teacher, preset=spec.preset,
                         allow_untrained=bool(spec.untrained))  # the ROS twin's planner drives them, flagged
            out[name] = ClosedLoopMethod(name=name, kind="agent", graph={**graph, "ablation": spec.ablation,
                                                                          "guard": agent_guard(spec, plan)})
        elif spec.kind == "pdm_closed":
            out[name] = ClosedLoopMethod(name=name, kind="reference", replan_every=plan.reference_replan_every,
                                         options={"reference": {"lateral_offsets": plan.reference_lateral_offsets_closed_loop}})
        elif spec.kind == "ego_mlp":
            if not spec.ego_mlp:
                continue  # untrained MLP has no checkpoint to load in the worker
            out[name] = ClosedLoopMethod(name=name, kind="ego_mlp", checkpoint=spec.ego_mlp)
        else:
            out[name] = ClosedLoopMethod(name=name, kind=spec.kind)
    for method in out.values() if plan.tracker_overrides else ():
        method.options = {**method.options, "tracker": dict(plan.tracker_overrides)}
    return out


def ros_closed_loop_method(spec: MethodSpec, method: Any, plan: EvalPlan) -> Any:
    """The ROS-graph twin ('<name>_ros') of a direct 'agent' method, for the ROS subset."""
    from latentvla_ros.evaluation.drivers import ClosedLoopMethod

    # process mode: no use_sim_time for now -- nodes started with use_sim_time:=true
    # crash in LatentVlaNode.create_subscription (see the report); the closed loop
    # is synchronous, so only the nodes' latency statistics differ
    graph = {k: v for k, v in method.graph.items() if k != "ablation"}  # "guard": the planner node's obstacle guard
    graph.update(name=spec.name + ROS_SUFFIX, mode=plan.graph_mode, use_sim_time=plan.graph_mode == "composed")
    return ClosedLoopMethod(name=spec.name + ROS_SUFFIX, kind="ros", graph=graph)


def closed_loop_unavailable_reason(spec: MethodSpec, method: Any) -> str:
    if not spec.available:
        return spec.reason
    if method is None:
        return "no checkpoint"
    if getattr(method, "kind", "") in ("ros", "agent") and spec.fusion:
        from latentvla_ros.apps.sim_bridge import GraphVariant

        return GraphVariant(**{k: v for k, v in method.graph.items() if k not in ("ablation", "guard")}).check_available()
    return ""


# ----------------------------------------------------------------------------- summaries
OPEN_METRICS = ("pdms", "nc", "dac", "ttc", "ep", "c")
CLOSED_METRICS = ("score", "at_fault_collision", "collision", "off_road", "route_completed", "route_completion", "progress_m",
                  "mean_speed_mps", "comfort", "ep")


def summarize(rows: list[dict], methods: Sequence[str], metrics: Sequence[str], plan: EvalPlan) -> dict[str, dict]:
    out = {}
    for name in methods:
        mine = [r for r in rows if r["method"] == name]
        if not mine:
            continue
        out[name] = {m: bootstrap_ci([float(r[m]) for r in mine], plan.bootstrap_samples, plan.bootstrap_seed)
                     for m in metrics}
        out[name]["n"] = len(mine)
    return out


# ----------------------------------------------------------------------------- main flow
def generator_fingerprint() -> str:
    """Short hash of the data generator's source: cached held-out logs are regenerated
    whenever the generator (``data/highway.py``, its scenario constants ``data/scenarios.py``, its
    expert ``data/highway_expert.py`` and ``data/expert.py``, its sensors ``data/highway_sensors.py``)
    or ``data/log_format.py`` changes."""
    import hashlib

    import latentvla_ros.data.expert as expert
    import latentvla_ros.data.highway as highway
    import latentvla_ros.data.highway_expert as highway_expert
    import latentvla_ros.data.highway_sensors as highway_sensors
    import latentvla_ros.data.log_format as log_format
    import latentvla_ros.data.scenarios as scenarios

    digest = hashlib.sha256()
    for module in (highway, scenarios, highway_expert, highway_sensors, expert, log_format):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:10]


def ensure_test_logs(root: Path, plan: EvalPlan, workers: int) -> list[Path]:
    """Generate the held-out logs once (kept between runs under ``<root>/frames<N>_gen<hash>``)."""
    from latentvla_ros.data.highway import generate_dataset, log_name
    from latentvla_ros.data.log_format import is_log_dir

    splits.open_loop_logs(plan.scenarios, plan.open_loop_seeds, plan.density)  # validates the seeds
    base = root / f"frames{plan.open_loop_frames}_gen{generator_fingerprint()}"
    generate_dataset(base, scenarios=plan.scenarios, seeds=plan.open_loop_seeds, densities=(plan.density,),
                     frames_per_log=plan.open_loop_frames, workers=workers, progress=False)
    dirs = [base / log_name(sc, s, plan.density) for sc in plan.scenarios for s in plan.open_loop_seeds]
    return [d for d in dirs if is_log_dir(d)]


def run_evaluation(plan: EvalPlan, out: str | Path, checkpoints: str | Path = "checkpoints/edge", workers: int = 2,
                   *, test_data: str | Path = "data/highway_test", train_data: str | Path | None = "data/highway",
                   allow_untrained: bool = False, write_docs: bool = False, docs_path: str | Path = "docs/results.md",
                   command: str = "", quick: bool = False, verbose: bool = True, backend: str = "auto",
                   address: str | None = None) -> dict:
    """Everything ``latentvla evaluate`` does; returns the ``scores.json`` content.

    ``backend`` / ``address``: how tasks fan out (``core/fanout.py``: Ray locally or on
    the cluster at ``address``, or a process pool)."""
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckroot = Path(checkpoints)
    errors: list[str] = []

    def say(msg: str) -> None:
        if verbose:
            print(f"[evaluate {time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    ego_dir, ego_reason, ego_info = prepare_ego_mlp(ckroot, Path(train_data) if train_data else None, out,
                                                    plan.ego_mlp_epochs)
    if ego_info:
        say(f"ego-status MLP: {ego_info.get('source')}")
    specs = resolve_methods(ckroot, allow_untrained, ego_dir, ego_reason)
    for name, spec in specs.items():
        say(f"{name}: {spec.status()}")
    timings: dict[str, float] = {}

    # ---- (a) open loop
    open_rows: list[dict] = []
    examples: list[dict] = []
    if plan.run_open_loop:
        t0 = time.perf_counter()
        logs = ensure_test_logs(Path(test_data), plan, workers)
        timings["test_logs_s"] = time.perf_counter() - t0
        say(f"{len(logs)} held-out logs ready ({timings['test_logs_s']:.0f} s)")
        active = open_loop_specs(specs, plan)
        t0 = time.perf_counter()
        seen_scenarios: set[str] = set()
        calls = []
        for d in logs:
            sc = d.name.split("_")[0]
            want = sc not in seen_scenarios and len(seen_scenarios) < plan.num_examples
            seen_scenarios.add(sc)
            calls.append((open_loop_log_task, (str(d), active, plan.scene_stride, want)))
        for res in _run_tasks(calls, workers, backend=backend, address=address, desc=f"open loop ({len(calls)} logs)",
                              progress=verbose):
            open_rows += res["rows"]
            examples += res["examples"]
            errors += res["errors"]
        timings["open_loop_s"] = time.perf_counter() - t0
        say(f"open loop: {len({r['token'] for r in open_rows})} scenes scored ({timings['open_loop_s']:.0f} s)")

    # ---- (b) closed loop
    episodes: list[dict] = []
    cl_status: dict[str, str] = {}
    if plan.run_closed_loop:
        t0 = time.perf_counter()
        cl_methods = closed_loop_methods(specs, plan)
        eps = splits.closed_loop_episodes(plan.cl_scenarios, plan.closed_loop_seeds)
        base_domain = 101 + random.SystemRandom().randint(0, 99)
        pictures = str(out / "failures") if plan.failure_pictures else ""
        calls, costs = [], []
        ros_calls: list[tuple[Any, tuple]] = []  # the ROS-graph subset: run in this process after the fan-out

        def add_tasks(method: Any, seeds: Sequence[int], chunk: int) -> None:
            from latentvla_ros.data.missions import time_limit_steps

            step_cost = {"expert": 0.3, "reference": 3.0, "ros": 3.0}.get(method.kind, 1.0)
            if method.kind == "agent" and method.graph.get("fusion") == "teacher":
                step_cost = 3.0
            for sc in plan.cl_scenarios:
                mine = [e for e in eps if e[0] == sc and e[1] in set(seeds)]
                for k in range(0, len(mine), chunk):
                    part = mine[k:k + chunk]
                    # one DDS domain per ROS-graph task; FastDDS refuses domain ids above 232 (its port
                    # arithmetic), so count the ROS tasks only (base + len(calls) reached 201-300 and killed a run)
                    dom = base_domain + len(ros_calls) if method.kind == "ros" else None
                    steps = plan.closed_loop_steps or time_limit_steps(sc)
                    call = (closed_loop_task, (method, part, plan.closed_loop_steps, dom, pictures))
                    if method.kind == "ros":
                        ros_calls.append(call)
                        continue
                    costs.append(step_cost * len(part) * 0.6 * steps)
                    calls.append(call)

        for name in plan.closed_loop_methods:
            spec = specs[name]
            method = cl_methods.get(name)
            reason = closed_loop_unavailable_reason(spec, method)
            if reason:
                cl_status[name] = f"not available ({reason})"
                continue
            cl_status[name] = spec.status()
            add_tasks(method, plan.closed_loop_seeds, max(plan.episodes_per_task, 1))
            if name in plan.ros_subset_methods and plan.ros_subset_seeds and method.kind == "agent":
                from latentvla_ros.apps.sim_bridge import GraphVariant

                twin = ros_closed_loop_method(spec, method, plan)
                problem = GraphVariant(**twin.graph).check_available()
                if problem:
                    cl_status[twin.name] = f"not available ({problem})"
                    continue
                cl_status[twin.name] = spec.status()
                effective = GraphVariant(**twin.graph).effective_fusion
                if effective != spec.fusion:
                    cl_status[twin.name] += f" (graph runs the preset planner, fusion={effective})"
                add_tasks(twin, plan.ros_subset_seeds, len(plan.ros_subset_seeds))
        results = _run_tasks(calls, workers, backend=backend, address=address, costs=costs,
                             desc=f"closed loop ({len(calls)} tasks)", progress=verbose)
        if ros_calls:
            # The node graph runs here, in the evaluating process, after the fan-out: inside a Ray worker
            # it took the worker down in two full runs (session 7; not reproducible alone), and a crashed
            # worker lost the ROS-vs-direct rows. In-process it is what the path-equivalence test runs.
            say(f"closed loop: ROS-graph subset ({len(ros_calls)} task(s)) in this process")
            try:
                results += _run_tasks(ros_calls, 1, backend="inline", desc="ROS-graph subset", progress=verbose)
            except Exception as exc:  # noqa: BLE001 - the subset failing must not lose the fan-out's episodes
                errors.append(f"ROS-graph subset: {type(exc).__name__}: {exc}")
                say(f"closed loop: ROS-graph subset FAILED ({type(exc).__name__}: {exc}); the direct-path results are kept")
        for res in results:
            episodes += res["episodes"]
            errors += res["errors"]
        expert_progress = {(e["scenario"], e["seed"]): e["progress_m"] for e in episodes
                           if e["method"] == "expert" and e["termination"] != "error"}
        from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig, score_episode

        cfg = ClosedLoopConfig(max_steps=plan.closed_loop_steps)
        for e in episodes:
            sc = score_episode(e, expert_progress.get((e["scenario"], e["seed"])), cfg)
            e.update(sc)
            e["plan_ms"] = e["mean_plan_ms"]
        timings["closed_loop_s"] = time.perf_counter() - t0
        say(f"closed loop: {len(episodes)} episodes ({timings['closed_loop_s']:.0f} s)")

    # ---- summaries, tables, plots
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "meta": {
            "command": command or "latentvla evaluate", "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(), "quick": bool(quick), "workers": workers, "backend": backend,
            "address": address or "",
            "checkpoints": str(ckroot), "test_data": str(test_data), "plan": asdict(plan), "timings_s": timings,
            "ego_mlp": ego_info, "errors": errors, "wall_s": 0.0,
        },
        "splits": {"reserved_seed_start": splits.RESERVED_SEED_START,
                   "open_loop": {"scenarios": list(plan.scenarios), "seeds": list(plan.open_loop_seeds),
                                 "density": plan.density, "frames": plan.open_loop_frames, "scene_stride": plan.scene_stride},
                   "closed_loop": {"scenarios": list(plan.cl_scenarios), "seeds": list(plan.closed_loop_seeds),
                                   "max_steps": plan.closed_loop_steps}},
        "methods": {n: {**asdict(s), "status": s.status(), "label": METHOD_LABELS.get(n, n)} for n, s in specs.items()},
    }
    if plan.run_open_loop:
        result["open_loop"] = {"methods": list(plan.open_loop_methods),
                               "summary": summarize(open_rows, plan.open_loop_methods, OPEN_METRICS, plan),
                               "scenes": open_rows}
        per_scenario = per_scenario_pdms(open_rows, plan.open_loop_methods)
        for name, s in result["open_loop"]["summary"].items():
            s["plan_ms"] = bootstrap_ci([r["plan_ms"] for r in open_rows if r["method"] == name], 200, 0)
            s["per_scenario"] = per_scenario.get(name, {})  # PDMS 0-100 per scenario
    if plan.run_closed_loop:
        cl_names = list(plan.closed_loop_methods) + sorted({e["method"] for e in episodes} - set(plan.closed_loop_methods))
        summary = summarize(episodes, cl_names, CLOSED_METRICS, plan)
        for name, s in summary.items():
            s["plan_ms"] = bootstrap_ci([e["mean_plan_ms"] for e in episodes if e["method"] == name], 200, 0)
            s["fallbacks"] = int(sum(e["fallbacks"] for e in episodes if e["method"] == name))
            s["no_plan"] = int(sum(e["no_plan"] for e in episodes if e["method"] == name))
        result["closed_loop"] = {"methods": cl_names, "status": cl_status, "summary": summary,
                                 "episodes": episodes}
    result["meta"]["wall_s"] = time.perf_counter() - t_start
    if plan.run_open_loop:
        untrained = [n for n, sp in specs.items() if sp.untrained]
        plot_bars(result["open_loop"]["summary"], "pdms", plan.open_loop_methods, out / "open_loop_pdms.png",
                  "Open-loop PDMS (held-out logs)", untrained=untrained)
        plot_examples(examples[: plan.num_examples], out / "examples.png")
    if plan.run_closed_loop:
        plot_bars(result["closed_loop"]["summary"], "score", plan.closed_loop_methods, out / "closed_loop_score.png",
                  "Closed-loop score (highway-env)", untrained=[n for n, sp in specs.items() if sp.untrained])
        plot_paths(episodes, out / "closed_loop_paths.png")
    from latentvla_ros.evaluation.results_json import build_results_json, markdown_guard, markdown_paired

    headline = build_results_json(
        open_rows if plan.run_open_loop else [], plan.open_loop_methods, episodes if plan.run_closed_loop else [],
        result["closed_loop"]["methods"] if plan.run_closed_loop else [], plan.bootstrap_samples, plan.bootstrap_seed,
        meta={k: result["meta"][k] for k in ("command", "date", "quick", "workers", "checkpoints", "wall_s")})
    result["paired"] = headline["paired"]
    extra_tables = markdown_paired(headline) + markdown_guard(headline)
    tables = markdown_tables(result) + "\n" + extra_tables
    (out / "summary.md").write_text(tables)
    (out / "scores.json").write_text(json.dumps(_jsonable(result), indent=1, sort_keys=False, allow_nan=True))
    (out / "results.json").write_text(json.dumps(_jsonable(headline), indent=1))
    if write_docs:
        write_results_doc(Path(docs_path), result, out, extra_tables=extra_tables)
        Path(docs_path).with_name("results.json").write_text(json.dumps(_jsonable(headline), indent=1))
        readme = Path(docs_path).resolve().parent.parent / "README.md"
        if readme.is_file():
            from latentvla_ros.apps.results_readme import update_readme_results

            if not update_readme_results(readme, _jsonable(headline)):
                say(f"{readme} has no results markers: its results paragraph was not written")
    if verbose:
        print()
        print(tables)
        for e in errors[:10]:
            print("error:", e.splitlines()[0][:300], file=sys.stderr)
        print(f"wrote {out / 'scores.json'}, {out / 'results.json'} and plots in {out} ({result['meta']['wall_s']:.0f} s)")
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def main(args: Any) -> int:
    """Entry point of ``latentvla evaluate`` (args from ``apps/cli.py``)."""
    plan = getattr(args, "plan", None) or (EvalPlan.quick() if getattr(args, "quick", False) else EvalPlan.full())
    if getattr(args, "skip_open_loop", False):
        plan = replace(plan, run_open_loop=False)
    if getattr(args, "skip_closed_loop", False):
        plan = replace(plan, run_closed_loop=False)
    if getattr(args, "graph_mode", None):
        plan = replace(plan, graph_mode=args.graph_mode)
    command = getattr(args, "command_line", None) or "latentvla " + " ".join(sys.argv[1:])
    result = run_evaluation(
        plan, args.out, args.checkpoints, int(getattr(args, "workers", 2) or 1),
        test_data=getattr(args, "test_data", "data/highway_test"),
        train_data=getattr(args, "train_data", "data/highway"),
        allow_untrained=bool(getattr(args, "allow_untrained", False)),
        write_docs=bool(getattr(args, "write_docs", False)),
        docs_path=getattr(args, "docs_path", "docs/results.md"),
        command=command, quick=bool(getattr(args, "quick", False)),
        backend=getattr(args, "backend", "auto") or "auto", address=getattr(args, "address", None) or None,
    )
    return 0 if result else 1
