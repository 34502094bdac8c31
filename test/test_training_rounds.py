"""Stage dart (training/rounds.py): data-aggregation rounds fine-tune the previous round's planner
on all logs so far, score every round through the evaluator, resume, and export the last round."""
from __future__ import annotations

import argparse
import json
import shutil

from latentvla_ros.data.highway import generate_log
from latentvla_ros.training import rounds
from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.pipeline import export_checkpoints
from latentvla_ros.training.planner import train_planner


def _logs(tmp_path):
    """Two base logs and one stand-in recovery log."""
    base = []
    for scenario, seed in (("highway", 0), ("merge", 0)):
        generate_log(tmp_path / "data" / f"{scenario}_{seed}", scenario, seed=seed, num_frames=48)
        base.append(tmp_path / "data" / f"{scenario}_{seed}")
    extra = tmp_path / "recovery" / "highway_1"
    generate_log(extra, "highway", seed=1, num_frames=48)
    return base, extra


def test_rounds_finetune_score_resume_and_export_the_last(tmp_path, monkeypatch):
    base, extra = _logs(tmp_path)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=1, max_steps=2, seed=0)
    out = tmp_path / "run"
    train_planner(base, rounds.planner_dir(out, "none", 0), "edge", "none", cfg, holdout_fraction=0.0,
                  show_progress=False)
    generated, scored = [], []

    def fake_recovery(args, k, *rest):
        generated.append(k)
        return [extra]

    def evaluate(o, work_dir, k):
        scored.append(k)
        return {"summary": {"e2e_none": {"score": 40.0 + k, "off_road_rate": 0.5 - 0.1 * k, "collision_rate": 0.0,
                                         "route_completion": 0.5, "per_scenario": {"roundabout": {"off_road_rate": 0.9}}}}}

    monkeypatch.setattr(rounds, "generate_recovery", fake_recovery)
    args = argparse.Namespace(preset="edge", dart_rounds=2, dart_seeds=1, dart_frames=48, dart_epochs=1,
                              no_resume=False, seed=0)
    record = rounds.run_rounds(args, out, base, ("none",), ("highway",), lambda _base: cfg, evaluate, holdout_fraction=0.0)
    assert scored == [0, 1, 2] and generated == [1, 2]
    assert rounds.latest_round(out, "none") == 2
    for k in (1, 2):
        meta = json.loads((rounds.planner_dir(out, "none", k) / "planner" / "config.json").read_text())["meta"]
        assert meta["init_from"] == str(rounds.planner_dir(out, "none", k - 1))
        assert len(meta["log_dirs"]) == len(base) + k  # every round's logs so far
    assert record["rounds"]["2"]["recovery_logs"] == 1
    assert json.loads((out / rounds.ROUNDS_FILE).read_text())["rounds"]["1"]["closed_loop"]["summary"]["e2e_none"]["score"] == 41.0
    # a second run resumes: nothing is generated, trained or scored again
    before = (rounds.planner_dir(out, "none", 2) / "planner" / "model.safetensors").read_bytes()
    rounds.run_rounds(args, out, base, ("none",), ("highway",), lambda _base: cfg, evaluate, holdout_fraction=0.0)
    assert scored == [0, 1, 2]
    assert (rounds.planner_dir(out, "none", 2) / "planner" / "model.safetensors").read_bytes() == before
    # the export ships the last round; an explicit round exports that one
    export_checkpoints(out, tmp_path / "ckpt", onnx=False)
    assert (tmp_path / "ckpt" / "variants" / "none" / "planner" / "model.safetensors").read_bytes() == before
    export_checkpoints(out, tmp_path / "ckpt0", round_index=0, onnx=False)
    first = (rounds.planner_dir(out, "none", 0) / "planner" / "model.safetensors").read_bytes()
    assert (tmp_path / "ckpt0" / "variants" / "none" / "planner" / "model.safetensors").read_bytes() == first != before
    lines = "\n".join(rounds.rounds_report_lines(out))
    assert "| 2 | e2e_none | 1 | 42.0 | 0.30 |" in lines and "roundabout 0.90" in lines


