"""Pairs BEV features with the latent plan of the same frame (exact stamp match).

Each BEV frame leaves the matcher exactly once: with its plan, without one when
the planner does not fuse, or as timed out (the caller publishes a fallback for
that frame). Plans that arrive first wait for their BEV frame; both caches are
bounded and count what they evict.

Frames leave in stamp order: when a frame is matched, older frames still waiting
leave first, as timed out (the reasoner works frame by frame, so a newer frame's
plan means the older plan is not coming). ``restart`` starts a new timeline after a
backwards time jump and keeps the plans that belong to it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class MatchedFrame:
    stamp_ns: int
    bev: Any
    plan: Any | None
    timed_out: bool = False
    skipped: bool = False  # timed out early: a newer frame was matched (its plan is not coming)
    flushed: bool = False  # its timeline ended (time jumped back) before its plan came


class StampMatcher:
    def __init__(self, needs_plan: bool, plan_timeout_s: float, max_pending: int = 32):
        self.needs_plan = needs_plan
        self.plan_timeout_s = plan_timeout_s
        self.max_pending = max_pending
        self._bevs: OrderedDict[int, tuple[Any, float]] = OrderedDict()
        self._plans: OrderedDict[int, Any] = OrderedDict()
        self.evicted_plans = 0
        self.evicted_bevs = 0

    def add_bev(self, stamp_ns: int, bev: Any, now_s: float) -> list[MatchedFrame]:
        if not self.needs_plan:
            return [MatchedFrame(stamp_ns, bev, None)]
        plan = self._plans.pop(stamp_ns, None)
        if plan is not None:
            return [*self._older_than(stamp_ns), MatchedFrame(stamp_ns, bev, plan)]
        out = []
        if len(self._bevs) >= self.max_pending:  # cannot wait for all of them: oldest times out now
            old_stamp, (old_bev, _) = self._bevs.popitem(last=False)
            self.evicted_bevs += 1
            out.append(MatchedFrame(old_stamp, old_bev, None, timed_out=True))
        self._bevs[stamp_ns] = (bev, now_s)
        return out

    def add_plan(self, stamp_ns: int, plan: Any) -> list[MatchedFrame]:
        if not self.needs_plan:
            return []
        entry = self._bevs.pop(stamp_ns, None)
        if entry is not None:
            return [*self._older_than(stamp_ns), MatchedFrame(stamp_ns, entry[0], plan)]
        self._plans[stamp_ns] = plan
        while len(self._plans) > self.max_pending:
            self._plans.popitem(last=False)
            self.evicted_plans += 1
        return []

    def expire(self, now_s: float) -> list[MatchedFrame]:
        out = []
        for stamp in list(self._bevs):
            bev, received = self._bevs[stamp]
            if now_s - received >= self.plan_timeout_s:
                del self._bevs[stamp]
                out.append(MatchedFrame(stamp, bev, None, timed_out=True))
        return out

    def _older_than(self, stamp_ns: int) -> list[MatchedFrame]:
        older = [s for s in self._bevs if s < stamp_ns]
        return [MatchedFrame(s, self._bevs.pop(s)[0], None, timed_out=True, skipped=True) for s in sorted(older)]

    def restart(self, new_stamp_ns: int, keep_ahead_ns: int) -> tuple[list[MatchedFrame], int]:
        """A new timeline starts at ``new_stamp_ns`` (time jumped back): every waiting frame
        (old timeline) leaves as timed out and ``flushed`` (it did not wait out the timeout); plans
        stamped more than ``keep_ahead_ns`` after the new stamp belong to the old timeline and are
        discarded, the others (a reasoner ahead of the BEV stage on the new timeline) are kept.
        Returns (frames, discarded)."""
        pending = [MatchedFrame(s, bev, None, timed_out=True, flushed=True) for s, (bev, _) in self._bevs.items()]
        self._bevs.clear()
        old = [s for s in self._plans if s > new_stamp_ns + keep_ahead_ns]
        for s in old:
            del self._plans[s]
        return pending, len(old)

    def reset(self) -> None:
        self._bevs.clear()
        self._plans.clear()

    @property
    def pending(self) -> int:
        return len(self._bevs)
