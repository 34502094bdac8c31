"""``latentvla bench``: runs the selected sections and writes ``bench.json`` (and the docs page)."""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentvla_ros.apps.bench.data import ConfigData, frame_messages, in_worker, prepare_checkpoints, prepare_log
from latentvla_ros.apps.bench.graph import run_config_graph
from latentvla_ros.apps.bench.meters import round_floats
from latentvla_ros.apps.bench.options import BenchOptions, add_bench_arguments, resolve_options
from latentvla_ros.apps.bench.report import evaluate_targets, print_report, write_docs
from latentvla_ros.apps.bench.sections import conversions_section, onnx_section, teacher_section
from latentvla_ros.apps.bench.summary import write_summary
from latentvla_ros.apps.reporting import machine_info, other_processes

log = logging.getLogger(__name__)


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
                 "warmup": opts.warmup, "repeat": opts.repeat, "sections": opts.sections, "domain_id": opts.domain_id,
                 "executors": opts.executors, "node_overrides": opts.overrides,
                 "machine": machine_info(), "loadavg_start": list(os.getloadavg()),
                 "other_processes_start": other_processes()},
        "configs": {}, "notes": [],
    }
    json_path = opts.out / "bench.json"

    def save() -> None:
        results["targets"] = evaluate_targets(results)
        json_path.write_text(json.dumps(round_floats(results), indent=1))

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
            except Exception as exc:  # noqa: BLE001 - a failing section is recorded in bench.json, the others still run
                cres["conversions_error"] = f"{type(exc).__name__}: {exc}"
            save()
        if "graph" in opts.sections:
            cres["runs"] = run_config_graph(opts, data, report)
            save()
            for r in range(1, opts.repeat):  # the same runs again: their spread goes into docs/performance.json
                report(f"[{config}] graph runs, repeat {r + 1}/{opts.repeat}")
                cres.setdefault("repeat_runs", []).append(run_config_graph(opts, data, report))
                save()
        if "onnx" in opts.sections:
            report(f"[{config}] onnx export + comparison")
            try:
                cres["onnx"] = in_worker(onnx_section, opts, data, runs=10 if opts.quick or config == "paper" else 30)
            except Exception as exc:  # noqa: BLE001 - a failing section is recorded in bench.json, the others still run
                cres["onnx_error"] = f"{type(exc).__name__}: {exc}"
            save()
        teacher_here = config == "paper" or ("paper" not in opts.configs and config == opts.configs[-1])
        if "teacher" in opts.sections and teacher_here:
            report(f"[{config}] teacher vs student")
            try:
                results["teacher_vs_student"] = in_worker(teacher_section, opts, data)
            except Exception as exc:  # noqa: BLE001 - a failing section is recorded in bench.json, the others still run
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
        repo = Path(__file__).resolve().parents[3]
        path = opts.docs_path or repo / "docs" / "performance.md"
        write_docs(round_floats(results), path)
        # README's paragraph only when the page goes to the repository's docs/ (not a --docs-path elsewhere)
        readme = repo / "README.md" if path.parent.resolve() == (repo / "docs").resolve() else None
        summary = write_summary(results, path.parent, readme)
        print(f"wrote {path}, {path.parent / 'performance.json'}"
              + (f", {readme} (latency paragraph)" if readme is not None and "readme" not in summary else ""))
        if summary.get("readme"):
            print(summary["readme"])
    return 0


def script_main(argv: list[str] | None = None, **defaults: Any) -> int:
    """Entry point of ``benchmarks/bench_*.py``: the bench options with other defaults."""
    from latentvla_ros.apps import bench as package  # its docstring describes the whole bench

    parser = add_bench_arguments(argparse.ArgumentParser(description=package.__doc__.splitlines()[0]))
    parser.set_defaults(**defaults)
    return main(parser.parse_args(argv))
