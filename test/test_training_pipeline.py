"""`latentvla train`: torchrun with 2 CPU processes on gloo, and the whole chain end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from latentvla_ros.core.checkpoint import read_checkpoint_config


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory):
    from latentvla_ros.data.highway import generate_dataset

    root = tmp_path_factory.mktemp("train_data")
    generate_dataset(root, scenarios=("highway", "merge"), seeds=(0,), frames_per_log=70, progress=False)
    return root


def _cli(*args, env_extra=None, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_two_cpu_processes_on_gloo(tiny_logs, tmp_path):
    out = tmp_path / "run"
    proc = _cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "latentvla_ros.cli",
                "train", "planner", "--fusion", "none", "--data", str(tiny_logs), "--out", str(out),
                "--max-steps", "3", "--epochs-scale", "0.1", "--batch-size", "4", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # both ranks trained; rank 0 alone wrote the checkpoints and the metrics
    metrics = (out / "planner_none" / "metrics.csv").read_text().splitlines()
    assert len(metrics) >= 2 and metrics[0].startswith("step,")
    assert read_checkpoint_config(out / "planner_none" / "planner")["model_type"] == "planner"
    assert read_checkpoint_config(out / "planner_none" / "bev_backbone")["model_type"] == "bev_backbone"


def test_a_new_report_keeps_the_hand_written_ablation_sections(tmp_path):
    """write_report(keep_from=): the sections written by hand (ablations run apart from the chain) survive a new
    report; the generated ones are replaced; a report without them keeps nothing."""
    from latentvla_ros.training.pipeline import hand_written_sections, write_report

    old = tmp_path / "old.md"
    old.write_text("# Training report\n\n## Wall-clock time per stage\n\nOLD TIMES\n\n"
                   "## Ablations from the previous chain\n\nhand text\n\n### Ablation: x\n\nmore\n")
    assert hand_written_sections(old.read_text()).startswith("## Ablations from the previous chain\n")
    assert hand_written_sections("# Training report\n\n## Data\n") == ""
    new = tmp_path / "new.md"
    write_report(tmp_path / "empty_run", {"data": 60.0}, new, "latentvla train all ...", keep_from=old)
    text = new.read_text()
    assert "OLD TIMES" not in text and "| data | 1.0 |" in text
    assert text.endswith("## Ablations from the previous chain\n\nhand text\n\n### Ablation: x\n\nmore\n")
    assert text.index("## Planners") < text.index("## Ablations")
    write_report(tmp_path / "empty_run", {"data": 60.0}, new, "latentvla train all ...", keep_from=tmp_path / "missing.md")
    assert "## Ablations" not in new.read_text()


@pytest.mark.slow
def test_train_all_chain_exports_checkpoints_the_nodes_load(tiny_logs, tmp_path):
    out, export = tmp_path / "all", tmp_path / "ckpt"
    proc = _cli("-m", "latentvla_ros.cli", "train", "all", "--data", str(tiny_logs), "--out", str(out), "--max-steps", "3",
                "--epochs-scale", "0.1", "--export-to", str(export), "--dart-seeds", "1", "--dart-frames", "60", "--dart-epochs", "1",
                "--no-round-eval", timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in ("lam", "teacher", "student", "planner", "dart", "ego_mlp"):
        assert json.loads((out / stage / "DONE.json").read_text())["seconds"] > 0
    from latentvla_ros.runtime import build_pipeline_from_dir

    agent = build_pipeline_from_dir(export)
    assert not agent.untrained
    report = (out / "training.md").read_text()
    assert "copy the last frame" in report and "top-1 agreement" in report
    # a second run resumes: every stage is skipped
    again = _cli("-m", "latentvla_ros.cli", "train", "all", "--data", str(tiny_logs), "--out", str(out), "--max-steps", "3")
    assert again.returncode == 0 and again.stdout.count("already done") == 7
