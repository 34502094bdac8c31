"""Approximate-time synchronizer, pure Python (no rclpy).

Behaviour follows the Python ``message_filters.ApproximateTimeSynchronizer``
of ros2/message_filters (written from its documented semantics, not copied):

- Every input has a queue keyed by stamp (int ns). A message whose stamp is
  already queued on the same input replaces the queued one (counted in
  ``dropped_unmatched``). When a queue grows beyond ``queue_size`` the entry
  with the *oldest stamp* is dropped (``dropped_overflow``); if that is the
  message that just arrived, nothing else happens.
- Matching is greedy and anchored on the message that just arrived: for every
  *other* input, the candidates are the queued stamps with
  ``|s - anchor| <= slop``, ordered by that distance (ties keep queue
  insertion order). If any input has no candidate, nothing is emitted. The
  combinations are visited in ``itertools.product`` order over those
  candidate lists (first input varies slowest) and the first one whose spread
  ``max - min`` is strictly ``< slop`` is emitted, and its messages are removed
  from the queues. At most one set is emitted per ``add``. Older queued
  messages are never re-matched among themselves; only a new arrival can
  trigger an emission. (This implementation visits the same order with a
  depth-first search that prunes prefixes whose spread is already ``>= slop``,
  which finds the same first combination without enumerating the product.)
- Headerless messages (``stamp_ns is None``): rejected and counted in
  ``dropped_headerless`` unless ``allow_headerless``; then the arrival time
  ``now_ns`` (or the ``clock_ns()`` callable, default ``time.time_ns``) is used
  as the stamp.

Additions over the original:

- Backwards time jumps: if a new stamp is older than the newest stamp seen so
  far *on the same input* by more than ``time_jump_reset_s`` (e.g. a looping
  bag or a simulator reset), every queue is cleared (cleared messages count in
  ``dropped_unmatched``), ``resets`` is incremented and the new message is then
  processed normally, so matching resumes immediately. ``None`` disables this
  (exact original behaviour).
- Counters (``stats()``), with the invariant
  ``received == emitted_messages + dropped_overflow + dropped_headerless
  + dropped_unmatched + queued``.

Thread safety: all state is guarded by a re-entrant lock and, like the
original, the callback runs *inside* the lock (so emissions are serialized and
delivered in emission order). The messages of an emitted set are removed from
the queues before the callback runs, so the callback may call ``add`` on the
same synchronizer from the same thread; a callback that blocks on another
thread calling ``add`` would deadlock. Exceptions from the callback propagate
to the caller of ``add``; the synchronizer state stays consistent.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["ApproximateTimeSync"]


class ApproximateTimeSync:
    """Approximate-time synchronizer over ``num_inputs`` inputs.

    Args:
        num_inputs: number of inputs (>= 1).
        queue_size: per-input queue length (>= 1).
        slop_s: maximum spread of a set in seconds (> 0); a set is emitted
            only if ``max(stamps) - min(stamps) < slop``.
        allow_headerless: accept messages without a stamp, using the arrival
            time as stamp.
        callback: ``callback(*msgs)`` with one message per input, in input
            order. May be ``None`` (use the return value of ``add``) and more
            can be registered with ``register_callback``.
        time_jump_reset_s: reset threshold for backwards time jumps, seconds;
            ``None`` disables resets.
        clock_ns: callable returning "now" in ns for headerless messages when
            ``add`` gets no ``now_ns``.
    """

    def __init__(
        self,
        num_inputs: int,
        queue_size: int,
        slop_s: float,
        allow_headerless: bool = False,
        callback: Callable[..., Any] | None = None,
        *,
        time_jump_reset_s: float | None = 1.0,
        clock_ns: Callable[[], int] | None = None,
    ) -> None:
        if int(num_inputs) < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs!r}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        if not slop_s > 0:
            raise ValueError(f"slop_s must be > 0, got {slop_s!r}")
        if time_jump_reset_s is not None and not time_jump_reset_s >= 0:
            raise ValueError(f"time_jump_reset_s must be >= 0 or None, got {time_jump_reset_s!r}")
        self.num_inputs = int(num_inputs)
        self.queue_size = int(queue_size)
        self.slop_s = float(slop_s)
        self.slop_ns = int(round(float(slop_s) * 1e9))
        self.allow_headerless = bool(allow_headerless)
        self.time_jump_reset_s = time_jump_reset_s
        self._jump_ns = None if time_jump_reset_s is None else int(round(time_jump_reset_s * 1e9))
        self._clock_ns = clock_ns or time.time_ns
        self._callbacks: list[Callable[..., Any]] = []
        if callback is not None:
            self._callbacks.append(callback)
        self._lock = threading.RLock()
        # dict preserves insertion order, which breaks ties like the original.
        self._queues: list[dict[int, Any]] = [{} for _ in range(self.num_inputs)]
        self._newest: list[int | None] = [None] * self.num_inputs
        self.received = 0
        self.emitted = 0
        self.emitted_messages = 0
        self.dropped_overflow = 0
        self.dropped_headerless = 0
        self.dropped_unmatched = 0
        self.resets = 0

    # ------------------------------------------------------------------ API
    def register_callback(self, callback: Callable[..., Any]) -> None:
        """Add a callback called as ``callback(*msgs)`` for every emitted set."""
        with self._lock:
            self._callbacks.append(callback)

    def add(
        self,
        input_index: int,
        stamp_ns: int | None,
        msg: Any,
        now_ns: int | None = None,
    ) -> tuple[Any, ...] | None:
        """Feed one message; returns the emitted set (tuple, input order) or ``None``."""
        if not 0 <= input_index < self.num_inputs:
            raise IndexError(f"input_index {input_index} out of range [0, {self.num_inputs})")
        with self._lock:
            self.received += 1
            if stamp_ns is None:
                if not self.allow_headerless:
                    self.dropped_headerless += 1
                    return None
                stamp = int(now_ns) if now_ns is not None else int(self._clock_ns())
            else:
                stamp = int(stamp_ns)

            newest = self._newest[input_index]
            if self._jump_ns is not None and newest is not None and stamp < newest - self._jump_ns:
                self._reset_locked()
                newest = None
            if newest is None or stamp > newest:
                self._newest[input_index] = stamp

            queue = self._queues[input_index]
            if stamp in queue:
                self.dropped_unmatched += 1  # replaced by a message with the same stamp
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.dropped_overflow += 1
            if stamp not in queue:
                return None  # the new message itself was the oldest

            chosen = self._match_locked(input_index, stamp)
            if chosen is None:
                return None
            msgs = tuple(self._queues[i].pop(s) for i, s in enumerate(chosen))
            self.emitted += 1
            self.emitted_messages += len(msgs)
            for cb in list(self._callbacks):
                cb(*msgs)
            return msgs

    def reset(self) -> None:
        """Clear all queues (cleared messages count as ``dropped_unmatched``)."""
        with self._lock:
            self._reset_locked()

    def queued(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues)

    def queue_stamps(self) -> list[list[int]]:
        """Queued stamps per input (sorted), for inspection and tests."""
        with self._lock:
            return [sorted(q) for q in self._queues]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "received": self.received,
                "emitted": self.emitted,
                "emitted_messages": self.emitted_messages,
                "dropped_overflow": self.dropped_overflow,
                "dropped_headerless": self.dropped_headerless,
                "dropped_unmatched": self.dropped_unmatched,
                "resets": self.resets,
                "queued": sum(len(q) for q in self._queues),
            }

    # ------------------------------------------------------------ internals
    def _reset_locked(self) -> None:
        self.dropped_unmatched += sum(len(q) for q in self._queues)
        for q in self._queues:
            q.clear()
        self._newest = [None] * self.num_inputs
        self.resets += 1

    def _match_locked(self, anchor_index: int, anchor: int) -> list[int] | None:
        slop = self.slop_ns
        # Candidate stamps per other input, ordered by |s - anchor| (stable).
        cands: list[list[int]] = []
        order: list[int] = []
        for i, q in enumerate(self._queues):
            if i == anchor_index:
                continue
            c = [s for s in q if abs(s - anchor) <= slop]
            if not c:
                return None
            c.sort(key=lambda s: abs(s - anchor))
            cands.append(c)
            order.append(i)

        picked: list[int] = [0] * len(cands)

        def dfs(depth: int, lo: int, hi: int) -> bool:
            if depth == len(cands):
                return hi - lo < slop
            for s in cands[depth]:
                nlo = s if s < lo else lo
                nhi = s if s > hi else hi
                if nhi - nlo >= slop:
                    continue  # spread only grows: no completion can be valid
                picked[depth] = s
                if dfs(depth + 1, nlo, nhi):
                    return True
            return False

        if not dfs(0, anchor, anchor):
            return None
        chosen = [0] * self.num_inputs
        chosen[anchor_index] = anchor
        for i, s in zip(order, picked):
            chosen[i] = s
        return chosen
