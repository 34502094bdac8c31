"""What `colcon test` checks in the install space (also runs from a checkout)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = os.environ.get("LATENTVLA_TEST_INSTALLED") == "1"


def test_messages_and_package_import_together():
    import latentvla_ros
    from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame, TrajectoryPoint
    from latentvla_ros.ros.topology import graph_nodes

    assert [n.name for n in graph_nodes()] == ["sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner"]
    for cls in (BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame, TrajectoryPoint):
        cls()
    assert latentvla_ros.__version__


@pytest.mark.skipif(not INSTALLED, reason="only meaningful in a colcon install space")
def test_install_space_has_executables_launch_config_and_schemas():
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    share = Path(get_package_share_directory("latentvla_ros"))
    prefix = Path(get_package_prefix("latentvla_ros"))
    for sub in ("launch/latentvla.launch.py", "launch/carla_bridge.launch.py", "launch/autoware.launch.py",
                "config/sensor_sync.param.yaml", "config/autoware/sensor_sync.param.yaml",
                "schema/trajectory_planner.schema.json", "msg/PlannedTrajectory.msg"):
        assert (share / sub).is_file(), sub
    from latentvla_ros.ros.contracts.executables import EXECUTABLES

    for exe in EXECUTABLES:
        path = prefix / "lib" / "latentvla_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), path
    import latentvla_ros.msg

    assert str(prefix) in latentvla_ros.msg.__file__


@pytest.mark.slow
def test_colcon_build_and_test_succeed(tmp_path):
    """`colcon build` + `colcon test` of a workspace holding this repo (colcon from PyPI)."""
    import subprocess

    if INSTALLED:
        pytest.skip("already inside colcon test")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "colcon_check.sh")], env=dict(os.environ, COLCON_WS=str(tmp_path / "ws")),
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 errors, 0 failures" in proc.stdout
