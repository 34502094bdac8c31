"""Where the package's data files (config/, schema/, msg/, launch/, checkpoints/) live.

From a checkout (development venv) they sit next to the Python package; in a
colcon install they are in ``share/latentvla_ros`` (found with ament_index).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

PACKAGE = "latentvla_ros"


@functools.lru_cache(maxsize=1)
def package_share() -> Path:
    env = os.environ.get("LATENTVLA_SHARE")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "schema").is_dir() and (checkout / "config").is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # pragma: no cover - depends on the install
        raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (set LATENTVLA_SHARE)") from exc


def share_path(*parts: str) -> Path:
    return package_share().joinpath(*parts)


def resolve_path(value: str) -> Path:
    """Absolute paths as they are; relative ones against the package share dir, then the cwd."""
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    candidate = package_share() / path
    return candidate if candidate.exists() else Path.cwd() / path
