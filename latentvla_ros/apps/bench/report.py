"""The bench report: targets, tables, the printed summary and ``docs/performance.md``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from latentvla_ros.apps.bench.options import BACKENDS, GRAPH_NODES, MODEL_KINDS, TARGETS
from latentvla_ros.apps.reporting import fmt

log = logging.getLogger(__name__)


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
                f"{fmt(g0_p99)}) from sensor stamp to trajectory received, the bare chain {b0:.1f} ms: the graph costs "
                f"{g0 - b0:.1f} ms per frame besides the models. The composed target (<= {limit} x the bare chain's "
                f"{b:.1f} ms = {limit * b:.1f} ms) leaves {(limit - 1) * b:.1f} ms for that. With the models' "
                f"critical path at its shortest (the student wholly beside the BEV backbone: max({calls['bev_backbone']:.1f}, "
                f"{fmt(calls['student'])}) + {calls['planner']:.1f} ms of model calls) the graph would still need about "
                f"{bound:.1f} ms = {bound / b:.2f} x the bare chain"
                + (": the target is out of reach on this machine with this graph." if bound > limit * b else "."))
            fp = runs.get(f"floor-processes@{run.get('rate_hz', 0):g}Hz", {}).get("latency_ms", {}).get("median_ms")
            if fp is not None:
                plimit = TARGETS["processes_median"]
                pbound = fp + critical
                lines.append(
                    f"{config}[{backend}]: as separate processes the no-work graph alone takes {fp:.1f} ms median; with "
                    f"the same shortest critical path ({critical:.1f} ms of model calls) the processes graph needs at least "
                    f"{pbound:.1f} ms = {pbound / b:.2f} x the bare chain (target <= {plimit} x)"
                    + (": out of reach on this machine by the process floor alone, whatever our nodes do."
                       if pbound > plimit * b else "."))
    return lines


def latency_table(results: dict[str, Any]) -> list[str]:
    head = ["config", "run", "input Hz", "median ms", "p99 ms", "ratio median", "ratio p99", "per-frame ratio",
            "vs bare-parallel median / p99", "dropped", "fallbacks", "dropped sync", "output Hz", "foreign load (cores)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, cres in results.get("configs", {}).items():
        for key, run in cres.get("runs", {}).items():
            if "error" in run:
                rows.append(f"| {config} | {key} | {fmt(run.get('rate_hz'), 0)} | error: {run['error']} ||||||||||")
                continue
            lat = run.get("latency_ms", {})
            r = run.get("ratio_vs_bare") or {}
            rp = run.get("ratio_vs_bare_parallel")
            vs_par = f"{fmt(rp.get('median'), 2)} / {fmt(rp.get('p99'), 2)}" if rp else "n/a"
            out_hz = run.get("output_hz") if run.get("mode") != "bare" else run.get("max_throughput_hz")
            rows.append(
                f"| {config} | {key} | {fmt(run.get('rate_hz'), 0)} | {fmt(lat.get('median_ms'))} | {fmt(lat.get('p99_ms'))} | "
                f"{fmt(r.get('median'), 2)} | {fmt(r.get('p99'), 2)} | {fmt(r.get('per_frame_median'), 2)} | {vs_par} | "
                f"{fmt(run.get('dropped', 0 if run.get('mode') == 'bare' else None))} | {fmt(run.get('fallbacks'))} | "
                f"{fmt(run.get('dropped_synchronized'))} | {fmt(out_hz)}{' (max)' if run.get('mode') == 'bare' else ''} | "
                f"{fmt(run.get('cpu', {}).get('foreign_cores'), 2)} |")
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
            if run.get("model_calls_ms"):  # the forward passes alone (apps/bench/graph.py TimedForwardPass)
                calls = run["model_calls_ms"]
                rows.append(f"| {config} | {key} (forward passes only) | "
                            + " | ".join(_pair(calls[n]) if n in calls else "-" for n in GRAPH_NODES) + " |")
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
            calls = " / ".join(fmt(bare.get(k, {}).get("median_ms")) for k in ("bev_backbone", "student", "planner"))
            cells = [fmt(lat.get(n, {}).get("median_ms")) for n in GRAPH_NODES]
            rows.append(f"| {config} | {key} | {calls} | " + " | ".join(cells)
                        + f" | {fmt(run.get('latency_ms', {}).get('median_ms'))} |")
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
                        f"{fmt(o['torch_ms'].get('median_ms'), 2)} | {fmt(o['onnx_ms'].get('median_ms'), 2)} | "
                        f"{fmt(o['speedup_onnx_over_torch'], 2)} | {fmt(o['export_s'])} |")
    return rows


def print_report(results: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    p = lambda s="": print(s, file=out)
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
          f"{tvs['student']['latency_ms'].get('median_ms', float('nan')):.1f} ms; speedup {fmt(tvs.get('speedup_student_over_teacher'))}x")
    p("\ntargets:")
    for t in results.get("targets", []):
        mark = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        p(f"  [{mark}] {t['target']}: {fmt(t['value'], 3)} (goal {t['goal']})")
    from latentvla_ros.apps.bench.summary import performance_summary

    p("\nissue targets (docs/performance.json):")
    for t in performance_summary(results)["targets"]:
        mark = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        p(f"  [{mark}] {t['target']}: {fmt(t['value'], 3)} (goal {t['goal']})")
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
        "run these are the composed nodes' own runtime objects. The planner node's obstacle guard (its settings) checks "
        "each plan, as in the graph (`GuardedAgent`). This is the reference of the targets.",
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
        "the shipped Fast DDS profile `config/fastdds/large_data.xml` in every process), harness in the benchmark process; "
        "the planner's obstacle guard there reads the frame's LiDAR cloud and its own odometry, not the whole SensorFrame "
        "(`guard_input` auto).",
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
        "the graph being measured. Rows *(forward passes only)*: the wall time of each stage's model call alone "
        "(`TimedForwardPass`, apps/bench/graph.py), in the bare chain and inside the composed graph: whether a "
        "model is slower when the graph runs it, apart from the Python around it.",
        "- **floor** / **floor-hops** / **floor-processes** (`--modes ...,floor`): a no-work rclpy graph of the same "
        "topology and message sizes, measured the same way; see *The floor, graph overhead, repeats*.",
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
                  f"{fmt(t.get('mem_budget_gb'))} GB of {fmt(t.get('mem_available_gb'))} GB available). "
                  f"Student = {s['config']} ({s['parameters'] / 1e6:.1f}M parameters).", "",
                  "| model | params | median ms | p99 ms | runs |", "|---|---|---|---|---|",
                  f"| teacher | {t['parameters'] / 1e9:.3f}B | {fmt(t['latency_ms'].get('median_ms'))} | "
                  f"{fmt(t['latency_ms'].get('p99_ms'))} | {t['latency_ms'].get('count')} |",
                  f"| student | {s['parameters'] / 1e6:.1f}M | {fmt(s['latency_ms'].get('median_ms'))} | "
                  f"{fmt(s['latency_ms'].get('p99_ms'))} | {s['latency_ms'].get('count')} |", "",
                  f"Speedup (teacher median / student median): **{fmt(tvs.get('speedup_student_over_teacher'))}x**. "
                  + (t.get("note", "")), ""]
    conv = {c: r["conversions"] for c, r in results.get("configs", {}).items() if r.get("conversions")}
    if conv:
        lines += ["## Message conversions", "", "| config | conversion | median ms | p99 ms |", "|---|---|---|---|"]
        for c, r in conv.items():
            for name, s in r["time_ms"].items():
                lines.append(f"| {c} | {name} | {fmt(s.get('median_ms'), 3)} | {fmt(s.get('p99_ms'), 3)} |")
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
                  "`latentvla_ros/apps/bench/graph.py`); everything else is unchanged: messages, conversions, feature "
                  "building, synchronisation, executors, the harness. The composed graph's latency then is what ROS and "
                  "the nodes' Python cost by themselves on this machine.", "", *[f"- {line}" for line in floor], ""]
    from latentvla_ros.apps.bench.summary import performance_summary, summary_lines

    lines += ["## The floor, graph overhead, repeats (docs/performance.json)", "",
              "The `floor` runs: a no-work rclpy graph of the same topology and message sizes (sensors in over DDS, a "
              "synchroniser, two parallel stages, a planner, the trajectory back over DDS; `latentvla_ros/apps/bench/"
              "floor.py`), with the stages called directly after the sensor subscription (`floor`) and with one executor "
              "hop per node (`floor_hops`), and with each node in a process of its own, the frame, BEV and plan over DDS "
              "(and to the planner the frame's LiDAR cloud, as its obstacle guard takes it there) "
              "(`floor_processes`: the floor of the `processes` runs). With `--repeat N` each figure is the median over "
              "the N runs.", "",
              *summary_lines(performance_summary(results)), ""]
    lines += ["## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {fmt(t['value'], 3)} | {t['goal']} | {t['met']} |")
    lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    kept = hand_written_section(path.read_text()) if path.is_file() else ""
    if kept:
        lines += [kept, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


#: docs/performance.md is regenerated whole by ``--write-docs``; what stands between these markers
#: (written by hand: measured changes and their effect) is carried over into the new page
HAND_WRITTEN_BEGIN = "<!-- hand-written:begin (kept by `latentvla bench --write-docs`) -->"
HAND_WRITTEN_END = "<!-- hand-written:end -->"


def hand_written_section(text: str) -> str:
    """The hand-written block of a performance page, markers included ('' when it has none)."""
    begin = text.find(HAND_WRITTEN_BEGIN)
    end = text.find(HAND_WRITTEN_END, begin + 1)
    if begin < 0 or end < 0:
        return ""
    return text[begin:end + len(HAND_WRITTEN_END)]
