"""``docs/results.json``: the evaluation's headline numbers in a fixed, documented shape.

::

    {"open_loop":   {METHOD: {"scenes": n, "pdms": x, "per_scenario": {SCENARIO: pdms}}},
     "closed_loop": {METHOD: {"episodes": n, "score": x, "collision_rate": r, "collision_rate_any": r,
                              "off_road_rate": r,
                              "route_completion": r, "route_completed_rate": r,
                              "score_ci95": [lo, hi],
                              "per_scenario": {SCENARIO: {"episodes": n, "score": x, "collision_rate": r,
                                                          "collision_rate_any": r, "off_road_rate": r, "route_completion": r,
                                                          "route_completed_rate": r}}}},
     "paired":      {"METHOD_A vs METHOD_B": {"mean": d, "ci95": [lo, hi], "episodes": n,
                                              "per_scenario": {SCENARIO: {...}}}}}

Scores (PDMS, closed-loop score and their paired differences) are on the 0-100 scale,
rates in [0, 1]. ``collision_rate`` counts at-fault collisions (NAVSIM's rules,
``evaluation/collisions.py``; an episode written before contacts were recorded counts every
collision), ``collision_rate_any`` every contact (highway-env's ``vehicle.crashed``).
``route_completion`` is the mean fraction of the mission's route driven (CARLA's RC);
``route_completed_rate`` the share of episodes that reached the goal.
A paired difference is the mean over the episodes both methods ran on the same
(scenario, seed) of score_A - score_B, with a percentile-bootstrap 95 % interval
(resampling episodes; ``bootstrap_samples``, fixed seed). METHOD names are the public
ones of ``PUBLIC_NAMES`` (e.g. ``e2e_student``); ``e2e_student_ros`` is the fused student
driven through the ROS 2 node graph on the ROS subset of seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PUBLIC_NAMES = {
    "expert": "expert",
    "pdm_closed": "reference",
    "constant_velocity": "constant_velocity",
    "ego_mlp": "ego_mlp",
    "latentvla_none": "e2e_none",
    "latentvla_student": "e2e_student",
    "latentvla_teacher": "e2e_teacher",
    "latentvla_student_shuffled": "e2e_student_shuffled",
    "latentvla_student_zeroed": "e2e_student_zeroed",
    "latentvla_student_unguarded": "e2e_student_unguarded",
    "latentvla_student_ros": "e2e_student_ros",
}
PAIRS = (
    ("e2e_student", "e2e_none"),
    ("e2e_student", "e2e_teacher"),
    ("e2e_student", "e2e_student_shuffled"),
    ("e2e_student", "e2e_student_zeroed"),
    ("e2e_student", "e2e_student_unguarded"),
    ("e2e_student", "reference"),
    ("e2e_student", "constant_velocity"),
    ("e2e_student", "expert"),
    ("e2e_none", "constant_velocity"),
    ("reference", "expert"),
    ("e2e_student_ros", "e2e_student"),
)


def public_name(name: str) -> str:
    return PUBLIC_NAMES.get(name, name)


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
    """Mean and percentile-bootstrap (1 - alpha) interval of the mean as a dict (``bootstrap_interval``); NaNs
    are dropped."""
    n = sum(1 for x in values if x is not None and np.isfinite(x))
    mean, lo, hi = bootstrap_interval(values, n_boot, seed, alpha)
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n}


def bootstrap_interval(values: Sequence[float], n_boot: int = 2000, seed: int = 0,
                       alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap (1 - alpha) interval; NaNs dropped."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    if v.size == 1 or np.all(v == v[0]):
        return float(v.mean()), float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(v.mean()), float(lo), float(hi)


def paired_difference(a: dict[Any, float], b: dict[Any, float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean and bootstrap 95 % interval of a[k] - b[k] over the keys both have (finite)."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    diffs = [a[k] - b[k] for k in keys]
    mean, lo, hi = bootstrap_interval(diffs, n_boot, seed)
    return {"mean": mean, "ci95": [lo, hi], "episodes": len(keys)}


def per_scenario_pdms(rows: list[dict], methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean open-loop PDMS (0-100) per method and scenario: ``{method: {scenario: pdms}}``."""
    out: dict[str, dict[str, float]] = {}
    for name in methods:
        by: dict[str, list[float]] = {}
        for r in rows:
            if r["method"] == name and r.get("pdms") is not None and math.isfinite(float(r["pdms"])):
                by.setdefault(str(r["scenario"]), []).append(float(r["pdms"]))
        if by:
            out[name] = {sc: 100.0 * float(np.mean(v)) for sc, v in sorted(by.items())}
    return out


