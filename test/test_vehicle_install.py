"""The vehicle install: package.xml names every runtime dependency with a real rosdep key,
and requirements-vehicle.txt fits apt ROS (Humble/Jazzy): numpy stays 1.x, nothing apt
already provides is installed twice, and it resolves for Python 3.10 and 3.12."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# Python module -> the package.xml key that provides it. The python3-* keys were checked
# against ros/rosdistro rosdep/python.yaml (2026-08): apt packages on Ubuntu, or '-pip' keys.
ROSDEP = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "ament_index_python": "ament_index_python",
    "launch": "launch", "launch_ros": "launch_ros", "message_filters": "message_filters", "cv_bridge": "cv_bridge",
    "builtin_interfaces": "builtin_interfaces", "std_msgs": "std_msgs", "geometry_msgs": "geometry_msgs",
    "sensor_msgs": "sensor_msgs", "nav_msgs": "nav_msgs", "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs", "rosgraph_msgs": "rosgraph_msgs",
    "numpy": "python3-numpy", "yaml": "python3-yaml", "cv2": "python3-opencv", "jsonschema": "python3-jsonschema",
    "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib", "ruamel": "python3-ruamel.yaml",
    "torch": "python3-pytorch-pip", "transformers": "python3-transformers-pip",
    "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip",
}
# no rosdep key exists for these: requirements-vehicle.txt
PIP_ONLY = {"safetensors": "safetensors", "tokenizers": "tokenizers", "onnx": "onnx", "mcap": "mcap"}
# optional at run time (imported only where installed) or only for offline work here
OPTIONAL = {"carla_msgs", "foxglove", "highway_env", "ray", "tf2_ros", "tf2_msgs", "ackermann_msgs",
            "autoware_vehicle_msgs", "autoware_planning_msgs"}
# apt's numpy on the supported distributions (Ubuntu 22.04 / 24.04)
APT_NUMPY = {"humble": "1.21.5", "jazzy": "1.26.4"}


def _package_keys() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("depend", "exec_depend", "build_depend") and e.text}


def _vehicle_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements-vehicle.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def _third_party_imports() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted((ROOT / "latentvla_ros").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "latentvla_ros":
                    out.setdefault(top, str(path.relative_to(ROOT)))
    return out


def test_package_xml_declares_every_runtime_dependency():
    keys = _package_keys()
    pip = {r.name.lower() for r in _vehicle_requirements()}
    missing = []
    for module, where in _third_party_imports().items():
        if module in OPTIONAL:
            continue
        if module in ROSDEP:
            if ROSDEP[module] not in keys:
                missing.append(f"{module} ({where}): package.xml lacks <exec_depend>{ROSDEP[module]}</exec_depend>")
        elif module in PIP_ONLY:
            if PIP_ONLY[module] not in pip:
                missing.append(f"{module} ({where}): not in requirements-vehicle.txt")
        else:
            missing.append(f"{module} ({where}): unknown dependency: add its rosdep key here and to package.xml")
    assert not missing, "\n".join(missing)
    assert "rviz2" in keys  # the launch files start RViz with rviz:=true
    assert {"tf2_ros", "ackermann_msgs"} <= keys  # optional here, used on a vehicle where apt has them


def test_vehicle_requirements_keep_apt_numpy_and_do_not_shadow_apt_packages():
    reqs = {r.name.lower(): r for r in _vehicle_requirements()}
    numpy = reqs["numpy"]
    for distro, version in APT_NUMPY.items():
        assert numpy.specifier.contains(Version(version)), f"{distro}'s numpy {version} would be replaced"
    assert not numpy.specifier.contains(Version("2.0.0")), "numpy 2 breaks apt ROS built for numpy 1"
    apt_provided = {"opencv-python", "opencv-python-headless", "pyyaml", "jsonschema", "tqdm", "matplotlib"}
    assert not apt_provided & set(reqs), f"installed twice (apt via rosdep and pip): {apt_provided & set(reqs)}"
    for name in PIP_ONLY.values():
        assert name in reqs


@pytest.mark.slow
@pytest.mark.parametrize("python", ["3.10", "3.12"], ids=["humble-py3.10", "jazzy-py3.12"])
def test_vehicle_requirements_resolve_with_numpy_1(python, tmp_path):
    """pip resolves requirements-vehicle.txt for the distribution's Python with numpy < 2
    (torch excepted: it comes from the PyTorch index for the vehicle's CUDA). Needs the
    package index: skipped with the reason where it cannot be reached."""
    reqs = tmp_path / "req.txt"
    reqs.write_text("\n".join(str(r) for r in _vehicle_requirements() if r.name != "torch") + "\n")
    platforms = [f"--platform={p}" for p in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64",
                                             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
                                             "manylinux_2_35_x86_64")]
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                           f"--python-version={python}", *platforms, "--target", str(tmp_path / "t"),
                           "--report", str(report), "-q", "-r", str(reqs)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, PIP_CONSTRAINT=""))
    if proc.returncode != 0 and ("connection" in proc.stderr.lower() or "network" in proc.stderr.lower()):
        pytest.skip(f"package index not reachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert Version(installed["numpy"]) < Version("2"), installed["numpy"]
    for name in ("transformers", "onnxruntime", "rosbags", "safetensors"):
        assert name in installed
    print(f"\npython {python}: numpy {installed['numpy']}, onnxruntime {installed['onnxruntime']}, "
          f"transformers {installed['transformers']}, rosbags {installed['rosbags']} ({len(installed)} packages)")
