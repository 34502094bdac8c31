#!/usr/bin/env bash
# Proves the package builds and tests as a ROS 2 package: `colcon build` + `colcon test` of a
# workspace that contains this repository, with colcon and ROS 2 Kilted from PyPI (the venv is
# the underlay). On a vehicle with apt ROS 2, the same two colcon commands run after sourcing
# /opt/ros/<distro>/setup.bash.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${LATENTVLA_VENV:-$ROOT/.venv}
WS=${COLCON_WS:-$ROOT/build/colcon_ws}
rm -rf "$WS"
mkdir -p "$WS/src"
ln -s "$ROOT" "$WS/src/latentvla_ros"
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
cd "$WS"
colcon build --event-handlers console_direct- --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=ON
# the install space must work without the venv's copy of our messages: put it first
export AMENT_PREFIX_PATH="$WS/install/latentvla_ros:$VENV"
export PYTHONPATH="$WS/install/latentvla_ros/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
colcon test --event-handlers console_direct- --ctest-args -R latentvla
colcon test-result --verbose
