"""Fan-out of evaluation episodes and data-generation logs: Ray (local by default,
``address`` for a cluster), a process pool, or in-process; a progress bar with an ETA
either way. Imports nothing of ours (a ground-floor utility).

``run_tasks(calls, workers, backend=..., address=..., costs=..., desc=...)`` runs
``(function, args)`` calls and returns their results in order. ``costs`` (relative
weights, e.g. episodes x expected steps) drive the progress bar and its ETA, so a bar
over unequal tasks still says how long is left; the heaviest tasks are submitted first.

Backends:

- ``'ray'``: one Ray task per call (``num_cpus=1`` each), ``ray.init(address)`` with
  ``address=None`` starting a local Ray with ``workers`` CPUs (what NAVSIM uses to
  fan out metric caching and evaluation); a cluster address (``ray://host:10001`` or
  ``auto``) runs the same command on many machines. Workers get the same environment
  setup as the process pool (``worker_init``).
- ``'process'``: ``concurrent.futures.ProcessPoolExecutor`` with spawned workers.
- ``'auto'``: Ray when ``address`` is given or Ray is installed and ``workers`` > 1,
  else the process pool; ``workers`` <= 1 without an address runs in-process.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

BACKENDS = ("auto", "ray", "process", "inline")


def worker_init() -> None:
    """Environment of a worker (offscreen SDL, offline HF, one torch thread)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # evaluation graphs stay on this host
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("latentvla_ros.runtime").setLevel(logging.ERROR)  # 'untrained' is in the table


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def resolve_backend(backend: str, workers: int, address: str | None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        if backend == "ray" and not ray_available():
            raise RuntimeError("backend 'ray' asked for but ray is not installed (pip install ray)")
        return backend
    if address:
        if not ray_available():
            raise RuntimeError(f"--address {address} needs ray (pip install ray)")
        return "ray"
    if workers <= 1:
        return "inline"
    return "ray" if ray_available() else "process"


class Progress:
    """A tqdm bar over task costs with an ETA from the cost done so far."""

    def __init__(self, costs: Sequence[float], desc: str, enabled: bool = True):
        from tqdm import tqdm

        self.total = float(sum(costs)) or 1.0
        self.done = 0.0
        self.tasks, self.finished = len(costs), 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=self.total, desc=desc, unit="cost", disable=not enabled,
                        bar_format="{l_bar}{bar}| {postfix}")
        self._update(0.0)

    def eta_s(self) -> float:
        elapsed = time.perf_counter() - self.start
        return float("nan") if self.done <= 0 else elapsed * (self.total - self.done) / self.done

    def _update(self, cost: float) -> None:
        self.done += cost
        elapsed = time.perf_counter() - self.start
        eta = self.eta_s()
        eta_txt = "?" if eta != eta else f"{eta / 60:.1f} min"
        self.bar.set_postfix_str(f"{self.finished}/{self.tasks} tasks, {elapsed / 60:.1f} min elapsed, ETA {eta_txt}")
        self.bar.update(min(cost, self.total - self.bar.n))

    def advance(self, cost: float) -> None:
        self.finished += 1
        self._update(cost)

    def close(self) -> None:
        self.bar.close()


def run_tasks(calls: Sequence[tuple[Callable, tuple]], workers: int, *, backend: str = "auto",
              address: str | None = None, costs: Sequence[float] | None = None, desc: str = "tasks",
              progress: bool = True, init_inline: bool = True,
              on_crash: Callable[[int, BaseException], Any] | None = None) -> list[Any]:
    """Run ``(fn, args)`` calls; results in the order of ``calls``. ``init_inline=False``
    leaves this process's settings (torch threads) alone when the calls run in-process.
    ``on_crash(i, exc)`` (Ray): the result of call ``i`` whose worker died on every retry; without
    it such a crash ends the whole run."""
    costs = list(costs) if costs is not None else [1.0] * len(calls)
    if len(costs) != len(calls):
        raise ValueError("one cost per call")
    kind = resolve_backend(backend, workers, address)
    order = sorted(range(len(calls)), key=lambda i: -costs[i])  # heaviest first: shorter tail
    out: list[Any] = [None] * len(calls)
    bar = Progress(costs, f"{desc} [{kind}]", enabled=progress)
    try:
        if kind == "inline":
            if init_inline:
                worker_init()
            for i in order:
                fn, args = calls[i]
                out[i] = fn(*args)
                bar.advance(costs[i])
        elif kind == "process":
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=max(workers, 1), mp_context=mp.get_context("spawn"),
                                     initializer=worker_init) as pool:
                futures = {pool.submit(calls[i][0], *calls[i][1]): i for i in order}
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    bar.advance(costs[i])
        else:
            out = _run_ray(calls, order, costs, workers, address, bar, on_crash)
    finally:
        bar.close()
    return out


def _ray_call(fn: Callable, args: tuple) -> Any:
    worker_init()
    return fn(*args)


def _run_ray(calls: Sequence[tuple[Callable, tuple]], order: list[int], costs: list[float], workers: int,
             address: str | None, bar: Progress, on_crash: Callable[[int, BaseException], Any] | None = None) -> list[Any]:
    import ray

    started_here = False
    if not ray.is_initialized():
        env_vars = {k: os.environ[k] for k in ("PYTHONPATH", "AMENT_PREFIX_PATH", "SDL_VIDEODRIVER", "HF_HUB_OFFLINE",
                                               "TRANSFORMERS_OFFLINE", "LATENTVLA_VENV", "ROS_DOMAIN_ID")
                    if k in os.environ}
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                                      runtime_env={"env_vars": env_vars})
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = max(int(workers), 1)
        ray.init(**kwargs)
        started_here = True
    try:
        # a worker that dies mid-task (seen once: a full evaluation lost after 17 min to one crashed
        # worker) has its task run again elsewhere; tasks are deterministic and write only their results
        remote = ray.remote(num_cpus=1, max_retries=2)(_ray_call)
        refs = {remote.remote(calls[i][0], calls[i][1]): i for i in order}
        out: list[Any] = [None] * len(calls)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    out[i] = ray.get(ref)
                except ray.exceptions.WorkerCrashedError as exc:
                    if on_crash is None:
                        raise
                    out[i] = on_crash(i, exc)
                bar.advance(costs[i])
        return out
    finally:
        if started_here:
            ray.shutdown()
