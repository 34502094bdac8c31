"""Stage dart (training/rounds.py): data-aggregation rounds fine-tune the previous round's planner
on all logs so far, score every round through the evaluator, resume, and export the last round."""
from __future__ import annotations

import argparse
import json

from latentvla_ros.data.highway import generate_log
from latentvla_ros.training import rounds
from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.pipeline import export_checkpoints
from latentvla_ros.training.planner import train_planner


def test_rounds_finetune_score_resume_and_export_the_last(tmp_path, monkeypatch):
    base = []
    for scenario, seed in (("highway", 0), ("merge", 0)):
        generate_log(tmp_path / "data" / f"{scenario}_{seed}", scenario, seed=seed, num_frames=48)
        base.append(tmp_path / "data" / f"{scenario}_{seed}")
    extra = tmp_path / "recovery" / "highway_1"
    generate_log(extra, "highway", seed=1, num_frames=48)
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