def test_action_jitter_round_finetunes_the_student_planner_alone_and_ships_it(tmp_path, monkeypatch):
    """--dart-action-jitter: after the rounds one more round (recovery logs of its own) trains the student-fused
    planner from its last round with PlannerConfig.action_jitter on all logs so far; the other planners keep their last
    round in the export (also when round k is exported explicitly, as the round evaluator does)."""
    import torch

    from latentvla_ros.models.configuration_student import StudentConfig
    from latentvla_ros.models.modeling_student import LatentStudent

    base, extra = _logs(tmp_path)
    torch.manual_seed(0)
    out = tmp_path / "run"
    LatentStudent(StudentConfig.preset("edge")).save_pretrained(out / "student_run" / "student")
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=1, max_steps=2, seed=0)
    for fusion in ("none", "student"):
        train_planner(base, rounds.planner_dir(out, fusion, 0), "edge", fusion, cfg, holdout_fraction=0.0,
                      show_progress=False, student_checkpoint=out / "student_run" / "student" if fusion == "student" else None)
    generated, scored = [], []
    monkeypatch.setattr(rounds, "generate_recovery", lambda args, k, *rest: generated.append(k) or [extra])
    args = argparse.Namespace(preset="edge", dart_rounds=1, dart_seeds=1, dart_frames=48, dart_epochs=1,
                              dart_action_jitter=0.5, dart_jitter_epochs=1, no_resume=False, seed=0)
    record = rounds.run_rounds(args, out, base, ("none", "student"), ("highway",), lambda _base: cfg,
                               lambda o, w, k: scored.append(k) or {"summary": {}}, holdout_fraction=0.0)
    assert generated == [1, 2] and scored == [0, 1, 2]
    assert rounds.latest_round(out, "student") == 2 and rounds.latest_round(out, "none") == 1
    saved = json.loads((rounds.planner_dir(out, "student", 2) / "planner" / "config.json").read_text())
    assert saved["config"]["action_jitter"] == 0.5
    assert saved["meta"]["init_from"] == str(rounds.planner_dir(out, "student", 1))
    assert len(saved["meta"]["log_dirs"]) == len(base) + 2  # every round's logs, its own included
    r1 = json.loads((rounds.planner_dir(out, "student", 1) / "planner" / "config.json").read_text())
    assert r1["config"]["action_jitter"] == 0.0
    assert record["rounds"]["2"]["recovery_logs"] == 1 and record["rounds"]["2"]["action_jitter"] == 0.5
    for kwargs in ({}, {"round_index": 2}):
        dest = tmp_path / f"ckpt{len(kwargs)}"
        export_checkpoints(out, dest, onnx=False, **kwargs)
        for fusion, k in (("student", 2), ("none", 1)):
            src = rounds.planner_dir(out, fusion, k) / "planner" / "model.safetensors"
            assert (dest / "variants" / fusion / "planner" / "model.safetensors").read_bytes() == src.read_bytes()
        assert json.loads((dest / "planner" / "config.json").read_text())["config"]["action_jitter"] == 0.5
    # scored rounds: a jitter round that loses validation score is rejected and the export keeps the round before
    for name, scores, kept in (("worse", {1: 80.0, 2: 70.0}, 1), ("better", {1: 80.0, 2: 85.0}, 2)):
        other = tmp_path / name
        for sub in ("student_run", "planner_none", "planner_student"):
            shutil.copytree(out / sub, other / sub)
        record = rounds.run_rounds(args, other, base, ("none", "student"), ("highway",), lambda _base: cfg,
                                   lambda o, w, k: {"summary": {"e2e_student": {"score": scores.get(k, 60.0)}}},
                                   holdout_fraction=0.0)
        assert rounds.latest_round(other, "student") == kept and record["rounds"]["2"].get("rejected", False) == (kept == 1)
        export_checkpoints(other, tmp_path / f"ckpt_{name}", onnx=False)
        shipped = json.loads((tmp_path / f"ckpt_{name}" / "planner" / "config.json").read_text())["config"]
        assert shipped["action_jitter"] == (0.5 if kept == 2 else 0.0)
        report = "\n".join(rounds.rounds_report_lines(other))
        assert ("action jitter 0.5, rejected" in report) == (kept == 1)
