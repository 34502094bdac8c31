"""How the nodes of one process are spun: the one place that picks rclpy executors.

rclpy's ``MultiThreadedExecutor`` rebuilds a wait set and hands every callback to a
Python thread pool; with torch callbacks holding the GIL between kernels it made the
composed graph 35x slower than the bare models (docs/performance.md). What ships instead:

- ``events`` (default where rclpy has it, Kilted and later): one
  ``rclpy.experimental.EventsExecutor`` (C++ event queue) per *thread group*;
- ``single`` (Humble/Jazzy, no EventsExecutor): one ``SingleThreadedExecutor`` per thread
  group, the same layout;
- ``multi``: the old single ``MultiThreadedExecutor``, kept to compare against.

Thread groups: nodes with the same ``executor_group`` (a class attribute) share one
executor and thread. ``io`` (sensor_sync, twist_controller, tool and test nodes: light and
latency-critical: the controller's watchdog must never wait behind a model) is the
default; each model node has its own: ``bev_features``, ``student`` (latent_reasoner, in
parallel with the BEV backbone on the same frame: torch and onnxruntime release the GIL
inside kernels), ``planner`` and ``teacher``. Measured with one intra-op thread per stage
(edge, 2 cores): sharing threads (sync + BEV + planner, or BEV + student) changed the
composed latency by less than the run-to-run spread; with 2 intra-op threads the planner
on the BEV thread was faster (1.25 vs 1.42 x bare), but the planner then lost BEV frames
in a full queue at 5x replay, which it now counts (``BevFeatures.sequence``).
``layout="per_node"`` gives every node its own thread. In a composed process the planner's
BEV and plan inputs skip the hop to its thread (``in_process_direct``, ros/intra_process.py):
the thread that delivers a frame's last input plans it; the planner's thread keeps odometry
and the timers.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

LOG = logging.getLogger(__name__)

EXECUTOR_KINDS = ("auto", "events", "single", "multi")
LAYOUTS = ("grouped", "per_node")  # grouped: as the module doc says; per_node: one thread per node
MULTI_THREADS = 4
#: how `latentvla run --mode processes` tells each node process which executor to use
EXECUTOR_ENV = "LATENTVLA_EXECUTOR"


def events_executor_available() -> bool:
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401 - only probing that it imports
    except ImportError:
        return False
    return True


def resolve_kind(kind: str | None = None) -> str:
    """``None`` reads $LATENTVLA_EXECUTOR (default ``auto``); ``auto`` picks ``events`` where
    rclpy has it, else ``single``."""
    if kind is None:
        kind = os.environ.get(EXECUTOR_ENV, "") or "auto"
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"executor kind {kind!r} is not one of {EXECUTOR_KINDS}")
    if kind == "auto":
        return "events" if events_executor_available() else "single"
    if kind == "events" and not events_executor_available():
        raise ValueError("executor kind 'events' needs rclpy.experimental.EventsExecutor (ROS 2 Kilted or later); "
                         "use 'single' on Humble/Jazzy")
    return kind


def _new_executor(kind: str, context):
    if kind == "events":
        return _events_executor(context)
    if kind == "single":
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    from rclpy.executors import MultiThreadedExecutor

    return MultiThreadedExecutor(num_threads=MULTI_THREADS, context=context)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


def _events_executor(context):
    """rclpy's EventsExecutor factory calls ``faulthandler.enable()``, which raises when
    ``sys.stderr`` is not a real file (pytest capture, notebooks, embedded interpreters):
    point it at the process's own stderr for that call."""
    import sys

    from rclpy.experimental import EventsExecutor

    if _has_fileno(sys.stderr):
        return EventsExecutor(context=context)
    saved = sys.stderr
    # the devnull file stays open on purpose: faulthandler keeps writing to its descriptor
    # ("the file must be kept open until the fault handler is disabled")
    sys.stderr = sys.__stderr__ if _has_fileno(sys.__stderr__) else open(os.devnull, "w")
    try:
        return EventsExecutor(context=context)
    finally:
        sys.stderr = saved


def executor_group(node) -> str:
    return str(getattr(node, "executor_group", "io"))


@dataclass
class _ThreadGroup:
    executor: Any
    nodes: list = field(default_factory=list)
    thread: threading.Thread | None = None


