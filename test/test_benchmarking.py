"""`latentvla bench`: option parsing, target evaluation and report writing on synthetic
results (fast), a quick edge-only run that writes bench.json, and (slow) every mode and
section on a few frames."""
from __future__ import annotations

import argparse
import json

import pytest

from latentvla_ros.apps import bench
from latentvla_ros.runtime import resolve_intra_op_threads


def _args(**kw) -> argparse.Namespace:
    parser = bench.add_bench_arguments(argparse.ArgumentParser())
    ns = parser.parse_args([])
    for key, value in kw.items():
        setattr(ns, key, value)
    return ns


def test_options_defaults_and_per_config_values(tmp_path):
    opts = bench.resolve_options(_args(out=str(tmp_path)))
    assert opts.configs == ["edge", "paper"] and opts.modes == ["bare", "composed", "processes", "instant", "floor"]
    assert opts.rates == {"edge": [10.0], "paper": [2.0]} and opts.frames == {"edge": 100, "paper": 100}
    auto = resolve_intra_op_threads(0)
    assert opts.threads == {"edge": auto, "paper": auto} and opts.backends == ["onnx", "torch"]  # the nodes ship onnx
    opts = bench.resolve_options(_args(frames="edge=300,paper=40", rate="edge=20,paper=2:10", domain_id=42,
                                       threads="paper=2"))
    assert opts.frames == {"edge": 300, "paper": 40} and opts.threads == {"edge": auto, "paper": 2}
    assert opts.rates == {"edge": [20.0], "paper": [2.0, 10.0]} and opts.domain_id == 42
    quick = bench.resolve_options(_args(quick=True))
    assert quick.configs == ["edge"] and quick.frames == {"edge": 20} and quick.modes == ["bare", "composed"]
    assert opts.repeat == 1 and bench.resolve_options(_args(repeat=2)).repeat == 2
    with pytest.raises(SystemExit):
        bench.resolve_options(_args(configs="edge,huge"))
    with pytest.raises(SystemExit):
        bench.resolve_options(_args(modes="bare,telepathy"))


def test_cli_parser_has_the_bench_options():
    from latentvla_ros.apps.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--configs", "edge", "--rate", "10", "--write-docs"])
    opts = bench.resolve_options(args)
    assert opts.quick and opts.write_docs and opts.rates == {"edge": [10.0]}


def test_stats_ratios_and_targets():
    s = bench.stats_ms([10.0, 20.0, 30.0, float("nan"), None])
    assert s["count"] == 3 and s["median_ms"] == 20.0 and s["max_ms"] == 30.0
    assert bench.stats_ms([]) == {"count": 0}
    bare = {"latency_ms": bench.stats_ms([10.0] * 10), "per_frame_ms": [10.0] * 10}
    run = {"latency_ms": bench.stats_ms([10.5] * 9 + [20.0]), "per_frame_ms": [10.5] * 9 + [20.0]}
    r = bench._ratios(run, bare)
    assert r["median"] == pytest.approx(1.05) and r["per_frame_median"] == pytest.approx(1.05)
    assert r["p99"] > 1.3
    results = _synthetic_results()
    targets = {t["target"]: t for t in bench.evaluate_targets(results)}
    assert targets["edge[torch]: composed / bare, median"]["met"] is True
    assert targets["edge[torch]: composed / bare, p99"]["met"] is True
    assert targets["edge[torch]: processes / bare, median"]["met"] is False
    assert targets["edge[torch]: dropped synchronized frames at 10 Hz (composed)"]["met"] is True
    assert not any("[onnx]" in name for name in targets)  # no onnx runs in these results: no onnx targets
    assert targets["teacher latency / student latency (same frame)"]["met"] is True