def guard_share(eps: list[dict]) -> dict[str, float]:
    """The obstacle guard's verdicts as shares of all planning steps of ``eps`` ({} without a guard): 'clear'
    is the model's plan driven unchanged; 'go', 'stop', 'slow', 'follow', 'yield', 'caution', 'limit' are steps the guard
    changed."""
    counts: dict[str, int] = {}
    for e in eps:
        for action, n in (e.get("guard_actions") or {}).items():
            counts[action] = counts.get(action, 0) + int(n)
    total = sum(counts.values())
    return {a: n / total for a, n in sorted(counts.items())} if total else {}


def _closed_stats(eps: list[dict], n_boot: int, seed: int) -> dict:
    scores = [float(e["score"]) for e in eps if e.get("score") is not None]
    mean, lo, hi = bootstrap_interval(scores, n_boot, seed)

    def rate(key: str) -> float:  # at_fault_collision: absent from episodes written before it existed
        return float(np.mean([bool(e.get(key, e["collision"]) if key == "at_fault_collision" else e[key])
                              for e in eps])) if eps else float("nan")

    return {"episodes": len(eps), "score": 100.0 * mean, "score_ci95": [100.0 * lo, 100.0 * hi],
            "collision_rate": rate("at_fault_collision"), "collision_rate_any": rate("collision"),
            "off_road_rate": rate("off_road"),
            "route_completion": float(np.mean([float(e.get("route_completion", 0.0)) for e in eps])) if eps else float("nan"),
            "route_completed_rate": rate("route_completed"), **({"guard_share": share} if (share := guard_share(eps)) else {})}


def build_results_json(open_rows: list[dict], open_methods: Sequence[str], episodes: list[dict],
                       closed_methods: Sequence[str], n_boot: int = 2000, seed: int = 0,
                       meta: dict | None = None) -> dict:
    """The ``docs/results.json`` content from the per-scene rows and the scored episodes."""
    out: dict[str, Any] = {"open_loop": {}, "closed_loop": {}, "paired": {}}
    per_scenario = per_scenario_pdms(open_rows, open_methods)
    for name in open_methods:
        mine = [r for r in open_rows if r["method"] == name]
        if not mine:
            continue
        pdms = [float(r["pdms"]) for r in mine if r.get("pdms") is not None]
        out["open_loop"][public_name(name)] = {"scenes": len(mine), "pdms": 100.0 * float(np.mean(pdms)),
                                               "per_scenario": per_scenario.get(name, {})}
    scores: dict[str, dict[tuple, float]] = {}
    for name in closed_methods:
        mine = [e for e in episodes if e["method"] == name]
        if not mine:
            continue
        entry = _closed_stats(mine, n_boot, seed)
        entry["per_scenario"] = {sc: {k: v for k, v in _closed_stats([e for e in mine if e["scenario"] == sc], n_boot,
                                                                     seed).items() if k != "score_ci95"}
                                 for sc in sorted({e["scenario"] for e in mine})}
        out["closed_loop"][public_name(name)] = entry
        scores[public_name(name)] = {(e["scenario"], int(e["seed"])): 100.0 * float(e["score"]) for e in mine
                                     if e.get("score") is not None and math.isfinite(float(e["score"]))}
    for a, b in PAIRS:
        if a not in scores or b not in scores:
            continue
        entry = paired_difference(scores[a], scores[b], n_boot, seed)
        if entry["episodes"] == 0:
            continue
        scenarios = sorted({k[0] for k in set(scores[a]) & set(scores[b])})
        entry["per_scenario"] = {sc: paired_difference({k: v for k, v in scores[a].items() if k[0] == sc},
                                                       {k: v for k, v in scores[b].items() if k[0] == sc}, n_boot, seed)
                                 for sc in scenarios}
        out["paired"][f"{a} vs {b}"] = entry
    if meta:
        out["meta"] = meta
    return out


