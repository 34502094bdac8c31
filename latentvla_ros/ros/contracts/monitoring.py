"""Per-node counters and timings (pure): what diagnostics and summaries report."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


def percentile_summary(values_ms) -> dict[str, float]:
    arr = np.fromiter(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    median, p99 = np.percentile(arr, (50, 99))  # one partition for both (np.median is the 50th percentile)
    return {"count": int(arr.size), "median_ms": float(median), "p99_ms": float(p99),
            "max_ms": float(arr.max()), "mean_ms": float(arr.mean())}


class NodeStats:
    """Thread-safe counters: messages in/out, drops by reason, processing time, latency, input rates."""

    def __init__(self, window: int = 2000):
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.processing_ms: deque[float] = deque(maxlen=window)
        self.latency_ms: deque[float] = deque(maxlen=window)
        self._totals = [0, 0]  # samples ever added to processing_ms, latency_ms (see mark / since)
        self._arrivals: dict[str, deque[float]] = {}

    def on_receive(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.received[name] += 1
            self._arrivals.setdefault(name, deque(maxlen=50)).append(now)

    def on_publish(self, name: str) -> None:
        with self._lock:
            self.published[name] += 1

    def on_drop(self, reason: str) -> int:
        with self._lock:
            self.dropped[reason] += 1
            return self.dropped[reason]

    def on_processed(self, processing_ms: float, latency_ms: float | None = None) -> None:
        with self._lock:
            self.processing_ms.append(processing_ms)
            self._totals[0] += 1
            if latency_ms is not None:
                self.latency_ms.append(latency_ms)
                self._totals[1] += 1

    def mark(self) -> tuple[int, int]:
        """A point in the processing / latency series; ``since(mark)`` gives what came after."""
        with self._lock:
            return self._totals[0], self._totals[1]

    def since(self, mark: tuple[int, int]) -> tuple[list[float], list[float]]:
        """Processing times and latencies [ms] recorded after ``mark`` (at most the window)."""
        with self._lock:
            out = []
            for series, total, then in ((self.processing_ms, self._totals[0], mark[0]),
                                        (self.latency_ms, self._totals[1], mark[1])):
                n = min(total - then, len(series))
                out.append(list(series)[len(series) - n:] if n > 0 else [])
            return out[0], out[1]

    def input_rate_hz(self, name: str, now: float | None = None, stale_after_s: float = 2.0) -> float:
        with self._lock:
            times = list(self._arrivals.get(name, ()))
        now = time.monotonic() if now is None else now
        if len(times) < 2 or now - times[-1] > stale_after_s:
            return 0.0
        return (len(times) - 1) / max(1e-9, times[-1] - times[0])

    def snapshot(self) -> dict:
        """Counters and percentiles; the percentiles are computed outside the lock, so the frame
        threads that count (``on_receive``, ``on_processed``) never wait for them."""
        with self._lock:
            counts = {
                "received": dict(self.received),
                "published": dict(self.published),
                "dropped": dict(self.dropped),
                "dropped_total": int(sum(self.dropped.values())),
            }
            processing, latency = list(self.processing_ms), list(self.latency_ms)
        counts["processing"] = percentile_summary(processing)
        counts["latency"] = percentile_summary(latency)
        return counts


class SequenceGapCounter:
    """Counts sequence numbers that never arrived (a restart of the producer resets it)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.missing = 0
        self.restarts = 0

    def update(self, sequence: int) -> int:
        """Returns how many sequence numbers were skipped before ``sequence``."""
        gap = 0
        if self.last is not None:
            if sequence <= self.last:
                self.restarts += 1
            else:
                gap = sequence - self.last - 1
        self.last = sequence
        self.missing += gap
        return gap