def _synthetic_results() -> dict:
    bare = {"mode": "bare", "rate_hz": 10.0, "latency_ms": bench.stats_ms([50.0] * 20), "per_frame_ms": [50.0] * 20,
            "stages_ms": {k: bench.stats_ms([10.0]) for k in ("bev_backbone", "student", "planner")}}

    def graph(mode, scale):
        lat = [50.0 * scale] * 20
        run = {"mode": mode, "rate_hz": 10.0, "latency_ms": bench.stats_ms(lat), "per_frame_ms": lat, "dropped": 0,
               "fallbacks": 0, "synchronized": 20, "dropped_synchronized": 0, "output_hz": 10.0,
               "nodes_processing_ms": {n: bench.stats_ms([5.0]) for n in bench.GRAPH_NODES}, "cpu": {"foreign_cores": 0.01}}
        run["ratio_vs_bare"] = bench._ratios(run, bare)
        return run

    return {
        "meta": {"date": "2026-11-21T12:00:00+00:00", "command": "latentvla bench --write-docs", "out": "artifacts/bench",
                 "threads": {"edge": 1}, "machine": {"cpu": "test cpu", "cores": 2}, "load_note": "quiet"},
        "configs": {"edge": {"rates_hz": [10.0], "runs": {"bare[torch]": bare, "composed[torch]@10Hz": graph("composed", 1.05),
                                                         "processes[torch]@10Hz": graph("processes", 1.5)}}},
        "teacher_vs_student": {"speedup_student_over_teacher": 120.0,
                               "teacher": {"name": "t", "parameters": 3.0e9, "latency_ms": bench.stats_ms([12000.0]),
                                           "image_size": [112, 112], "image_tokens": 16, "prompt_tokens": 60, "decode_steps": 12},
                               "student": {"config": "paper student", "parameters": 5.0e7, "input": "camera",
                                           "latency_ms": bench.stats_ms([100.0])}},
        "notes": ["a note"],
    }


def test_report_and_docs(tmp_path, capsys):
    results = _synthetic_results()
    results["targets"] = bench.evaluate_targets(results)
    bench.print_report(results)
    printed = capsys.readouterr().out
    assert "composed[torch]@10Hz" in printed and "NOT MET" in printed
    path = bench.write_docs(results, tmp_path / "performance.md")
    text = path.read_text()
    assert "latentvla bench --write-docs" in text and "2026-11-21" in text and "test cpu" in text
    assert "| edge | composed[torch]@10Hz | 10 | 52.5 |" in text
    assert "Teacher vs student" in text and "120.0x" in text
    # a hand-written block (measured changes) survives the next regeneration; the generated part is replaced
    from latentvla_ros.apps.bench.report import HAND_WRITTEN_BEGIN, HAND_WRITTEN_END

    block = f"{HAND_WRITTEN_BEGIN}\n## Changes\n\n- cut X: 0.4 ms\n{HAND_WRITTEN_END}"
    path.write_text(text.replace("## Notes", "stale generated line\n\n" + block + "\n\n## Notes"))
    again = bench.write_docs(results, path).read_text()
    assert again.count("- cut X: 0.4 ms") == 1 and "stale generated line" not in again
    assert again.startswith("# Performance") and again.rstrip().endswith(HAND_WRITTEN_END)


def _check_bench_json(path, modes):
    data = json.loads(path.read_text())
    assert {"meta", "configs", "targets", "notes"} <= set(data)
    assert {"date", "command", "machine", "threads", "loadavg_start"} <= set(data["meta"])
    edge = data["configs"]["edge"]
    runs = edge["runs"]
    assert "bare[torch]" in runs
    bare = runs["bare[torch]"]
    assert bare["latency_ms"]["count"] == edge["frames"]
    assert set(bare["stages_ms"]) == {"bev_backbone", "student", "planner"}
    for mode in modes:
        run = runs[f"{mode}[torch]@10Hz"]
        assert "error" not in run, run.get("error")
        assert {"latency_ms", "ratio_vs_bare", "dropped", "fallbacks", "dropped_synchronized", "nodes_processing_ms",
                "output_hz", "cpu"} <= set(run)
        assert run["frames"] == edge["frames"]
        # every frame got a trajectory and the latency covers the whole chain
        assert run["dropped"] + run["fallbacks"] <= 1, (run["dropped"], run["fallback_reasons"])
        assert run["latency_ms"]["median_ms"] > 0
        assert set(run["nodes_processing_ms"]) == set(bench.GRAPH_NODES)
        assert run["nodes_processing_ms"]["bev_features"]["count"] >= 1
    return data


def test_quick_bench_writes_bench_json(tmp_path):
    """The smoke run (edge, bare + composed, a few frames) completes and writes bench.json."""
    out = tmp_path / "bench"
    code = bench.main(_args(out=str(out), quick=True, frames="6", warmup=2, sections="graph,conversions",
                            command_line="pytest quick bench"))
    assert code == 0
    data = _check_bench_json(out / "bench.json", ["composed"])
    assert data["meta"]["command"] == "pytest quick bench"
    # the bare chain beside a composed graph runs the planner node's obstacle guard too: the same work as the graph
    assert data["configs"]["edge"]["runs"]["bare[torch]"]["obstacle_guard"] is True
    conv = data["configs"]["edge"]["conversions"]
    assert conv["zero_copy"]["image_to_numpy shares the message buffer"] is True
    assert {"sensor_frame_to_core", "bev_to_msg", "msg_to_plan"} <= set(conv["time_ms"])


