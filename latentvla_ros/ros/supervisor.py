"""Supervise the graph's node processes (``latentvla run --mode processes``), like
``ros2 launch`` with ``respawn=True`` (pure: stdlib only, no rclpy).

- A child that dies while the graph runs is logged (which node, exit code or signal) and
  started again after a back-off: ``backoff_s`` doubled for every failure in a row, at most
  ``max_backoff_s``; a child that ran ``stable_after_s`` before dying starts the count again.
  Meanwhile the rest of the graph keeps running; the planner falls back on its own when its
  inputs stop (ros/nodes/trajectory_planner.py).
- SIGINT, SIGTERM and SIGHUP to the supervisor stop every child: SIGINT first (the nodes shut
  down cleanly), SIGTERM after ``stop_timeout_s``, SIGKILL after that. A second signal
  skips to SIGKILL. Children run in their own process group (a terminal's Ctrl-C reaches
  the supervisor only, which forwards it) and get SIGTERM from the kernel if the supervisor
  itself dies (``PR_SET_PDEATHSIG``, Linux), so no node outlives it.
- The exit status is honest: 0 only when no child died unexpectedly and every child
  stopped cleanly when asked; 1 otherwise, with a summary line per node.
"""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

_PR_SET_PDEATHSIG = 1
#: exit statuses of a child that stopped because it was asked to (handled SIGINT: 0)
CLEAN_STOP = {0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}


def describe_exit(code: int) -> str:
    """``-9`` -> 'killed by SIGKILL', ``3`` -> 'exit code 3'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the signal handlers still stop children
        pass


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    starts: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    unexpected_exits: list[str] = field(default_factory=list)
    stop_status: str = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def _stderr(line: str) -> None:
    print(f"[latentvla run] {line}", file=sys.stderr, flush=True)


class ProcessSupervisor:
    """Start ``children`` ([(name, cmd, env)]), restart the ones that die, stop all on request."""

    def __init__(self, children: Sequence[tuple[str, list[str], dict[str, str] | None]], *, respawn: bool = True,
                 backoff_s: float = 1.0, max_backoff_s: float = 30.0, stable_after_s: float = 30.0,
                 stop_timeout_s: float = 10.0, poll_s: float = 0.1, log: Callable[[str], None] = _stderr):
        self.children = [Child(name, list(cmd), env) for name, cmd, env in children]
        self.respawn = respawn
        self.backoff_s, self.max_backoff_s, self.stable_after_s = backoff_s, max_backoff_s, stable_after_s
        self.stop_timeout_s, self.poll_s = stop_timeout_s, poll_s
        self.log = log
        self._stop = threading.Event()
        self._signals = 0
        self.stop_reason = ""

    # ------------------------------------------------------------------ children
    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.cmd, env=child.env, process_group=0, preexec_fn=_die_with_parent)
        child.started_at = time.monotonic()
        child.starts += 1
        child.restart_at = None
        what = "started" if child.starts == 1 else f"restarted (start {child.starts})"
        self.log(f"{child.name} {what}, pid {child.proc.pid}")

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def poll(self) -> None:
        """Notice dead children and restart those whose back-off has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at and not self._stop.is_set():
                    self._start(child)
                continue
            code = child.proc.poll() if child.proc is not None else None
            if code is None:
                continue
            lived = now - child.started_at
            child.failures_in_row = 1 if lived >= self.stable_after_s else child.failures_in_row + 1
            status = describe_exit(code)
            child.unexpected_exits.append(status)
            if not self.respawn:
                self.log(f"ERROR: node {child.name} (pid {child.proc.pid}) died: {status} after {lived:.1f} s; "
                         "respawn is off: stopping the graph")
                self.request_stop(f"{child.name} died")
                return
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (child.failures_in_row - 1))
            child.restart_at = now + delay
            self.log(f"ERROR: node {child.name} (pid {child.proc.pid}) died: {status} after {lived:.1f} s; "
                     f"restarting it in {delay:.1f} s (failure {child.failures_in_row} in a row); the planner "
                     "falls back while its inputs are missing")

    # ------------------------------------------------------------------ stopping
    def request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self._stop.set()

    def _on_signal(self, signum, _frame) -> None:
        self._signals += 1
        if self._signals > 1:  # impatient: the next wait ends at once, then SIGKILL
            self.stop_timeout_s = 0.0
        self.request_stop(signal.Signals(signum).name)

    def stop_all(self) -> None:
        """SIGINT to every running child, SIGTERM after ``stop_timeout_s``, then SIGKILL."""
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in self.children:
            if child.restart_at is not None:
                child.stop_status = "not running (was waiting for its restart)"
        for sig, wait_s in ((signal.SIGINT, self.stop_timeout_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            alive = [c for c in running if c.proc.poll() is None]
            if not alive:
                break
            for child in alive:
                try:
                    child.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
                if sig != signal.SIGINT:
                    child.stop_status = f"did not stop on SIGINT: sent {sig.name}"
            deadline = time.monotonic() + wait_s
            for child in alive:
                try:
                    child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for child in running:
            code = child.proc.poll()
            if code is None:
                child.stop_status = "still running after SIGKILL"
            elif not child.stop_status:
                child.stop_status = "stopped" if code in CLEAN_STOP else f"stopped with {describe_exit(code)}"

    @property
    def exit_code(self) -> int:
        bad = [c for c in self.children if c.unexpected_exits or (c.stop_status and c.stop_status != "stopped")]
        return 1 if bad else 0

    def summary(self) -> list[str]:
        lines = []
        for c in self.children:
            deaths = f"; died {len(c.unexpected_exits)} time(s): {', '.join(c.unexpected_exits)}" if c.unexpected_exits else ""
            lines.append(f"{c.name}: {c.stop_status or 'not started'}, started {c.starts} time(s){deaths}")
        return lines

    def run(self) -> int:
        """Start the children and supervise them until a signal (or ``request_stop``)."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            while not self._stop.wait(self.poll_s):
                self.poll()
            self.log(f"stopping every node ({self.stop_reason})")
            self.stop_all()
        finally:
            if self.children and any(c.proc is not None and c.proc.poll() is None for c in self.children):
                self.stop_timeout_s = 0.0
                self.stop_all()  # an exception above: never leave a node behind
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        for line in self.summary():
            self.log(line)
        code = self.exit_code
        self.log(f"exit status {code}" + ("" if code == 0 else ": a node died or did not stop cleanly (see above)"))
        return code
