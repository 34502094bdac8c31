"""The layers of docs/architecture.md hold: read from the source (AST), imports at module level and
inside functions alike.

- each package imports only the packages below it (``ALLOWED``); ``core/`` nothing of ours;
- rclpy only in ``ros/`` (not ``ros/contracts/``) and ``apps/`` (``cli.py`` is a shim over ``apps/cli.py``);
- no import circle between modules.

No exception is listed: every break that existed was removed (issue 14), so none can come back.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentvla_ros"

#: package (first component under latentvla_ros; ros/contracts on its own) -> packages it may import.
#: ``msg`` is the generated ROS message package (rosidl): only the ROS side and the apps use it.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "data": {"core"},
    "bags": {"core"},
    "ros.contracts": {"core"},
    "runtime": {"core", "models"},
    "training": {"core", "data", "models", "runtime"},
    "evaluation": {"core", "data", "models", "runtime", "ros.contracts"},  # node parameter defaults from the schemas
    "ros": {"core", "models", "runtime", "bags", "data", "ros.contracts", "msg"},
    "cli": {"apps"},  # the shim of ``python -m latentvla_ros.cli``: apps/cli.py and nothing else
}
#: apps on top: anything below them
TOP = {"apps", "__init__"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts) or "__init__"] = path
    return out


def _imports(name: str, path: Path) -> list[str]:
    """Absolute dotted names (without the ``latentvla_ros.`` prefix for ours) imported by a module."""
    found = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = ["latentvla_ros", *name.split(".")]
                keep = len(parts) - node.level + (1 if is_pkg else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            found += [base] + [f"{base}.{a.name}" for a in node.names]
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> our modules it imports, module -> foreign top-level packages it imports)."""
    mods = _modules()
    ours: dict[str, set[str]] = {m: set() for m in mods}
    foreign: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for full in _imports(m, path):
            if not full.startswith("latentvla_ros."):
                if full != "latentvla_ros":
                    foreign[m].add(full.split(".")[0])
                continue
            target = full[len("latentvla_ros."):]
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if not target and full.startswith("latentvla_ros.msg"):
                target = "msg"  # generated, not in the source tree
            if target and target != m and not m.startswith(target + "."):
                ours[m].add(target)
    return ours, foreign


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["ros", "contracts"]:
        return "ros.contracts"
    return parts[0]


def test_each_package_imports_only_the_layers_below_it():
    ours, _ = _graph()
    breaks = set()
    for m, targets in ours.items():
        layer = _layer(m)
        if layer in TOP:
            continue
        assert layer in ALLOWED, f"{m}: package {layer!r} has no place in the layers (add it to ALLOWED and docs/architecture.md)"
        for t in targets:
            tl = _layer(t)
            if tl != layer and tl not in ALLOWED[layer]:
                breaks.add((m, tl))
    assert not breaks, f"imports across the layers (docs/architecture.md): {sorted(breaks)}"


def test_core_imports_nothing_of_ours_above_it():
    ours, _ = _graph()
    up = sorted((m, t) for m, ts in ours.items() if _layer(m) == "core" for t in ts if _layer(t) != "core")
    assert not up, up


def test_rclpy_only_on_the_ros_side_and_in_the_apps():
    _, foreign = _graph()
    users = {m for m, pkgs in foreign.items() if "rclpy" in pkgs}
    allowed = {m for m in users if _layer(m) in ({"ros"} | TOP)}
    new = sorted(users - allowed)
    assert not new, f"rclpy imported outside ros/ and the apps: {new}"
    contracts = sorted(m for m, pkgs in foreign.items() if _layer(m) == "ros.contracts" and "rclpy" in pkgs)
    assert not contracts, contracts


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def test_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    ours, _ = _graph()
    circles = [sorted(c) for c in _circles(ours)]
    assert not circles, f"import circles: {circles}"


def test_executables_are_listed_once_and_exist():
    """setup.py, CMakeLists.txt and ros/topology.py read ros/contracts/executables.py; each entry has a main()."""
    from latentvla_ros.ros.contracts.executables import EXECUTABLES, NODE_EXECUTABLES
    from latentvla_ros.ros.topology import NODE_NAMES, carla_controller_spec, graph_nodes

    root = PACKAGE.parent
    for name, module in EXECUTABLES.items():
        path = root / (module.replace(".", "/") + ".py")
        assert "\ndef main(" in path.read_text(), f"{name}: {module} has no main()"
    specs = [*graph_nodes(with_teacher=True), carla_controller_spec()]
    assert {s.name: s.module for s in specs} == NODE_EXECUTABLES
    assert set(NODE_NAMES) | {"twist_controller"} == set(NODE_EXECUTABLES)
    for name in NODE_EXECUTABLES:
        assert (root / "schema" / f"{name}.schema.json").is_file(), name
    for text in ((root / "setup.py").read_text(), (root / "CMakeLists.txt").read_text()):
        assert "ros/contracts/executables.py" in text and "latentvla_ros.ros.nodes." not in text
