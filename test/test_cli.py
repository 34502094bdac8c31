"""The `latentvla` command: graph start-up and parameter rejection, labeling from a bag."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest


def _latentvla(*args, timeout=120, module="latentvla_ros.cli"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.mark.parametrize("module", ["latentvla_ros.cli", "latentvla_ros.apps.cli"])  # the shim and the command
def test_run_rejects_a_bad_parameter_before_starting(module):
    proc = _latentvla("run", "--set", "sensor_sync.slop_s=-1", module=module)
    assert proc.returncode == 2
    assert "slop_s" in proc.stderr and "minimum" in proc.stderr.lower() or "exclusiveMinimum" in proc.stderr


def test_run_rejects_a_bad_param_file(tmp_path):
    bad = tmp_path / "bad.param.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    plan_timeout_s: fast\n")
    proc = _latentvla("run", "--param-file", str(bad))
    assert proc.returncode == 2 and "plan_timeout_s" in proc.stderr


@pytest.mark.parametrize("mode", ["composed", "processes"])
def test_run_starts_the_graph_and_stops_on_sigint(mode):
    proc = subprocess.Popen([sys.executable, "-m", "latentvla_ros.cli", "run", "--mode", mode, "--set",
                             "bev_features.checkpoint=", "--set", "latent_reasoner.checkpoint=", "--set",
                             "trajectory_planner.checkpoint="], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("planner fusion=" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.2)
        seen = "".join(lines)
        assert "planner fusion=" in seen and "synchronizing cameras" in seen, seen[-3000:]
        assert "UNTRAINED" in seen  # loud about the missing weights
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, "".join(lines)[-3000:]


def test_label_a_bag_with_the_teacher(tmp_path):
    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log
    from latentvla_ros.models.configuration_teacher import TeacherConfig
    from latentvla_ros.models.modeling_teacher import LatentTeacher

    generate_log(tmp_path / "log", scenario="highway", seed=1, num_frames=12)
    write_sensor_bag(tmp_path / "log", tmp_path / "bag", storage="sqlite3")
    LatentTeacher.build(TeacherConfig(preset="tiny")).save(tmp_path / "teacher")
    proc = _latentvla("label", "--teacher", str(tmp_path / "teacher"), "--bag", str(tmp_path / "bag"), "--out",
                      str(tmp_path / "bag_log"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = np.load(tmp_path / "bag_log" / "teacher_probs.npy")
    assert probs.shape[1:] == (12, 16) and probs.shape[0] >= 10
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-4)
