"""Mutation testing of the core modules with mutmut (``make mutation``).

For every module in ``MODULES`` this builds a scratch copy of the repository under
``artifacts/mutation/<slug>/`` with a ``[mutmut]`` section that mutates only that
module and runs only the fast test files that cover it, runs ``mutmut run`` there
and reads the verdicts back. Surviving mutants listed in
``scripts/mutation_equivalent.json`` (matched by function and mutated line, not by
mutant number, so edits elsewhere in the file do not break the list) count as
equivalent. Writes docs/testing.json and docs/testing.md.

    python scripts/mutation.py                      # all modules
    python scripts/mutation.py --modules latentvla_ros/core/fallback.py
    python scripts/mutation.py --report-only        # rebuild the docs from the last runs

Timing: each module's wall time is written into docs/testing.json.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "artifacts" / "mutation"
EQUIVALENT_FILE = ROOT / "scripts" / "mutation_equivalent.json"

# module -> fast test files that cover it (missing files are left out, so the list may name files
# that other branches add), mutant-name globs (None = every function), extra pytest arguments.
# Tests that start ROS nodes or processes are left out: mutmut forks a worker per mutant.
MODULES: dict[str, dict] = {
    "latentvla_ros/ros/contracts/approx_sync.py": {
        "tests": ["test/test_approx_sync.py", "test/test_approx_sync_contracts.py"]},
    "latentvla_ros/core/features.py": {"tests": ["test/test_numeric_contracts.py"]},
    "latentvla_ros/core/fallback.py": {"tests": ["test/test_numeric_contracts.py"]},
    "latentvla_ros/models/modeling_lam.py": {
        "tests": ["test/test_vq_contracts.py", "test/test_lam.py"],
        "globs": ["latentvla_ros.models.modeling_lam.xǁEmaVectorQuantizerǁ*",
                  "latentvla_ros.models.modeling_lam.x_perplexity_from_counts*"]},
    "latentvla_ros/ros/conversions.py": {
        "tests": ["test/test_conversions.py", "test/test_numeric_contracts.py", "test/test_camera_inputs.py",
                  "test/test_planner_route.py"],
        # the camera and route tests that spin nodes, replay a bag or evaluate a launch file stay out
        "pytest_args": ["-k", "not sensor_sync_takes and not vehicle_bag_with and not launch_argument_and_cli"
                              " and not planner_turns and not planner_uses and not planner_drops"
                              " and not sim_bridge_latches and not bag_replay_publishes"]},
    "latentvla_ros/core/tracking.py": {
        "tests": ["test/test_tracking.py", "test/test_carla_control.py", "test/test_closed_loop.py"],
        "pytest_args": ["-k", "not ros_graph and not controller_output_selection"]},
    "latentvla_ros/evaluation/geometry.py": {
        "tests": ["test/test_geometry_routes.py", "test/test_eval_geometry.py", "test/test_geometry_contracts.py",
                  "test/test_pdms_boundaries.py", "test/test_eval_pdms.py"]},
    # the scorer's polylines, lane matching and route chaining (moved out of geometry.py) and the route input
    "latentvla_ros/core/lanes.py": {
        "tests": ["test/test_geometry_routes.py", "test/test_geometry_contracts.py", "test/test_eval_geometry.py",
                  "test/test_route_input.py"]},
    "latentvla_ros/core/route.py": {
        "tests": ["test/test_route_contracts.py", "test/test_route_input.py", "test/test_geometry_contracts.py",
                  "test/test_eval_geometry.py"]},
    "latentvla_ros/evaluation/pdm_metrics.py": {
        "tests": ["test/test_pdm_metrics_contracts.py", "test/test_pdms_boundaries.py", "test/test_eval_pdms.py",
                  "test/test_eval_geometry.py"]},
    "latentvla_ros/evaluation/collisions.py": {
        "tests": ["test/test_collisions_at_fault.py", "test/test_pdm_metrics_contracts.py", "test/test_pdms_boundaries.py"],
        # the simulator episodes stay out (seconds each per mutant): hand-built boxes cover the rules and
        # hand-placed highway-env vehicles on a bare road (no episode) the adapter highway_env_contacts
        "pytest_args": ["-k", "not simulator"]},
    "latentvla_ros/evaluation/pdms.py": {
        "tests": ["test/test_pdms_boundaries.py", "test/test_eval_pdms.py", "test/test_eval_geometry.py"]},
    "latentvla_ros/evaluation/agent_replay.py": {
        "tests": ["test/test_agent_replay.py", "test/test_pdms_boundaries.py", "test/test_eval_pdms.py"]},
    # the LiDAR obstacle guard after the planner: hand-made point clouds, tracker, retiming, GuardedAgent
    "latentvla_ros/core/obstacle_guard.py": {"tests": [
        "test/test_obstacle_guard.py", "test/test_obstacle_guard_follow.py", "test/test_obstacle_guard_latch.py",
        "test/test_obstacle_guard_yield.py", "test/test_plan_check.py"]},
    "latentvla_ros/core/plan_check.py": {"tests": ["test/test_plan_check.py"]},
    "latentvla_ros/evaluation/savgol.py": {
        "tests": ["test/test_savgol_contracts.py", "test/test_eval_geometry.py", "test/test_pdms_boundaries.py"]},
}
# what the tests read besides the package and test/
ALSO_COPY = ["config", "schema", "launch", "msg", "package.xml", "setup.py", "resource"]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def _slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", "_")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the mutated copy must be the one imported
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SDL_VIDEODRIVER="offscreen", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))
    return env


def _prepare(module: str, tests: list[str], pytest_args: list[str], work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "latentvla_ros", work / "latentvla_ros",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "test", work / "test", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ALSO_COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name)
        elif src.exists():
            shutil.copy2(src, work / name)
    (work / "checkpoints").symlink_to(ROOT / "checkpoints")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    cfg["mutmut"] = {
        "source_paths": "latentvla_ros",
        "only_mutate": module,
        "also_copy": "\n" + "\n".join(ALSO_COPY + ["checkpoints"]),
        "pytest_add_cli_args_test_selection": "\n" + "\n".join(tests),
        "pytest_add_cli_args": "\n" + "\n".join(["-x", *pytest_args]),
        "process_isolation": "fork",
        "use_git_change_detection": "false",
    }
    with open(work / "setup.cfg", "w") as f:
        cfg.write(f)


def _diff(work: Path, name: str) -> str:
    """The mutant's diff (mutmut show). On a loaded machine one call can take minutes of wall time: try twice,
    then give up on this mutant's diff with a warning; without its diff it cannot match an equivalent entry,
    so it counts as survived (the conservative side)."""
    for _ in range(2):
        try:
            out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=_env(),
                                 capture_output=True, text=True, timeout=600)
            return out.stdout
        except subprocess.TimeoutExpired:
            continue
    print(f"[mutation] warning: no diff for {name} (mutmut show timed out twice); counted as survived", flush=True)
    return ""


def _mutated_lines(diff: str) -> list[str]:
    return [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def _function(name: str) -> str:
    """'pkg.mod.xǁClsǁmeth__mutmut_3' -> 'Cls.meth'; 'pkg.mod.x_func__mutmut_1' -> 'func'."""
    base = name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    if base.startswith("xǁ"):
        return ".".join(p for p in base[2:].split("ǁ") if p)
    return base.removeprefix("x_")


def _selected(name: str, globs: list[str] | None) -> bool:
    import fnmatch
    return globs is None or any(fnmatch.fnmatch(name, g) for g in globs)


def _verdicts(module: str, globs: list[str] | None, work: Path) -> dict[str, str]:
    """mutant name -> mutmut status, for the selected functions only."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / (module + ".meta")).read_text())
    return {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items() if _selected(k, globs)}