def markdown_paired(results: dict) -> str:
    """The paired differences as a markdown table (closed-loop score points, 0-100)."""
    paired = results.get("paired", {})
    if not paired:
        return ""
    lines = ["### Closed loop, paired differences (score points, same seeds, mean [95% bootstrap CI])", "",
             "| Comparison | Episodes | Difference | " + " | ".join(
                 sorted({sc for v in paired.values() for sc in v.get("per_scenario", {})})) + " |"]
    scenarios = sorted({sc for v in paired.values() for sc in v.get("per_scenario", {})})
    lines.append("|---|---|---|" + "---|" * len(scenarios))

    def fmt(d: dict) -> str:
        if not d or not math.isfinite(d.get("mean", float("nan"))):
            return "-"
        return f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"

    for key, v in paired.items():
        cells = [fmt(v.get("per_scenario", {}).get(sc, {})) for sc in scenarios]
        lines.append(f"| {key} | {v['episodes']} | {fmt(v)} | " + " | ".join(cells) + " |")
    reading = fusion_reading(results)
    return "\n".join(lines) + "\n" + (f"\n{reading}\n" if reading else "")


def markdown_guard(results: dict) -> str:
    """Per guarded method and scenario, what share of the planning steps drove the model's plan unchanged and
    what the obstacle guard did on the others ('' without a guarded method)."""
    rows = [(m, sc, d["guard_share"]) for m, v in results.get("closed_loop", {}).items()
            for sc, d in v.get("per_scenario", {}).items() if d.get("guard_share")]
    if not rows:
        return ""
    actions = sorted({a for *_, share in rows for a in share} - {"clear"})
    lines = ["", "### Closed loop, what the obstacle guard did (share of planning steps, %)", "",
             "'model' = the model's plan driven unchanged (the guard's 'clear'); the other columns are steps whose plan "
             "the guard replaced: 'go' (creep release along the route), 'stop' / 'slow' / 'caution' (retimed for a "
             "predicted conflict), 'follow' (retimed behind a lead vehicle), 'yield' (braked, no stop point, to let a "
             "moving vehicle pass), 'limit' (the plan check moved a plan that asked for an impossible lateral "
             "acceleration sideways, `core/plan_check.py`; one also retimed counts under its retime).", "",
             "| Method | Scenario | model | " + " | ".join(actions) + " |", "|---|---|---|" + "---|" * len(actions)]
    for method, scenario, share in rows:
        cells = [f"{100.0 * share.get(a, 0.0):.1f}" for a in actions]
        lines.append(f"| {method} | {scenario} | {100.0 * share.get('clear', 0.0):.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict(d: dict | None) -> str | None:
    """'gain' / 'loss' / 'no measurable difference' from a paired difference's 95% interval."""
    if not d or "ci95" not in d:
        return None
    lo, hi = d["ci95"]
    return "gain" if lo > 0 else "loss" if hi < 0 else "no measurable difference"


def fusion_reading(results: dict) -> str:
    """What the fusion ablations say, read from their paired 95% intervals (empty without them). The paper
    reports +0.4 / +0.7 PDMS from fusing the latent actions; here the fused student is compared with no
    fusion, and with its own tokens shuffled across frames / its action embeddings zeroed: when neither
    ablation changes the driving, the planner does not use what the student says; an ablation that drives
    better (the interval below zero) says the tokens mislead it."""
    paired = results.get("paired", {})
    fused = paired.get("e2e_student vs e2e_none")
    if not fused:
        return ""

    def show(d: dict) -> str:
        return f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"

    text = (f"Fusion, read from the intervals (the paper reports +0.4 / +0.7 PDMS from fusion): fused student vs no "
            f"fusion {show(fused)}: {_verdict(fused)}.")
    abl = {name: paired.get(f"e2e_student vs e2e_student_{name}") for name in ("shuffled", "zeroed")}
    if all(abl.values()):
        what = {"shuffled": "shuffled across frames", "zeroed": "zeroed"}
        used = [n for n, d in abl.items() if _verdict(d) == "gain"]
        hurt = [n for n, d in abl.items() if _verdict(d) == "loss"]
        if used:
            text += (" The student's tokens matter to the driving: with them " + " / ".join(
                f"{n} ({show(abl[n])})" for n in used) + " the fused planner drives worse.")
        if hurt:
            text += (" The student's tokens cost driving: with them " + " / ".join(
                f"{what[n]} ({show(abl[n])}, the fused student minus the ablation)" for n in hurt)
                + " the same planner drives better; what the student says misleads the planner more than it helps.")
        rest = [n for n in abl if n not in used and n not in hurt]
        if rest and not (used or hurt):
            text += (f" Shuffling the student's tokens across frames ({show(abl['shuffled'])}) or zeroing the action "
                     f"embeddings ({show(abl['zeroed'])}) does not measurably change the driving either: the planner "
                     "does not rely on what the student says, so no gain from fusion can show.")
        elif rest:
            text += " " + " / ".join(f"{what[n].capitalize()} ({show(abl[n])})" for n in rest) + ": no measurable difference."
    return text