@pytest.mark.slow
def test_full_bench_edge_every_mode_and_section(tmp_path):
    """processes mode, the ONNX backend in the graph, ONNX comparison, the (tiny) teacher, docs."""
    out = tmp_path / "bench"
    docs = tmp_path / "performance.md"
    code = bench.main(_args(out=str(out), quick=True, frames="6", warmup=2, modes="bare,composed,processes,instant",
                            backends="torch,onnx", write_docs=True, docs_path=str(docs)))
    assert code == 0
    data = _check_bench_json(out / "bench.json", ["composed", "processes", "composed-instant"])
    runs = data["configs"]["edge"]["runs"]
    assert "composed[onnx]@10Hz" in runs and "bare[onnx]" in runs
    # instant forward passes: only for the first backend; the bare chain without model time is far faster
    assert "composed-instant[onnx]@10Hz" not in runs and runs["composed-instant[torch]@10Hz"]["instant_forward_passes"]
    assert runs["bare-instant[torch]"]["latency_ms"]["median_ms"] < runs["bare[torch]"]["latency_ms"]["median_ms"]
    onnx = data["configs"]["edge"]["onnx"]
    for kind in bench.MODEL_KINDS:
        assert onnx[kind]["within_tolerance"], onnx[kind]["outputs"]
        assert onnx[kind]["speedup_onnx_over_torch"] > 0
    tvs = data["teacher_vs_student"]
    assert tvs["teacher"]["parameters"] > 0 and tvs["speedup_student_over_teacher"] > 0
    text = docs.read_text()
    assert "Performance" in text and "What the graph costs besides the models" in text


def test_rounding_keeps_small_differences():
    assert bench._round({"a": 1.23456, "diff": 1.4305e-06, "zero": 0.0, "nan": float("nan")}) == {
        "a": 1.235, "diff": 1.43e-06, "zero": 0.0, "nan": None}


def test_target_values_keep_small_differences_in_print():
    assert bench._fmt(5.4e-06, 3) == "5.4e-06"  # an ONNX tolerance check, not "0.000"
    assert bench._fmt(1.25, 3) == "1.250"
    assert bench._fmt(0.0, 3) == "0.000" and bench._fmt(0.002, 2) == "0.00"  # tables keep their precision


def test_replayed_forward_passes_answer_at_once_and_are_restored():
    class Stage:
        def __init__(self):
            self.calls = 0
            self._run = self.run

        def run(self, **arrays):
            self.calls += 1
            return [arrays["x"] * 2.0]

    import numpy as np

    stage = Stage()
    with bench.instant_forward_passes([stage]):
        first = stage._run(x=np.ones(3))
        again = stage._run(x=np.zeros(3))  # the first output again, not a new model call
        again[0][0] = 99.0  # a copy: callers may not change what later calls get
        assert stage.calls == 1 and np.array_equal(first[0], [2.0, 2.0, 2.0])
        assert np.array_equal(stage._run(x=np.zeros(3))[0], [2.0, 2.0, 2.0])
    assert stage._run == stage.run  # the real model call is back
    assert stage._run(x=np.ones(1))[0][0] == 2.0 and stage.calls == 2


