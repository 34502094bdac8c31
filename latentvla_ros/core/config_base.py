"""Base for model/training configuration dataclasses (LeRobot-style).

Every field is documented in its dataclass and checked in ``validate()``,
which ``__post_init__`` calls; a bad value raises ``ConfigError`` with the
field name and the reason.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and why."""


def require(condition: bool, field_name: str, reason: str) -> None:
    if not condition:
        raise ConfigError(f"{field_name}: {reason}")


@dataclasses.dataclass
class ConfigBase:
    def __post_init__(self) -> None:
        # JSON turns tuples into lists; normalise so configs compare equal.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and "tuple" in str(f.type):
                setattr(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**data)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls: type[T], path: str | Path) -> T:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        return cls.from_dict(data)
