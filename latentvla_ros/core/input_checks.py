"""Checks on sensor streams (pure): header stamps, samples lost from a stream, each loss once.

- ``stamp_problem``: a header stamp that cannot be a sensor's time (unnormalised nanosec,
  unset, negative, far ahead of the node clock).
- ``StampGapCounter``: samples missing from a periodic stream. A stamp gap alone does not
  prove a loss (a clock that jumps forward makes the same gap), so the gap is checked
  against the arrival times: lost samples leave a pause in the arrivals too, a stamp jump
  does not.
- ``LossLedger``: the middleware's ``message_lost`` events and the stamp gaps report the
  same lost samples; the ledger counts each one once.
"""
from __future__ import annotations

import statistics
import threading
from collections import deque

NS = 1_000_000_000


def stamp_problem(sec: int, nanosec: int, now_ns: int | None = None, max_ahead_ns: int | None = None) -> str | None:
    """Why a header stamp is not usable (None: it is). ``now_ns``: the node clock (0 or None
    while it is unknown, e.g. sim time before the first /clock: the future check is skipped)."""
    if not 0 <= nanosec < NS:
        return f"nanosec {nanosec} outside [0, 1e9): not a normalised time"
    if sec == 0 and nanosec == 0:
        return "zero stamp (header never set)"
    stamp_ns = sec * NS + nanosec
    if stamp_ns < 0:
        return f"negative stamp ({stamp_ns * 1e-9:.3f} s)"
    if now_ns and max_ahead_ns is not None and stamp_ns - now_ns > max_ahead_ns:
        return f"stamp {(stamp_ns - now_ns) * 1e-9:.1f} s ahead of the node clock (limit {max_ahead_ns * 1e-9:g} s)"
    return None