class GraphExecutor:
    """Spins a process's nodes in background threads, grouped as the module doc says.

    ``add(*nodes)`` may be called before or after ``start()``; ``stop()`` joins every thread,
    detaches the nodes and shuts the executors down (it does not destroy the nodes). A
    stopped GraphExecutor is not started again: make a new one."""

    def __init__(self, context=None, kind: str | None = None, period_s: float = 0.05, layout: str = "grouped"):
        import rclpy

        if layout not in LAYOUTS:
            raise ValueError(f"executor layout {layout!r} is not one of {LAYOUTS}")
        self.layout = layout
        self.context = context if context is not None else rclpy.get_default_context()
        self.kind = resolve_kind(kind)
        self.period_s = float(period_s)
        self._groups: dict[str, _ThreadGroup] = {}
        self._stop = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ nodes
    def add(self, *nodes) -> "GraphExecutor":
        with self._lock:
            for node in nodes:
                if self.kind == "multi":
                    key = "all"  # one MultiThreadedExecutor with its own thread pool
                elif self.layout == "per_node":
                    key = f"node:{id(node)}"
                else:
                    key = executor_group(node)
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = _ThreadGroup(_new_executor(self.kind, self.context))
                group.executor.add_node(node)
                group.nodes.append(node)
                resume = getattr(node, "resume_intra_process", None)  # ros/intra_process.py
                if resume is not None:
                    resume()
                if self._started and group.thread is None:
                    self._start_group(group)
        return self

    def remove(self, *nodes) -> "GraphExecutor":
        """Stop spinning ``nodes`` (they stay alive: a node that silently stops working)."""
        with self._lock:
            for node in nodes:
                for group in self._groups.values():
                    if node in group.nodes:
                        group.executor.remove_node(node)
                        group.nodes.remove(node)
        return self

    def thread_layout(self) -> list[list[str]]:
        """Node names per thread, for logs and tests."""
        return [[n.get_name() for n in g.nodes] for g in self._groups.values()]

    # ------------------------------------------------------------------ spinning
    def start(self) -> "GraphExecutor":
        with self._lock:
            self._started = True
            for group in self._groups.values():
                if group.thread is None:
                    self._start_group(group)
        return self

    def _start_group(self, group: _ThreadGroup) -> None:
        names = ",".join(n.get_name() for n in group.nodes) or "nodes"
        group.thread = threading.Thread(target=self._loop, args=(group.executor,), name=f"spin[{names}]", daemon=True)
        group.thread.start()

    def _loop(self, executor) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                executor.spin_once(timeout_sec=self.period_s)
            except Exception as exc:  # noqa: BLE001 - executor or context shut down under us
                if not self._stop.is_set() and self.context.ok():
                    LOG.error("executor thread stopped: %s: %s", type(exc).__name__, exc)
                break

    def spin(self) -> None:
        """Start (if needed) and block until the context shuts down, ``stop()`` or Ctrl-C."""
        self.start()
        try:
            while not self._stop.is_set() and self.context.ok():
                self._stop.wait(0.2)
                if any(g.thread is not None and not g.thread.is_alive() for g in self._groups.values()) \
                        and self.context.ok() and not self._stop.is_set():
                    LOG.error("an executor thread died: stopping the process's graph")
                    break
        finally:
            self.stop()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for group in self._groups.values():
            if group.thread is not None and group.thread is not threading.current_thread():
                group.thread.join(timeout=timeout_s)
        with self._lock:
            groups, self._groups, self._started = list(self._groups.values()), {}, False
        for group in groups:
            # detach every node first: an EventsExecutor destroyed with entities still
            # registered aborts the process ("Destroying callback manager with callbacks remaining")
            for node in group.nodes:
                try:
                    group.executor.remove_node(node)
                except Exception:  # noqa: BLE001 - node or context already gone
                    pass
            try:
                group.executor.shutdown(timeout_sec=1.0)
            except Exception:  # noqa: BLE001 - already shut down with the context
                pass


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C during start-up can surface as another exception: a C extension whose import
    it interrupted raises ``ImportError: initialization failed`` from the
    ``KeyboardInterrupt``; a node built after rclpy's signal handler shut the context down
    fails on the invalid context."""
    import rclpy

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return not rclpy.ok()


def spin_until_shutdown(build_nodes: Callable[[], Iterable], kind: str | None = None,
                        on_ready: Callable[[GraphExecutor, list], None] | None = None) -> None:
    """Build nodes (rclpy initialised by the caller), spin them until Ctrl-C or context
    shutdown (honoured at any point, also while the nodes are being built), then detach
    and destroy them. Exceptions of ``build_nodes`` other than Ctrl-C propagate."""
    from rclpy.executors import ExternalShutdownException

    nodes: list = []
    executor = None
    try:
        nodes = list(build_nodes())
        executor = GraphExecutor(kind=kind).add(*nodes)
        if on_ready is not None:
            on_ready(executor, nodes)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        if not _interrupted(exc):
            raise
    finally:
        if executor is not None:
            executor.stop()  # detaches the nodes before they are destroyed
        for node in nodes:
            node.destroy_node()
