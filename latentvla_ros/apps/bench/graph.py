"""The graph section of the bench: bare, composed, processes and instant runs per config."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from typing import Any, Callable

import numpy as np

from latentvla_ros.apps.bench.data import ConfigData, build_agent, in_worker, run_bare, with_guard
from latentvla_ros.apps.bench.floor import FLOOR_VARIANTS, floor_outputs, run_floor
from latentvla_ros.apps.bench.harness import (
    DiagnosticsNodeTimes,
    Harness,
    InProcessNodeTimes,
    graph_options,
    idle_drain_s,
    measure_graph,
    new_ros_context,
    shutdown_ros_context,
    std_to,
    wait_until,
    warm_up_graph,
)
from latentvla_ros.apps.bench.meters import ratio_of, stats_ms
from latentvla_ros.apps.bench.options import CAMERA_NAME, BenchOptions

log = logging.getLogger(__name__)


def run_config_graph(opts: BenchOptions, data: ConfigData, report: Callable[[str], None]) -> dict[str, Any]:
    """bare / composed / processes runs of one config, every backend and rate."""
    from latentvla_ros.runtime import LatentVLAAgent
    from latentvla_ros.runtime.agent import GuardedAgent

    config = data.config
    rates = opts.rates[config]
    n = opts.frames[config]
    warm = max(1, opts.warmup)
    frames = data.frames[warm:warm + n]
    warm_frames = data.frames[:warm]
    msgs = data.msgs[warm:warm + n]
    warm_msgs = data.msgs[:warm]
    runs: dict[str, Any] = {}
    floor_out = None  # one real output of each stage: the floor's message sizes
    for bi, backend in enumerate(opts.backends):
        ctx = nodes = None
        try:
            if "composed" in opts.modes:
                from latentvla_ros.ros.graph import create_composed_nodes

                ctx = new_ros_context(opts.domain_id)
                options = graph_options(config, data.checkpoint_dir, backend, opts.threads[config], min(rates), opts.overrides)
                nodes = create_composed_nodes(options, context=ctx)
                by_name = {nd.get_name(): nd for nd in nodes}
                planner_node = by_name["trajectory_planner"]
                # with the planner node's obstacle guard (its own settings) on the plans, as the graph runs it
                agent = with_guard(LatentVLAAgent(by_name["bev_features"].extractor, by_name["latent_reasoner"].reasoner,
                                                  planner_node.planner),
                                   planner_node.guard.guard.config)
                agent_source = "the composed nodes' runtime objects"
            else:
                agent = build_agent(data.checkpoint_dir, config, backend, opts.threads[config])
                agent_source = "built like ros.model_loading.load_model_runtime"
            staged = [(name, stage) for name, stage in zip(STAGE_OF_NODE, (agent.bev, agent.reasoner, agent.planner))
                      if stage is not None]
            with wrapped_forward_passes([stage for _, stage in staged], TimedForwardPass) as timers:
                bare = run_bare(agent, frames, warm_frames, rates[0])
            bare.update(backend=backend, agent=agent_source, model_id=agent.model_id,
                        obstacle_guard=isinstance(agent, GuardedAgent),
                        model_calls_ms={name: stats_ms(t.times_ms[len(warm_frames):]) for (name, _), t in zip(staged, timers)})
            runs[f"bare[{backend}]"] = bare
            if "floor" in opts.modes and floor_out is None:
                floor_out = in_worker(floor_outputs, agent, frames[0])
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
                bare["recheck_after_graph"]["drift_median"] = ratio_of(again["latency_ms"].get("median_ms"), first)
        finally:
            agent = None
            if nodes:
                for nd in nodes:
                    with contextlib.suppress(Exception):
                        nd.destroy_node()
            nodes = None
            if ctx is not None:
                shutdown_ros_context(ctx)
            gc.collect()
        if "processes" in opts.modes and bi == 0:
            for rate in rates:
                key = f"processes[{backend}]@{rate:g}Hz"
                try:
                    first = rate == rates[0]
                    run = run_processes(opts, data, backend, rate, min(rates), msgs, warm_msgs,
                                        runs.get(f"bare[{backend}]") if first else None,
                                        runs.get(f"bare-parallel[{backend}]") if first else None)
                except Exception as exc:  # noqa: BLE001 - record and go on with the next run
                    run = {"mode": "processes", "backend": backend, "rate_hz": rate, "error": f"{type(exc).__name__}: {exc}"}
                runs[key] = run
                report(_run_line(config, key, run))
    if floor_out is not None:
        for variant in FLOOR_VARIANTS:  # last, in a context of their own: nothing else on the domain
            key = f"{variant}@{rates[0]:g}Hz"
            try:
                run = run_floor(opts, floor_out, variant, rates[0], warm_msgs, msgs, CAMERA_NAME)
            except Exception as exc:  # noqa: BLE001 - record and go on
                run = {"mode": "floor", "variant": variant, "rate_hz": rates[0], "error": f"{type(exc).__name__}: {exc}"}
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


class TimedForwardPass:
    """Wraps a pipeline stage's model call and keeps the wall time of each call: the model
    time of a stage inside the graph, to set beside the bare chain's (is a model slower
    when the nodes run it: intra-op threads, parallel stages, the GIL, executor threads)."""

    def __init__(self, runner: Callable[..., list]):
        self.runner = runner
        self.times_ms: list[float] = []

    def __call__(self, **arrays: Any) -> list:
        start = time.perf_counter()
        try:
            return self.runner(**arrays)
        finally:
            self.times_ms.append((time.perf_counter() - start) * 1e3)


@contextlib.contextmanager
def wrapped_forward_passes(stages: list, wrapper: Callable[[Callable[..., list]], Any]):
    """Replace the model call of each pipeline stage (``_Stage._run``) by ``wrapper(call)``;
    yields the wrappers, in the order of ``stages``."""
    saved = [(stage, stage._run) for stage in stages]
    try:
        wrapped = []
        for stage, runner in saved:
            stage._run = wrapper(runner)
            wrapped.append(stage._run)
        yield wrapped
    finally:
        for stage, runner in saved:
            stage._run = runner


def instant_forward_passes(stages: list):
    """Every stage's model call answered by a ``ReplayedForwardPass``."""
    return wrapped_forward_passes(stages, ReplayedForwardPass)


