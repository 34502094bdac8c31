"""Reporting helpers shared by the apps (bench, evaluate): the machine a
measurement ran on, the processes that competed with it, and number formatting for tables."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def meminfo_gb(key: str = "MemAvailable") -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def machine_info() -> dict[str, Any]:
    from latentvla_ros.runtime.threads import usable_cores

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cores": os.cpu_count(), "usable_cores": usable_cores(),
                            "mem_total_gb": round(meminfo_gb("MemTotal"), 1)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
        info["simd"] = sorted(f for f in flags.split() if f.startswith(("avx", "amx")) or f == "fma")
    except OSError:
        pass
    try:
        import torch

        info["cuda"] = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        info["cuda"] = None
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    for name, module in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("transformers", "transformers"),
                         ("numpy", "numpy")):
        try:
            info[name] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing or broken package is reported as None
            info[name] = None
    try:
        from importlib.metadata import version

        info["rclpy"] = f"ros-kilted-rclpy {version('ros-kilted-rclpy')}"
    except Exception:  # noqa: BLE001 - a missing or broken package is reported as None
        info["rclpy"] = None
    info["rmw"] = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    info["fastdds_builtin_transports"] = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS")
    info["fastdds_profiles_file"] = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    return info


def other_processes(limit: int = 8) -> list[str]:
    """The busiest processes that are not ours (``ps``), to say whether the machine was quiet."""
    import subprocess

    try:
        text = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etimes,args", "--sort=-pcpu"], capture_output=True,
                              text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        pid, ppid, pcpu = int(parts[0]), int(parts[1]), float(parts[2])
        if pid == me or ppid == me or pcpu < 5.0:
            continue
        out.append(f"{pcpu:.0f}% {parts[4][:100]}")
        if len(out) >= limit:
            break
    return out


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if nd >= 3 and v and abs(v) < 0.5 * 10.0 ** -nd:  # target values: a tolerance check's 5e-06 must show
            return f"{v:.1e}"
        return f"{v:.{nd}f}"
    return str(v)


def replace_between_markers(path: Path, begin: str, end: str, paragraph: str) -> bool:
    """Replace what stands between the lines ``begin`` and ``end`` of ``path`` (README's generated
    paragraphs); False (file unchanged) when the markers are missing."""
    import re

    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda _: f"{begin}\n{paragraph}\n{end}", text, count=1))
    return True
