"""Typed node parameters: the base of the dataclasses in ``param_types.py`` and the
generator that writes that file from ``schema/<node>.schema.json``.

The schema is the one source of every parameter (name, type, default, bounds, whether it
is read-only); ``param_types.py`` gives the nodes typed attributes over it
(``self.params.slop_s``, ``self.params.qos.input_depth``: dotted names become groups).
Regenerate after editing a schema::

    python -m latentvla_ros.ros.contracts.typed_params

test/test_typed_params.py fails while the file and the schemas disagree.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import keyword
import os
import sys
import typing
from pathlib import Path
from typing import Any

from latentvla_ros.core.resources import share_path


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """A node's parameters (or one dotted group of them), validated: build with ``from_flat``
    from what ``parameters.validate_parameters`` returns, never by hand."""

    def as_dict(self) -> dict[str, Any]:
        """The flat parameter dict, with dotted names (as ROS names them)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ParamGroup):
                out.update({f"{f.name}.{k}": v for k, v in value.as_dict().items()})
            else:
                out[f.name] = list(value) if isinstance(value, list) else value
        return out

    def value(self, name: str) -> Any:
        """The value of the parameter ``name`` (dotted: ``qos.input_depth``)."""
        obj: Any = self
        for part in name.split("."):
            if not isinstance(obj, ParamGroup) or part not in {f.name for f in dataclasses.fields(obj)}:
                raise KeyError(name)
            obj = getattr(obj, part)
        return obj

    def __contains__(self, name: str) -> bool:
        try:
            self.value(name)
        except KeyError:
            return False
        return True

    @classmethod
    def from_flat(cls, flat: dict[str, Any]):
        """The dataclass of a complete flat dict (``KeyError``/``TypeError`` if names differ)."""
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if isinstance(hint, type) and issubclass(hint, ParamGroup):
                prefix = f.name + "."
                kwargs[f.name] = hint.from_flat({k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)})
            else:
                kwargs[f.name] = flat[f.name]
        extra = set(flat) - set(cls.__dataclass_fields__) - {k for k in flat if k.split(".")[0] in kwargs}
        if extra:
            raise TypeError(f"{cls.__name__}: no field for {sorted(extra)}")
        return cls(**kwargs)


# ---------------------------------------------------------------- the generator
_PY_TYPES = {"number": "float", "integer": "int", "string": "str", "boolean": "bool"}
_HEADER = '''"""Typed parameters of every node. GENERATED from schema/<node>.schema.json by
``python -m latentvla_ros.ros.contracts.typed_params``: do not edit by hand (the schema is
the source; test/test_typed_params.py fails while this file and the schemas disagree)."""
from __future__ import annotations

from dataclasses import dataclass

from latentvla_ros.ros.contracts.typed_params import ParamGroup
'''


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def _py_type(spec: dict[str, Any]) -> str:
    if spec["type"] == "array":
        return f"list[{_PY_TYPES[spec['items']['type']]}]"
    return _PY_TYPES[spec["type"]]


def _tree(props: dict[str, Any]) -> dict[str, Any]:
    """Dotted names as nested dicts: {'qos': {'input_depth': spec}, 'slop_s': spec}."""
    tree: dict[str, Any] = {}
    for name, spec in props.items():
        *groups, leaf = name.split(".")
        node = tree
        for g in groups:
            node = node.setdefault(g, {"__group__": True})
        node[leaf] = spec
    return tree


def _group_names(trees: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """{(node, group): class name}: nodes whose group has the same fields (names, types,
    read-only; one nesting level) share one class,
    ``<Group>Params`` for the variant most nodes use, the others named by the fields they add."""
    variants: dict[str, dict[str, list[str]]] = {}
    for node, tree in sorted(trees.items()):
        for group, sub in tree.items():
            if isinstance(sub, dict) and sub.get("__group__"):
                shape = tuple((k, _py_type(v), bool(v.get("readOnly"))) for k, v in sorted(sub.items()) if k != "__group__")
                variants.setdefault(group, {}).setdefault(repr(shape), []).append(node)
    names: dict[tuple[str, str], str] = {}
    for group, by_fields in variants.items():
        ranked = sorted(by_fields.items(), key=lambda item: (-len(item[1]), item[1]))
        main = {f[0] for f in ast.literal_eval(ranked[0][0])}
        for rank, (shape, nodes) in enumerate(ranked):
            # another variant: named by what it adds (qos.sensor_* -> SensorQosParams), else by its first node
            extra = os.path.commonprefix(sorted({f[0] for f in ast.literal_eval(shape)} - main)).strip("_")
            prefix = "" if rank == 0 else _camel(extra) if extra.isidentifier() else _camel(nodes[0])
            names.update({(node, group): prefix + _camel(group) + "Params" for node in nodes})
    return names


def _class(class_name: str, tree: dict[str, Any], doc: str, group_names: dict[str, str]) -> list[str]:
    lines = ["", "", "@dataclass(frozen=True)", f"class {class_name}(ParamGroup):", f'    """{doc}"""', ""]
    for name in sorted(k for k in tree if k != "__group__"):
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"parameter name part {name!r} is no Python identifier")
        spec = tree[name]
        if spec.get("__group__"):
            lines.append(f"    {name}: {group_names[name]}")
        else:
            ro = "read-only" if spec.get("readOnly") else "settable at run time"
            lines.append(f"    {name}: {_py_type(spec)}  # {ro}")
    return lines


def render(schemas: dict[str, dict[str, Any]]) -> str:
    """The text of ``param_types.py`` for ``{node: schema}``."""
    trees = {node: _tree(schema["definitions"][node]["properties"]) for node, schema in schemas.items()}
    names = _group_names(trees)
    parts = [_HEADER.rstrip("\n")]
    written: set[str] = set()
    for (node, group), name in sorted(names.items(), key=lambda item: item[1]):
        if name not in written:
            written.add(name)
            users = ", ".join(n for (n, g), c in sorted(names.items()) if c == name)
            parts += _class(name, trees[node][group], f"The ``{group}.*`` parameters of {users}.", {})
    for node in sorted(schemas):
        group_names = {g: c for (n, g), c in names.items() if n == node}
        parts += _class(_camel(node) + "Params", trees[node], f"Parameters of {node} (schema/{node}.schema.json).",
                        group_names)
    parts += ["", "", "PARAM_TYPES: dict[str, type[ParamGroup]] = {"]
    parts += [f'    "{node}": {_camel(node)}Params,' for node in sorted(schemas)]
    parts += ["}", ""]
    return "\n".join(parts)


def schema_files() -> dict[str, dict[str, Any]]:
    """{node: schema} of every ``schema/*.schema.json``."""
    return {p.name.removesuffix(".schema.json"): json.loads(p.read_text())
            for p in sorted(share_path("schema").glob("*.schema.json"))}


TYPES_PATH = Path(__file__).with_name("param_types.py")


def main() -> int:
    TYPES_PATH.write_text(render(schema_files()))
    print(f"wrote {TYPES_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
