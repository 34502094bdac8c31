"""Measuring helpers of the bench: latency statistics, process and per-thread CPU meters."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


def stats_ms(values) -> dict[str, float]:
    """count, median, p90, p99, mean, min, max of a list of milliseconds."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    return {"count": int(arr.size), "median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()), "min_ms": float(arr.min()),
            "max_ms": float(arr.max())}


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b <= 0:
        return None
    return float(a / b)


def round_floats(obj: Any, nd: int = 3) -> Any:
    """``nd`` decimals; values smaller than that keep 3 significant digits (an ONNX-vs-torch
    difference of 1.4e-06 must not be reported as 0)."""
    if isinstance(obj, float):
        if not np.isfinite(obj):
            return None
        if obj != 0.0 and abs(obj) < 10.0 ** -nd:
            return float(f"{obj:.3g}")
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: round_floats(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, nd) for v in obj]
    if isinstance(obj, np.generic):
        return round_floats(obj.item(), nd)
    return obj


class CpuMeter:
    """Busy cores of the whole machine vs. of our own processes over an interval (/proc)."""

    def __init__(self, pids: Callable[[], list[int]] | None = None):
        self._pids = pids or (lambda: [])
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._ncpu = os.cpu_count() or 1
        self._start: tuple[float, float, float, float] | None = None

    @staticmethod
    def _machine() -> tuple[float, float]:
        try:
            fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return float("nan"), float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        total = sum(fields[:8])
        return total - idle, total

    def _own(self) -> float:
        ticks = 0.0
        for pid in [os.getpid(), *self._pids()]:
            try:
                parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += float(parts[11]) + float(parts[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return ticks

    def start(self) -> None:
        busy, total = self._machine()
        self._start = (busy, total, self._own(), time.monotonic())

    def stop(self) -> dict[str, float]:
        if self._start is None:
            return {}
        busy0, total0, own0, t0 = self._start
        busy1, total1 = self._machine()
        own1, t1 = self._own(), time.monotonic()
        if not (total1 > total0) or t1 <= t0:
            return {}
        busy = (busy1 - busy0) / (total1 - total0) * self._ncpu
        own = (own1 - own0) / self._hz / (t1 - t0)
        return {"busy_cores": busy, "own_cores": own, "foreign_cores": max(0.0, busy - own), "cores": self._ncpu,
                "own_cpu_s": (own1 - own0) / self._hz, "wall_s": t1 - t0,
                "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}


def _thread_label(name: str | None, comm: str) -> str:
    if comm.startswith("dds."):
        return "Fast DDS threads"
    if name is None:
        return "native threads (OpenMP workers, ...)"
    if name.startswith("ThreadPoolExecutor"):
        return "executor workers (callbacks)"
    return {"bench_graph": "executor wait loop", "bench_harness": "harness executor",
            "MainThread": "main (feeder)"}.get(name, name)


class ThreadCpu:
    """CPU time per thread category of one process over an interval (``/proc/<pid>/task``).

    For our own process, Python threads are told apart by name; for another process,
    Python threads and native threads (OpenMP workers) cannot be told apart and are
    reported together as ``python + native``.
    """

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: dict[int, tuple[str, float]] = {}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        own = self.pid == os.getpid()
        names = {t.native_id: t.name for t in threading.enumerate()} if own else {}
        out = {}
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                comm = Path(f"/proc/{self.pid}/task/{tid}/comm").read_text().strip()
                parts = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            label = _thread_label(names.get(int(tid)), comm) if own else (
                "Fast DDS threads" if comm.startswith("dds.") else "python + native")
            out[int(tid)] = (label, float(parts[11]) + float(parts[12]))
        return out

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self, frames: int) -> dict[str, float]:
        """CPU milliseconds per frame per thread category."""
        end = self._snapshot()
        totals: dict[str, float] = {}
        for tid, (label, ticks) in end.items():
            ticks0 = self._start.get(tid, (label, 0.0))[1]
            totals[label] = totals.get(label, 0.0) + (ticks - ticks0) / self._hz * 1e3 / max(1, frames)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
