"""Latest-frame policy of the model stages: bounded latency when a model is slower than its input.

A model stage (bev_features, latent_reasoner, the trajectory planner's model call) that is
slower than the sensor rate must not work through a queue of old frames: at 10 Hz with a
150 ms forward pass a FIFO queue grows by one frame every third period, and the car plans
on frames seconds old. With this policy a message is only *parked* when it arrives (a
cheap callback: counters, sequence accounting); the work runs as a separate executor task
on the node's own thread and takes the newest parked message. A message replaced before
the node got to it is counted once as ``dropped/superseded``, with a throttled warning.

Why this bounds the age: the task is queued behind the arrivals that are already waiting,
so every message that arrived while the node worked is parked (newest wins) before the
next piece of work starts. The work therefore starts on a message that arrived at most one
input period plus one processing time ago (plus the executor's hand-off), never on a
backlog. In a composed process the arrival itself runs in the publisher's thread
(``in_process_direct``, ros/intra_process.py): the frame is parked the moment it is
published and the work needs one hop to the node's thread, not two (bus queue, then task).
Over DDS, the FIFO order of arrivals and tasks is what rclpy's executors give.

Over DDS with rclpy's wait-set executors (``single``, ``multi``: Humble/Jazzy) the executor
takes one message per wait and runs pending tasks first, so the node reads what is still
waiting in its DDS reader itself before it takes the newest (``collect``); the
EventsExecutor queues every arrival ahead of the task and needs nothing of the sort.

Each stage decides alone: bev_features and latent_reasoner may take different frames when
both are overloaded; the planner then publishes a fallback for a BEV frame whose plan was
superseded (``plan_timeout``/"a newer frame's plan arrived first"), counted as usual.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

SUPERSEDED = "superseded"


class LatestFrame:
    """One parked message and the work that takes it (``process``, guarded by the caller).

    ``offer(msg)`` is called by the subscription callback (any thread); the work runs through
    ``schedule`` (the node's ``executor.create_task``), or at once where nothing schedules.
    One run at a time: a run in progress (or scheduled) takes what is parked meanwhile before
    it ends, so executors that run tasks in parallel (``MultiThreadedExecutor``) never run two
    forward passes of one node at once."""

    def __init__(self, process: Callable[[Any], None], on_superseded: Callable[[Any], None],
                 schedule: Callable[[Callable[[], None]], None] | None, collect: Callable[[], None] | None = None):
        """``collect``: called before each message is taken; it may ``offer`` what is still
        waiting elsewhere (a DDS reader the executor has not read yet)."""
        self._collect = collect
        self._process = process
        self._on_superseded = on_superseded
        self._schedule = schedule
        self._lock = threading.Lock()
        self._pending: Any = None
        self._busy = False  # a run is scheduled or in progress
        self.superseded = 0
        self.subscription: Any = None  # the rclpy subscription feeding it (set by the node)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def offer(self, msg: Any) -> None:
        with self._lock:
            replaced, self._pending = self._pending, msg
            start = not self._busy
            self._busy = True
            if replaced is not None:
                self.superseded += 1
        if replaced is not None:
            self._on_superseded(replaced)
        if start:
            if self._schedule is None:
                self.run()
            else:
                self._schedule(self.run)

    def run(self) -> None:
        """Process the newest parked message, then whatever was parked meanwhile, until none is."""
        while True:
            if self._collect is not None:
                self._collect()
            with self._lock:
                msg, self._pending = self._pending, None
                if msg is None:
                    self._busy = False
                    return
            try:
                self._process(msg)
            except BaseException:
                with self._lock:
                    self._busy = False
                raise