def test_floor_lines_read_the_instant_runs_against_the_target():
    results = _synthetic_results()
    runs = results["configs"]["edge"]["runs"]
    assert bench.floor_lines(results) == []  # no instant runs, nothing said
    runs["bare-instant[torch]"] = {"mode": "bare", "latency_ms": bench.stats_ms([5.0])}
    runs["composed-instant[torch]@10Hz"] = {"mode": "composed", "backend": "torch", "instant_forward_passes": True,
                                            "bare_run": "bare-instant[torch]", "latency_ms": bench.stats_ms([30.0])}
    (line,) = bench.floor_lines(results)
    # graph 30 ms without models, bare 5 ms without: 25 ms of graph; the bare chain with models is 50 ms,
    # its shortest model path max(10, 10) + 10 = 20 ms: about 45 ms = 0.90 x, within 1.10 x
    assert "costs 25.0 ms per frame besides the models" in line and "leaves 5.0 ms" in line
    assert "45.0 ms = 0.90 x" in line and "out of reach" not in line
    runs["composed-instant[torch]@10Hz"]["latency_ms"] = bench.stats_ms([45.0])
    (line,) = bench.floor_lines(results)
    assert "60.0 ms = 1.20 x" in line and "out of reach" in line
    # the processes graph's bound: the no-work graph as processes plus the same shortest model path (20 ms)
    runs["composed-instant[torch]@10Hz"]["rate_hz"] = 10.0
    runs["floor-processes@10Hz"] = {"mode": "floor", "latency_ms": bench.stats_ms([40.0])}
    _, pline = bench.floor_lines(results)
    assert "no-work graph alone takes 40.0 ms" in pline and "60.0 ms = 1.20 x" in pline and "out of reach" not in pline
    runs["floor-processes@10Hz"]["latency_ms"] = bench.stats_ms([50.0])
    _, pline = bench.floor_lines(results)
    assert "70.0 ms = 1.40 x" in pline and "out of reach on this machine by the process floor" in pline


def test_node_times_from_diagnostics_values():
    values = {"processing_count": "12", "processing_median_ms": "3.50", "processing_p99_ms": "9.00",
              "processing_max_ms": "9.10", "latency_count": "0"}
    assert bench._diagnostics_summary(values, "processing") == {"count": 12, "median_ms": 3.5, "p99_ms": 9.0,
                                                                 "max_ms": 9.1}
    assert bench._diagnostics_summary(values, "latency") == {"count": 0}  # no frames with a stamp yet
    assert bench._diagnostics_summary({}, "processing") == {"count": 0}


def _graph_run(median: float, p99: float | None = None, **extra) -> dict:
    lat = {"count": 20, "median_ms": median, "p99_ms": p99 if p99 is not None else median}
    return {"latency_ms": lat, "frames": 20, "dropped": 0, "fallbacks": 0, "dropped_synchronized": 0, **extra}


def _issue_results(composed_2: float = 11.0) -> dict:
    """edge (two repeats) and paper runs as the bench records them, with the floor and instant runs."""
    def edge_runs(composed: float) -> dict:
        return {"bare[onnx]": _graph_run(10.0, 12.0), "composed[onnx]@10Hz": _graph_run(composed, 14.0),
                "processes[onnx]@10Hz": _graph_run(14.0, 20.0), "bare-instant[onnx]": _graph_run(1.0),
                "composed-instant[onnx]@10Hz": _graph_run(4.0, 8.0), "floor@10Hz": _graph_run(2.0, 6.0),
                "floor-hops@10Hz": _graph_run(3.0, 7.0)}

    paper = {"bare[onnx]": _graph_run(700.0), "composed[onnx]@2Hz": _graph_run(
        900.0, 1100.0, fallbacks=1, fallback_reasons={"latent plan timeout": 1},
        node_drops={"bev_features": {"superseded": 3}, "latent_reasoner": {}, "sensor_sync": {"input_gap/odometry": 1}})}
    results = _synthetic_results()
    results["meta"].update(repeat=2, date="2026-12-05T00:00:00+00:00")
    results["configs"] = {"edge": {"rates_hz": [10.0], "runs": edge_runs(10.5), "repeat_runs": [edge_runs(composed_2)]},
                          "paper": {"rates_hz": [2.0], "runs": paper}}
    return results


