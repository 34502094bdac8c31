#!/usr/bin/env bash
# Creates (or refreshes) the development environment from nothing:
#   1. a venv with the ROS 2 Kilted wheels, torch==2.13.0 (CPU) and the rest of requirements.txt
#   2. our messages (msg/) generated and installed into the venv (the venv is the ament prefix)
#   3. this checkout installed editable (the `latentvla` command)
# Each step is skipped when its inputs did not change (hash stamps), so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${LATENTVLA_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

log() { printf '[bootstrap] %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

deps_hash=$(hash_of requirements.txt)
if [ "$(cat "$VENV/.stamp-deps" 2>/dev/null)" != "$deps_hash" ]; then
  log "installing requirements (torch pinned to the local CPU wheel; ~2 min from nothing)"
  "$PY" -m pip install --disable-pip-version-check -q --upgrade pip
  "$PY" -m pip install --disable-pip-version-check -q -r requirements.txt
  echo "$deps_hash" > "$VENV/.stamp-deps"
  rm -f "$VENV/.stamp-msgs"
fi

msgs_hash=$(hash_of msg/*.msg CMakeLists.txt package.xml)
if [ "$(cat "$VENV/.stamp-msgs" 2>/dev/null)" != "$msgs_hash" ]; then
  log "building messages into the venv"
  # The wheels' generated cmake exports hard-code the include dirs of the machine
  # that built them; point them at this venv's Python and numpy (idempotent).
  py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$PY" -c 'import numpy; print(numpy.get_include())')
  { grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
           -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" "$f"
  done
  build_dir="$ROOT/build/msgs"; mkdir -p "$ROOT/build"
  rm -rf "$build_dir"; mkdir -p "$ROOT/build"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  cmake -S "$ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DLATENTVLA_INSTALL_PYTHON=OFF -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" > "$ROOT/build/msgs-configure.log" 2>&1 \
    || { cat "$ROOT/build/msgs-configure.log"; exit 1; }
  cmake --build "$build_dir" -j "$(nproc)" > "$ROOT/build/msgs-build.log" 2>&1 || { tail -50 "$ROOT/build/msgs-build.log"; exit 1; }
  cmake --install "$build_dir" > /dev/null
  # The generated package must not shadow the checkout's package: drop its
  # __init__.py so it is a plain directory that latentvla_ros/__init__.py extends.
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  for d in "$VENV"/lib/python3*/site-packages/latentvla_ros "$VENV"/local/lib/python3*/dist-packages/latentvla_ros; do
    [ -d "$d" ] || continue
    rm -f "$d/__init__.py"
    # pip would treat the generated egg-info as an installed distribution of
    # this project and delete the messages when installing the checkout.
    rm -rf "$(dirname "$d")"/latentvla_ros-*.egg-info
    if [ "$d" != "$site/latentvla_ros" ]; then mkdir -p "$site/latentvla_ros"; cp -a "$d/." "$site/latentvla_ros/"; fi
  done
  echo "$msgs_hash" > "$VENV/.stamp-msgs"
fi

src_hash=$(hash_of setup.py setup.cfg)
if [ "$(cat "$VENV/.stamp-src" 2>/dev/null)" != "$src_hash" ]; then
  log "installing the checkout (editable)"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$src_hash" > "$VENV/.stamp-src"
fi

AMENT_PREFIX_PATH="$VENV" "$PY" -c 'import rclpy, torch, latentvla_ros.msg as m; m.PlannedTrajectory(); assert torch.__version__.startswith("2.13.0")' \
  || { log "environment check failed"; exit 1; }
log "ready: $VENV"