def run_module(module: str, max_children: int) -> dict:
    spec = MODULES[module]
    tests = [t for t in spec["tests"] if (ROOT / t).exists()]
    globs = spec.get("globs")
    if not tests:
        raise SystemExit(f"none of the test files for {module} exist: {spec['tests']}")
    work = WORK / _slug(module)
    _prepare(module, tests, spec.get("pytest_args", []), work)
    args = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *(globs or [])]
    start = time.monotonic()
    log = work / "mutmut.log"
    with open(log, "w") as f:
        proc = subprocess.run(args, cwd=work, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=6 * 3600)
    seconds = time.monotonic() - start
    if not (work / "mutants" / (module + ".meta")).exists():
        raise SystemExit(f"mutmut produced no results for {module} (exit {proc.returncode}); see {log}")
    survivors = {}
    for name, status in sorted(_verdicts(module, globs, work).items()):
        if status not in KILLED:
            survivors[name] = {"status": status, "diff": _diff(work, name)}
    result = {"verdicts": _verdicts(module, globs, work), "survivors": survivors, "seconds": round(seconds, 1),
              "tests": tests, "exit_code": proc.returncode}
    (work / "result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def _load_equivalent() -> dict[str, list[dict]]:
    return json.loads(EQUIVALENT_FILE.read_text()) if EQUIVALENT_FILE.exists() else {}


def _match_equivalent(module: str, name: str, diff: str, equivalent: dict[str, list[dict]]) -> str | None:
    func, lines = _function(name), _mutated_lines(diff)
    for entry in equivalent.get(module, []):
        if entry["function"] == func and entry["mutated"] in lines:
            return entry["reason"]
    return None


def previous_summary() -> dict[str, dict]:
    """Modules measured earlier, read back from docs/testing.json and the lists in docs/testing.md.

    Rerunning one module on a checkout without the other modules' ``artifacts/mutation`` results keeps
    their lines as they were instead of dropping them from the docs.
    """
    try:
        data = json.loads((ROOT / "docs" / "testing.json").read_text())
        md = (ROOT / "docs" / "testing.md").read_text()
    except (OSError, ValueError):
        return {}
    lines: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in md.splitlines():
        if line.startswith("## "):
            section = "equivalent_lines" if "equivalent" in line else "surviving_lines"
        elif section and line.startswith("- `"):
            module = line[3:].split("`", 1)[0]
            lines.setdefault(module, {"equivalent_lines": [], "surviving_lines": []})[section].append(line)
    out = {}
    for module, counts in data.get("mutation", {}).items():
        details = data.get("mutation_details", {}).get(module, {})
        non_eq = counts["mutants"] - counts["equivalent"]
        out[module] = {**counts, "score": details.get("score", round(counts["killed"] / non_eq, 3) if non_eq else 1.0),
                       "seconds": details.get("seconds", 0.0), "tests": details.get("tests", []),
                       **lines.get(module, {"equivalent_lines": [], "surviving_lines": []})}
    return out


def summarise(results: dict[str, dict]) -> dict:
    equivalent = _load_equivalent()
    summary = {}
    for module, res in results.items():
        verdicts = res["verdicts"]
        killed = sum(1 for s in verdicts.values() if s in KILLED)
        eq, surv = [], []
        for name, info in res["survivors"].items():
            reason = _match_equivalent(module, name, info["diff"], equivalent)
            item = {"mutant": name, "function": _function(name), "status": info["status"],
                    "mutated": " | ".join(_mutated_lines(info["diff"]))}
            if reason:
                eq.append({**item, "reason": reason})
            else:
                surv.append(item)
        non_eq = len(verdicts) - len(eq)
        summary[module] = {"mutants": len(verdicts), "killed": killed, "equivalent": len(eq), "survived": len(surv),
                           "score": round(killed / non_eq, 3) if non_eq else 1.0, "seconds": res["seconds"],
                           "tests": res["tests"], "equivalent_mutants": eq, "surviving_mutants": surv}
    return summary


def write_docs(summary: dict) -> None:
    out_json = {"mutation": {m: {k: s[k] for k in ("mutants", "killed", "equivalent", "survived")}
                             for m, s in summary.items()},
                "mutation_details": {m: {"score": s["score"], "seconds": s["seconds"], "tests": s["tests"]}
                                     for m, s in summary.items()}}
    (ROOT / "docs" / "testing.json").write_text(json.dumps(out_json, indent=2) + "\n")
    lines = [
        "# Testing: mutation score of the core modules",
        "",
        "Generated by `make mutation` (`scripts/mutation.py`, mutmut). Each module is mutated on its own and",
        "only the fast test files listed for it run against its mutants. Score = killed / (mutants - equivalent);",
        "the target is >= 85% per module. A timeout counts as killed; a mutant no selected test reaches counts",
        "as survived. Equivalent mutants are listed in `scripts/mutation_equivalent.json` with the reason",
        "(matched by function and mutated line). `modeling_lam.py` is mutated in the VQ quantiser only",
        "(`EmaVectorQuantizer`, `perplexity_from_counts`). Times are wall seconds on this 2-core machine,",
        "which other jobs shared; `make mutation MODULES=<path>` reruns one module.",
        "",
        "| module | mutants | killed | equivalent | survived | score | time [s] | tests |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m, s in summary.items():
        lines.append(f"| `{m}` | {s['mutants']} | {s['killed']} | {s['equivalent']} | {s['survived']} | "
                     f"{100 * s['score']:.1f}% | {s['seconds']:.0f} | {', '.join(s['tests'])} |")
    for m in MODULES:
        if m not in summary:
            lines.append(f"| `{m}` | not measured yet: `make mutation MODULES={m}` | | | | | | |")
    lines += ["", "## Surviving mutants judged equivalent", ""]
    for m, s in summary.items():
        lines += s.get("equivalent_lines", [])
        for e in s.get("equivalent_mutants", []):
            lines.append(f"- `{m}` `{e['function']}`: `{e['mutated']}`: {e['reason']}")
    lines += ["", "## Surviving mutants not (yet) killed", ""]
    for m, s in summary.items():
        lines += s.get("surviving_lines", [])
        for e in s.get("surviving_mutants", []):
            lines.append(f"- `{m}` `{e['function']}` ({e['status']}): `{e['mutated']}`")
    (ROOT / "docs" / "testing.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="modules to (re)run")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="only rebuild docs from the last results")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {list(MODULES)}")
    results = {}
    previous = previous_summary()
    for module in MODULES:  # keep the table order; modules not rerun keep their last result
        path = WORK / _slug(module) / "result.json"
        if module in args.modules and not args.report_only:
            print(f"[mutation] {module} ...", flush=True)
            results[module] = run_module(module, args.max_children)
            print(f"[mutation] {module}: {len(results[module]['verdicts'])} mutants, "
                  f"{len(results[module]['survivors'])} survivors, {results[module]['seconds']:.0f} s", flush=True)
        elif path.exists():
            results[module] = json.loads(path.read_text())
    fresh = summarise(results)
    # modules with no result here keep their last documented line
    summary = {m: fresh[m] if m in fresh else previous[m] for m in MODULES if m in fresh or m in previous}
    write_docs(summary)
    bad = {m: s["score"] for m, s in summary.items() if s["score"] < 0.85}
    for m, s in summary.items():
        print(f"{m}: {s['killed']}/{s['mutants'] - s['equivalent']} killed ({100 * s['score']:.1f}%), "
              f"{s['equivalent']} equivalent, {s['survived']} survived, {s['seconds']:.0f} s")
    if bad:
        print(f"below the 85% target: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