#: the node of the composed graph that runs each pipeline stage, and the attribute holding it
STAGE_OF_NODE = {"bev_features": "extractor", "latent_reasoner": "reasoner", "trajectory_planner": "planner"}


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
        wait_until(lambda: harness.connected(), 30.0)
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s)
        counters = lambda: {"sensor_sync": sync_node.stats.snapshot()["published"].get("frame", 0)}
        before = {nd.get_name(): _node_snapshot(nd) for nd in nodes}
        staged = [(name, getattr(by_name[name], attr)) for name, attr in STAGE_OF_NODE.items()
                  if getattr(by_name.get(name), attr, None) is not None]
        with wrapped_forward_passes([stage for _, stage in staged], TimedForwardPass) as timers:
            run = measure_graph(harness, msgs, rate, bare, counters, lambda: [], drain_s=idle_drain_s(rate, bare),
                                node_times=InProcessNodeTimes(nodes), bare_parallel=bare_parallel)
        # the model calls alone, inside the graph (bare: stages_ms of the bare run)
        run["model_calls_ms"] = {name: stats_ms(t.times_ms) for (name, _), t in zip(staged, timers)}
        run.update(mode="composed", executor=variant, executor_threads=spinner.thread_layout(),
                   intra_process=bus.enabled)
        run["node_stats"] = {nd.get_name(): _node_snapshot(nd) for nd in nodes}
        run["node_drops"] = {name: _new_drops(before[name], snap) for name, snap in run["node_stats"].items()}
        return run
    finally:
        harness.close()
        spinner.stop()  # detaches the nodes: the next variant spins them again
        bus.enabled = True