def test_performance_summary_has_what_the_issue_targets_read(tmp_path):
    """docs/performance.json: the keys the latency targets read (edge/onnx bare, composed, processes,
    instant_bare, instant_composed, floor with median_ms/p99_ms, dropped_frames; paper/onnx composed and
    bare), medians over the repeats with each run's figures, overhead / floor, drops with reasons."""
    s = bench.performance_summary(_issue_results())
    e, p = s["edge"]["onnx"], s["paper"]["onnx"]
    for name in ("bare", "composed", "processes", "instant_bare", "instant_composed", "floor"):
        assert {"median_ms", "p99_ms", "runs"} <= set(e[name]), name
    assert e["composed"]["runs"] == [{"median_ms": 10.5, "p99_ms": 14.0}, {"median_ms": 11.0, "p99_ms": 14.0}]
    assert e["composed"]["median_ms"] == pytest.approx(10.75)  # the median of the two runs
    assert e["composed"]["spread_median_pct"] == pytest.approx(100 * 0.5 / 10.75)
    assert e["dropped_frames"] == 0 and e["graph_overhead_ms"] == pytest.approx(3.0)
    assert e["graph_overhead_over_floor"] == pytest.approx(1.5) and e["graph_overhead_over_floor_hops"] == pytest.approx(1.0)
    assert e["ratios"]["composed_over_bare_median"] == pytest.approx(1.075)
    assert [r["composed_over_bare_median"] for r in e["ratios_each_run"]] == [pytest.approx(1.05), pytest.approx(1.1)]
    assert p["composed"]["median_ms"] == 900.0 and p["bare"]["median_ms"] == 700.0 and p["dropped_frames"] == 1
    assert p["drops"] == {"fallback_reasons": {"latent plan timeout": 1}, "node_drops": {"bev_features": {"superseded": 3}},
                          "sensor_input_gaps": {"input_gap/odometry": 1}}  # the harness's pause, kept apart
    targets = {t["target"].split(":")[1].strip(): t["met"] for t in s["targets"]}
    assert targets["instant composed - instant bare <= 1.5 x floor (ms)"] is True  # 3.0 <= 1.5 x 2.0
    assert targets["composed over bare median"] is True and targets["processes over bare median"] is False
    assert targets["composed median (ms) <= 500 + bare median"] is True
    # a composed graph twice as slow in the second run: the median of the two misses the target
    s = bench.performance_summary(_issue_results(composed_2=20.0))
    assert next(t for t in s["targets"] if "composed over bare median" in t["target"])["met"] is False


def test_write_summary_writes_json_and_readme_paragraph_between_markers(tmp_path):
    from pathlib import Path

    readme_text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    assert bench.README_BEGIN in readme_text and bench.README_END in readme_text  # the shipped README has them
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{bench.README_BEGIN}\nold numbers\n{bench.README_END}\nafter\n")
    summary = bench.write_summary(_issue_results(), tmp_path / "docs", readme)
    data = json.loads((tmp_path / "docs" / "performance.json").read_text())
    assert data["edge"]["onnx"]["floor"]["median_ms"] == 2.0 and data["command"] == "latentvla bench --write-docs"
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "bare chain 10.0 ms" in text and "composed graph 10.8 ms (1.07x" in text and "overhead / floor = 1.50" in text
    assert "bev_features: superseded 3" in text and "2 run(s)" in text and summary["repeat"] == 2
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert bench.write_summary(_issue_results(), tmp_path / "docs", plain)["readme"].endswith("paragraph not written")
    assert plain.read_text() == "no markers\n"


def test_floor_graph_answers_every_frame_over_dds(ros_context):
    """The no-work floor graph (apps/bench/floor.py), every variant, on a few frames: every frame gets its
    trajectory back over DDS; the in-process variants run the four nodes on the shipped graph's four
    threads, floor-processes in four node processes (the frame, BEV and plan over DDS)."""
    import os
    from types import SimpleNamespace

    import numpy as np
    from fixtures.message_samples import samples
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo

    from latentvla_ros.core.types import Trajectory

    sample = samples()
    frame = sample["SensorFrame"]
    msgs = [(CameraInfo(height=4, width=4), frame.lidar, Odometry(), frame.images[0]) for _ in range(6)]
    outputs = bench.FloorOutputs(sample["BevFeatures"], sample["LatentActionPlan"],
                                 Trajectory(poses=np.zeros((8, 3)), stamp_ns=1, model_id="floor:test"))
    opts = SimpleNamespace(domain_id=int(os.environ["ROS_DOMAIN_ID"]), warmup=2, startup_timeout_s=30.0)
    for variant in bench.FLOOR_VARIANTS:
        run = bench.run_floor(opts, outputs, variant, 20.0, msgs[:2], msgs, "front")
        assert run["dropped"] == 0 and run["fallbacks"] == 0 and run["latency_ms"]["count"] == len(msgs), variant
        assert run["mode"] == "floor" and run["variant"] == variant and run["transport"] == bench.FLOOR_VARIANTS[variant]
        if variant != "floor-processes":  # counted in the sync process there
            assert run["synchronized"] == len(msgs)
        assert len(run["executor_threads"]) == 4 and run["hops"] == (variant == "floor-hops")