class StampGapCounter:
    """Samples missing from a periodic stream, from the gaps between its header stamps,
    confirmed by the gaps between the arrivals.

    The nominal period is bootstrapped from the first intervals (the median of those close
    to the shortest: drops only lengthen intervals) and then refined with the running mean
    of every single-period interval. An interval longer than ``factor`` periods means
    ``round(interval / period) - 1`` missing samples, if the arrivals paused as well
    (``arrival_ns`` given to ``update``; their period is the median arrival interval of
    single-period stamp intervals). Stamps that advance ``reset_ns`` or more beyond what the
    pause in the arrivals explains are a clock jump (``JUMP_FORWARD``), not lost samples, and
    only the samples the arrival pause shows count. Without arrival times every
    stamp gap counts. A step forward of ``JUMP_FACTOR x reset_ns`` or more is always a clock
    jump (an outage that long shows in the input watchdog's staleness). Repeated stamps and small steps
    backwards are anomalies (negative codes); a step backwards of more than ``reset_ns``
    restarts the stream (looping bag, simulator reset). A sustained faster rate (10
    intervals in a row well below the period) starts the estimate over.
    """

    DUPLICATE, OUT_OF_ORDER, RESET, JUMP_FORWARD = -1, -2, -3, -4
    JUMP_FACTOR = 10  # forward steps of 10 x reset_ns or more are clock jumps

    def __init__(self, factor: float = 1.5, reset_ns: int = NS, window: int = 20, max_samples: int = 500):
        self.factor = float(factor)
        self.reset_ns = int(reset_ns)
        self.max_samples = max_samples
        self.intervals: deque[int] = deque(maxlen=window)
        self._arrival_of: deque[int | None] = deque(maxlen=window)  # arrival interval of each stamp interval
        self._arrival_periods: deque[int] = deque(maxlen=window)
        self.last: int | None = None
        self._last_arrival: int | None = None
        self.missing = 0
        self.jumps_forward = 0
        self._period: float | None = None
        self._samples = 0
        self._short_in_row = 0

    def period_ns(self) -> float | None:
        if self._period is not None:
            return self._period
        if len(self.intervals) < 3:
            return None
        shortest = min(self.intervals)
        return float(statistics.median([d for d in self.intervals if d <= 1.5 * shortest]))

    def arrival_period_ns(self) -> float | None:
        return float(statistics.median(self._arrival_periods)) if len(self._arrival_periods) >= 3 else None

    def update(self, stamp_ns: int, arrival_ns: int | None = None) -> int:
        """Missing samples before ``stamp_ns`` (>= 0), or one of the negative anomaly codes.
        ``arrival_ns``: when the message arrived (a steady clock)."""
        arrival_dt = None if arrival_ns is None or self._last_arrival is None else arrival_ns - self._last_arrival
        if arrival_ns is not None:
            self._last_arrival = arrival_ns
        if self.last is None:
            self.last = stamp_ns
            return 0
        dt = stamp_ns - self.last
        if dt == 0:
            return self.DUPLICATE
        if dt < 0:
            if -dt >= self.reset_ns:
                self.last = stamp_ns
                return self.RESET
            return self.OUT_OF_ORDER
        self.last = stamp_ns
        if dt >= self.JUMP_FACTOR * self.reset_ns:  # an outage that long shows as a stale input
            self.jumps_forward += 1
            return self.JUMP_FORWARD
        bootstrapped = self._period is not None
        if bootstrapped:
            self._short_in_row = self._short_in_row + 1 if dt < 0.7 * self._period else 0
            if self._short_in_row >= 10:  # the sensor runs faster now: estimate again
                self._period, self._samples, self._short_in_row = None, 0, 0
                self.intervals.clear()
                self._arrival_of.clear()
                bootstrapped = False
        had_period = self.period_ns() is not None
        self.intervals.append(dt)
        self._arrival_of.append(arrival_dt)
        period = self.period_ns()
        if period is None:
            return 0
        if self._period is None:
            self._period = period
            self._samples = sum(1 for d in self.intervals if 0.75 * period < d < 1.25 * period)
        period = self._period
        # the first intervals are judged once the period is known (retroactively)
        judged = [(dt, arrival_dt)] if had_period else list(zip(self.intervals, self._arrival_of))
        for d, a in judged:
            if a is not None and 0.75 * period < d < 1.25 * period:
                self._arrival_periods.append(a)
        missing, jumped = 0, False
        for d, a in judged:
            if d > self.factor * period:
                n, jump = self._judge_gap(int(round(d / period)) - 1, d, a)
                missing += n
                jumped |= jump
        if bootstrapped and 0.75 * period < dt < 1.25 * period:  # refine with single intervals
            self._samples = min(self._samples + 1, self.max_samples)
            self._period += (dt - self._period) / self._samples
        self.missing += missing
        if jumped:
            self.jumps_forward += 1
            if not missing:
                return self.JUMP_FORWARD
        return missing

    def _judge_gap(self, from_stamps: int, stamp_dt: int, arrival_dt: int | None) -> tuple[int, bool]:
        """(missing samples, stamps jumped) for a stamp gap ``stamp_dt`` of ``from_stamps`` missing samples.

        Arrivals jitter (a late callback, a publisher that falls behind and catches up in a
        burst), so only a stamp advance that the arrival pause leaves unexplained by
        ``reset_ns`` or more (the threshold of backward jumps) is a clock jump; then only the
        samples the arrival pause shows are counted."""
        arrival_period = self.arrival_period_ns()
        if arrival_dt is None or arrival_period is None:
            return from_stamps, False  # nothing to compare with (yet)
        explained = arrival_dt * self._period / arrival_period  # the arrival pause in stamp time
        if stamp_dt - explained < self.reset_ns:
            return from_stamps, False
        from_arrivals = int(round(arrival_dt / arrival_period)) - 1 if arrival_dt > self.factor * arrival_period else 0
        return min(from_stamps, from_arrivals), True

class LossLedger:
    """Lost samples of one stream reported by two witnesses (the middleware's ``message_lost``
    events and the stamp gaps), counted once: each report first cancels the other
    witness's unmatched reports of the last ``window_ns``. Both see a loss when the sample
    after it arrives (the middleware from its sequence numbers, the counter from the stamps),
    so their reports of one loss come close together. Thread-safe."""

    def __init__(self, window_ns: int = NS):
        self.window_ns = int(window_ns)
        self._lock = threading.Lock()
        self._unmatched: dict[str, deque[list[int]]] = {"gap": deque(), "transport": deque()}

    def from_gap(self, count: int, now_ns: int) -> int:
        """Samples a stamp gap shows missing -> how many of them no transport event reported."""
        return self._report("gap", "transport", count, now_ns)

    def from_transport(self, count: int, now_ns: int) -> int:
        """Samples the middleware reports lost -> how many of them no stamp gap counted."""
        return self._report("transport", "gap", count, now_ns)

    def _report(self, mine: str, other: str, count: int, now_ns: int) -> int:
        with self._lock:
            for queue in self._unmatched.values():
                while queue and now_ns - queue[0][0] > self.window_ns:
                    queue.popleft()
            theirs = self._unmatched[other]
            remaining = int(count)
            while remaining and theirs:
                used = min(remaining, theirs[0][1])
                theirs[0][1] -= used
                remaining -= used
                if theirs[0][1] == 0:
                    theirs.popleft()
            if remaining:
                self._unmatched[mine].append([now_ns, remaining])
            return remaining
