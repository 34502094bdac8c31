"""`latentvla evaluate` end to end on tiny data, the ego-status MLP, splits and statistics."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from latentvla_ros.apps.evaluate import EvalPlan, bootstrap_ci, main, resolve_methods
from latentvla_ros.data import splits
from latentvla_ros.evaluation.ego_mlp import EgoMLPPlanner
from latentvla_ros.models.configuration_ego_mlp import EgoMLPConfig
from latentvla_ros.training.ego_mlp import train_ego_mlp


@pytest.fixture(scope="module")
def train_logs(tmp_path_factory):
    from latentvla_ros.data.highway import generate_log

    root = tmp_path_factory.mktemp("ego_train")
    for scenario, seed in (("highway", 1), ("merge", 2)):
        generate_log(root / f"{scenario}_{seed}", scenario=scenario, seed=seed, num_frames=50)
    return root


def test_ego_mlp_trains_and_its_loss_falls(train_logs, tmp_path):
    info = train_ego_mlp(train_logs, tmp_path / "mlp", EgoMLPConfig(epochs=25, batch_size=16))
    losses = info["losses"]
    assert len(losses) == 25 and losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "mlp" / "model.safetensors").is_file() and (tmp_path / "mlp" / "config.json").is_file()
    planner = EgoMLPPlanner.from_checkpoint(tmp_path / "mlp")
    from latentvla_ros.data.log_format import DrivingLog, list_logs

    log = DrivingLog(list_logs(train_logs)[0])
    traj = planner.plan(log.sensor_frame(5))
    assert traj.poses.shape == (8, 3) and np.all(np.isfinite(traj.poses)) and planner.model_id.startswith("ego_mlp:")
    # it learned to drive forward at roughly the logged speed
    assert traj.poses[-1, 0] > 0.5 * log.future_trajectory(5)[-1, 0]


def test_ego_mlp_refuses_evaluation_seeds(tmp_path):
    from latentvla_ros.data.highway import generate_log

    generate_log(tmp_path / "leak", scenario="merge", seed=splits.OPEN_LOOP_TEST_SEEDS[0], num_frames=45)
    with pytest.raises(splits.SplitLeakError):
        train_ego_mlp([tmp_path / "leak"], tmp_path / "mlp", EgoMLPConfig(epochs=1))


def test_splits_are_reserved_and_disjoint():
    assert all(splits.is_reserved_seed(s) for s in splits.OPEN_LOOP_TEST_SEEDS + splits.CLOSED_LOOP_SEEDS)
    assert not set(splits.OPEN_LOOP_TEST_SEEDS) & set(splits.CLOSED_LOOP_SEEDS)
    assert set(splits.QUICK_OPEN_LOOP_SEEDS) <= set(splits.OPEN_LOOP_TEST_SEEDS)
    splits.check_training_seeds(range(0, splits.RESERVED_SEED_START))
    with pytest.raises(splits.SplitLeakError):
        splits.check_training_seeds([3, splits.RESERVED_SEED_START])
    assert len(splits.closed_loop_episodes()) == len(splits.SCENARIOS) * len(splits.CLOSED_LOOP_SEEDS)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(3)
    values = rng.normal(0.7, 0.1, 50)
    a, b = bootstrap_ci(values, 1000, seed=0), bootstrap_ci(values, 1000, seed=0)
    assert a == b and a["ci_low"] < a["mean"] < a["ci_high"] and a["n"] == 50
    wide = bootstrap_ci(values[:5], 1000, seed=0)
    assert wide["ci_high"] - wide["ci_low"] > a["ci_high"] - a["ci_low"]
    assert np.isnan(bootstrap_ci([], 10)["mean"]) and bootstrap_ci([float("nan"), 1.0])["mean"] == 1.0


def test_missing_checkpoints_are_not_substituted(tmp_path):
    specs = resolve_methods(tmp_path / "nothing", allow_untrained=False, ego_mlp_dir=None, ego_mlp_reason="no checkpoint")
    for name in ("latentvla_none", "latentvla_student", "latentvla_teacher", "ego_mlp"):
        assert not specs[name].available and "no checkpoint" in specs[name].status()
    assert specs["constant_velocity"].available and specs["expert"].available
    flagged = resolve_methods(tmp_path / "nothing", allow_untrained=True, ego_mlp_dir=None)
    assert flagged["latentvla_student"].available and flagged["latentvla_student"].status() == "UNTRAINED"


def test_quick_evaluate_end_to_end(train_logs, tmp_path, capsys):
    plan = EvalPlan(scenarios=("highway",), open_loop_seeds=splits.QUICK_OPEN_LOOP_SEEDS, open_loop_frames=45,
                    closed_loop_seeds=splits.QUICK_CLOSED_LOOP_SEEDS, closed_loop_steps=8, bootstrap_samples=100,
                    ego_mlp_epochs=3, num_examples=1,
                    open_loop_methods=("constant_velocity", "ego_mlp", "pdm_closed", "latentvla_none",
                                       "latentvla_student", "latentvla_teacher", "expert"),
                    closed_loop_methods=("constant_velocity", "ego_mlp", "pdm_closed", "latentvla_student",
                                         "latentvla_teacher", "latentvla_student_shuffled", "latentvla_student_zeroed",
                                         "expert"),
                    ros_subset_seeds=splits.QUICK_CLOSED_LOOP_SEEDS)
    out, docs = tmp_path / "eval", tmp_path / "docs" / "results.md"
    args = argparse.Namespace(out=str(out), checkpoints=str(tmp_path / "no_checkpoints"), quick=True, workers=1,
                              write_docs=True, allow_untrained=True, test_data=str(tmp_path / "test_logs"),
                              train_data=str(train_logs), plan=plan, docs_path=str(docs), command_line="pytest")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "### Open loop" in printed and "### Closed loop" in printed
    assert "Constant velocity" in printed and "UNTRAINED" in printed and "Expert (ceiling)" in printed
    scores = json.loads((out / "scores.json").read_text())
    assert scores["schema_version"] == 1
    assert {"meta", "splits", "methods", "open_loop", "closed_loop"} <= set(scores)
    assert scores["meta"]["machine"]["cores"] >= 1 and scores["meta"]["command"] == "pytest"
    assert scores["splits"]["reserved_seed_start"] == splits.RESERVED_SEED_START
    scenes = scores["open_loop"]["scenes"]
    assert scenes and {"method", "scenario", "seed", "frame", "pdms", "nc", "dac", "ttc", "ep", "c"} <= set(scenes[0])
    assert {r["method"] for r in scenes} >= {"constant_velocity", "pdm_closed", "expert", "latentvla_student"}
    assert all(0.0 <= r["pdms"] <= 1.0 for r in scenes)
    summary = scores["open_loop"]["summary"]["expert"]["pdms"]
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    # the scores are computed, not constants: every row is NC * DAC * (5 TTC + 5 EP + 2 C) / 12 of its own
    # sub-scores, the summaries are the means of the rows, and the methods do not all score alike
    for r in scenes:
        assert r["pdms"] == pytest.approx(r["nc"] * r["dac"] * (5 * r["ttc"] + 5 * r["ep"] + 2 * r["c"]) / 12), r
    by_method = {}
    for r in scenes:
        by_method.setdefault(r["method"], []).append(r["pdms"])
    for method, values in by_method.items():
        assert scores["open_loop"]["summary"][method]["pdms"]["mean"] == pytest.approx(np.mean(values)), method
    assert len({round(np.mean(v), 6) for v in by_method.values()}) > 1
    assert len({(r["nc"], r["dac"], r["ttc"], r["ep"], r["c"]) for r in scenes}) > 1
    # untrained weights cannot plan as well as the logged expert on the same scenes
    assert np.mean(by_method["latentvla_student"]) < np.mean(by_method["expert"])
    episodes = scores["closed_loop"]["episodes"]
    assert {e["method"] for e in episodes} >= {"constant_velocity", "ego_mlp", "pdm_closed", "expert", "latentvla_student"}
    # the ROS-graph subset ran (in the evaluating process, after the fan-out) beside the direct path
    ros = [e for e in episodes if e["method"] == "latentvla_student_ros"]
    assert len(ros) == len(splits.QUICK_CLOSED_LOOP_SEEDS) and all(e["termination"] != "error" for e in ros), ros
    for e in episodes:
        assert {"scenario", "seed", "collision", "off_road", "progress_m", "mean_speed_mps", "comfort", "score",
                "nc", "dac", "ep", "c", "path", "termination"} <= set(e)
    expert = [e for e in episodes if e["method"] == "expert"][0]
    assert expert["ep"] == 1.0
    for e in episodes:  # the closed-loop score of each episode from its own sub-scores
        if e["collision"] or e["off_road"]:
            assert e["score"] == 0.0, e
        elif not np.isnan(e["ep"]):
            assert e["score"] == pytest.approx(e["nc"] * e["dac"] * (5 * e["ep"] + 2 * e["c"]) / 7), e
    assert len({round(e["progress_m"], 3) for e in episodes}) > 1
    status = scores["closed_loop"]["status"]
    assert status["latentvla_teacher"].startswith("not available")  # no teacher node / checkpoint: never substituted
    assert scores["methods"]["latentvla_student"]["status"] == "UNTRAINED"
    for name in ("open_loop_pdms.png", "closed_loop_score.png", "examples.png", "closed_loop_paths.png", "summary.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    text = docs.read_text()
    assert "pytest" in text and "| Method |" in text and "Machine:" in text
    # results.json beside results.md, in the shape; the ROS-graph twin ran on the subset
    headline = json.loads((docs.parent / "results.json").read_text())
    assert headline == json.loads((out / "results.json").read_text())
    assert {"open_loop", "closed_loop", "paired"} <= set(headline)
    assert {"expert", "reference", "constant_velocity", "e2e_student"} <= set(headline["open_loop"])
    assert set(headline["open_loop"]["expert"]) >= {"scenes", "pdms", "per_scenario"}
    student = headline["closed_loop"]["e2e_student"]
    assert {"episodes", "score", "collision_rate", "off_road_rate", "route_completion", "per_scenario"} <= set(student)
    assert 0.0 <= student["route_completion"] <= 1.0 and 0.0 <= student["score"] <= 100.0
    assert {"e2e_student_ros", "e2e_student_shuffled", "e2e_student_zeroed"} <= set(headline["closed_loop"])
    pair = headline["paired"]["e2e_student_ros vs e2e_student"]
    assert pair["episodes"] == 1 and len(pair["ci95"]) == 2


def test_readme_results_paragraph_checks_the_targets_per_scenario(tmp_path):
    """README's results paragraph comes from results.json: the per-scenario targets are checked by
    hand-made numbers (one scenario misses each target, one meets all), and only the text between
    the markers changes."""
    from latentvla_ros.apps.results_readme import RESULTS_BEGIN, RESULTS_END, closed_loop_misses, update_readme_results

    def cl(score, off, coll, rc):
        return {"score": score, "off_road_rate": off, "collision_rate": coll, "route_completion": rc}

    results = {
        "open_loop": {"expert": {"pdms": 96.0, "per_scenario": {"highway": 98.0}}, "reference": {"pdms": 94.0}},
        "closed_loop": {
            "expert": {**cl(95.0, 0, 0, 0.9), "episodes": 8,
                       "per_scenario": {"highway": cl(99.0, 0, 0, 1.0), "roundabout": cl(90.0, 0, 0, 0.8)}},
            "reference": {**cl(90.0, 0, 0, 0.9), "episodes": 8,
                          "per_scenario": {"highway": cl(95.0, 0, 0, 1.0), "roundabout": cl(80.0, 0, 0, 0.8)}},
            "e2e_student": {**cl(70.0, 0.1, 0.1, 0.8), "episodes": 8,
                            "per_scenario": {"highway": cl(96.0, 0.0, 0.0, 0.95),
                                             "roundabout": cl(40.0, 0.25, 0.06, 0.70)}},
        },
        "paired": {"e2e_student vs e2e_none": {"mean": 3.0, "ci95": [1.0, 5.0], "episodes": 8}},
        "meta": {"command": "latentvla evaluate --write-docs", "wall_s": 600.0, "checkpoints": "checkpoints/edge"},
    }
    misses = closed_loop_misses(results)
    assert misses == ["roundabout off-road 25%", "roundabout collisions 6%",
                      "roundabout route completion 0.70 < 0.9 x expert 0.80", "roundabout score 40.0 < reference 80.0"]
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nbefore\n{RESULTS_BEGIN}\nold numbers\n{RESULTS_END}\nafter\n")
    assert update_readme_results(readme, results)
    text = readme.read_text()
    assert text.startswith("# title\nbefore\n") and text.endswith(f"{RESULTS_END}\nafter\n")
    assert "old numbers" not in text and "fused student vs no fusion +3.0 [+1.0, +5.0]" in text
    assert "not met: roundabout off-road 25%" in text and "10 min here" in text
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not update_readme_results(tmp_path / "plain.md", results)
    assert (tmp_path / "plain.md").read_text() == "no markers\n"


def test_readme_results_paragraph_reports_the_model_without_the_guard():
    """With an unguarded row, README says what the model alone does and the paired guard effect; without one, nothing."""
    from latentvla_ros.apps.results_readme import results_paragraph

    def cl(score, coll, rc):
        return {"score": score, "off_road_rate": 0.0, "collision_rate": coll, "route_completion": rc, "episodes": 4,
                "per_scenario": {"roundabout": {"score": score, "off_road_rate": 0.0, "collision_rate": coll,
                                                "route_completion": rc}}}

    results = {"open_loop": {"e2e_student_unguarded": {"pdms": 88.5}},
               "closed_loop": {"e2e_student": cl(85.0, 0.0, 0.9), "e2e_student_unguarded": cl(70.0, 0.25, 0.7)},
               "paired": {"e2e_student vs e2e_student_unguarded": {"mean": 15.0, "ci95": [5.0, 25.0], "episodes": 4}}}
    text = results_paragraph(results)
    assert ("model alone scores open-loop 88.5, closed loop 70.0 (at-fault collisions 25%: roundabout 25%; "
            "route completion 0.70); guarded vs alone +15.0 [+5.0, +25.0] (paired)") in text
    del results["closed_loop"]["e2e_student_unguarded"]
    assert "Obstacle guard" not in results_paragraph(results)
