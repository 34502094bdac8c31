"""The fan-out side of ``latentvla evaluate`` (split out of ``apps/evaluate.py``): the closed-loop
task a worker runs (one method on a list of episodes, a picture of every failure) and the call
into ``core.fanout`` (Ray / process pool / inline) that records a crashed worker as a failed task."""
from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def closed_loop_task(method: Any, episodes: list[tuple[str, int]], steps: int | None, domain_id: int | None,
                     pictures: str = "") -> dict:
    """Run one closed-loop method on episodes (in a worker); a picture of every failure
    goes to ``pictures`` (a directory) when given."""
    from latentvla_ros.apps.sim_bridge import run_method_episodes  # rclpy: imported in the worker, when needed
    from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig

    def on_episode(env: Any, result: Any) -> None:
        from latentvla_ros.evaluation.episode_plots import failure_name, is_failure, plot_episode

        if pictures and is_failure(result):
            try:
                plot_episode(env, result, Path(pictures) / failure_name(result))
            except Exception as exc:  # noqa: BLE001 - a picture never costs the episode
                result.error = result.error or f"failure picture: {type(exc).__name__}: {exc}"

    try:
        results = run_method_episodes(method, episodes, ClosedLoopConfig(max_steps=steps), domain_id=domain_id,
                                      on_episode=on_episode)
        return {"episodes": [r.to_dict() for r in results], "errors": [r.error for r in results if r.error]}
    except Exception as exc:  # noqa: BLE001 - a failed task is recorded (with its traceback) in the results
        return {"episodes": [], "errors": [f"{method.name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"]}


def _run_tasks(calls: list[tuple[Any, tuple]], workers: int, *, backend: str = "auto", address: str | None = None,
               costs: Sequence[float] | None = None, desc: str = "tasks", progress: bool = True) -> list[Any]:
    """Run (function, args) calls on ``core.fanout`` (Ray / process pool); results in order."""
    from latentvla_ros.core.fanout import run_tasks

    def crashed(i: int, exc: BaseException) -> dict:  # recorded like a failed task; the rest of the run goes on
        fn, args = calls[i]
        what = getattr(args[0], "name", "") if args else ""
        return {"episodes": [], "rows": [], "examples": [],
                "errors": [f"{fn.__name__}({what} {args[1] if len(args) > 1 else ''}): worker crashed: {exc}"]}

    return run_tasks(calls, workers, backend=backend, address=address, costs=costs, desc=desc, progress=progress,
                     on_crash=crashed)