def _new_drops(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Drops by reason counted during a run (the node counters are cumulative)."""
    was = before.get("dropped") or {}
    return {k: int(v) - int(was.get(k, 0)) for k, v in (after.get("dropped") or {}).items() if int(v) > int(was.get(k, 0))}


def _diagnostic_drops(values: dict[str, str]) -> dict[str, int]:
    return {k[len("dropped/"):]: int(v) for k, v in values.items() if k.startswith("dropped/") and v.isdigit()}


def _node_snapshot(node) -> dict[str, Any]:
    snap = node.stats.snapshot()
    return {k: snap.get(k) for k in ("received", "published", "dropped", "dropped_total")}


def run_processes(opts: BenchOptions, data: ConfigData, backend: str, rate: float, min_rate: float, msgs: list,
                  warm_msgs: list, bare: dict | None, bare_parallel: dict | None = None) -> dict[str, Any]:
    from latentvla_ros.ros.graph import apply_transport_env, spawn_processes, stop_processes

    options = graph_options(data.config, data.checkpoint_dir, backend, opts.threads[data.config], min_rate, opts.overrides)
    env = apply_transport_env(dict(os.environ))
    env["ROS_DOMAIN_ID"] = str(opts.domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    logfile = opts.out / "logs" / f"processes_{data.config}_{backend}_{rate:g}Hz.log"
    ctx = new_ros_context(opts.domain_id)
    harness = None
    procs: list = []
    try:
        harness = Harness(ctx)
        with std_to(logfile):
            procs = spawn_processes(options, env=env)
        alive = lambda: all(p.poll() is None for p in procs)
        started = time.monotonic()
        if not wait_until(lambda: harness.connected(), opts.startup_timeout_s, 0.2, alive):
            raise RuntimeError(f"graph processes did not come up (see {logfile})")
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s, alive)
        startup_s = time.monotonic() - started

        def counters() -> dict:
            # diagnostics come once a second: wait for a fresh one
            t = time.time_ns()
            wait_until(lambda: harness.diagnostics.get("sensor_sync", (0, {}))[0] > t, 3.0)
            entry = harness.diagnostics.get("sensor_sync")
            return {"sensor_sync": int(entry[1].get("published/frame", 0)) if entry else None}

        names = {p.pid: spec.name for p, spec in zip(procs, options.nodes)}
        # each node's first report (1 Hz) after the warm-up: its drops (a start-up frame's cloud, a warm-up plan
        # timeout) are not the measured frames'
        warm_end = time.time_ns()
        wait_until(lambda: all(harness.diagnostics.get(n, (0, {}))[0] > warm_end for n in harness.node_names), 3.0)
        before = {k: _diagnostic_drops(v[1]) for k, v in harness.diagnostics.items()}
        run = measure_graph(harness, msgs, rate, bare, counters, lambda: [p.pid for p in procs],
                            drain_s=idle_drain_s(rate, bare), node_times=DiagnosticsNodeTimes(harness),
                            process_names=names, bare_parallel=bare_parallel)
        run.update(mode="processes", backend=backend, startup_s=startup_s, log=str(logfile),
                   node_diagnostics={k: v[1] for k, v in harness.diagnostics.items()})
        run["node_drops"] = {k: _new_drops({"dropped": before.get(k, {})}, {"dropped": _diagnostic_drops(v[1])})
                             for k, v in harness.diagnostics.items()}
        return run
    finally:
        if harness is not None:
            harness.close()
        if procs:
            codes = stop_processes(procs, timeout_s=10.0)
            log.debug("graph processes exited with %s", codes)
        shutdown_ros_context(ctx)


def _run_line(config: str, key: str, run: dict) -> str:
    if "error" in run:
        return f"  {config} {key}: ERROR {run['error']}"
    lat = run.get("latency_ms", {})
    ratio = run.get("ratio_vs_bare") or {}
    fmt = lambda v: "  n/a" if v is None else f"{v:5.2f}"
    return (f"  {config} {key}: median {lat.get('median_ms', float('nan')):.1f} ms, p99 {lat.get('p99_ms', float('nan')):.1f} ms, "
            f"ratio median {fmt(ratio.get('median'))} p99 {fmt(ratio.get('p99'))} "
            f"(vs bare-parallel {fmt((run.get('ratio_vs_bare_parallel') or {}).get('median'))}), dropped {run.get('dropped')}, "
            f"fallbacks {run.get('fallbacks')}, foreign load {run.get('cpu', {}).get('foreign_cores', float('nan')):.2f} cores")
