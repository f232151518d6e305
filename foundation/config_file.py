"""One job config on disk: a dataclass saved as YAML next to what it made, loaded back with every value checked.

Shared by the training job (training.config.JobConfig) and the decide run (assistant.decide.config.DecideConfig)
so both give the same messages for a bad file: the file name, the line, the setting and the value.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import yaml

from foundation import atomic
from foundation.errors import ArenaError


def save_yaml(cfg, path: Path) -> None:
    atomic.write_text(path, yaml.safe_dump(asdict(cfg), sort_keys=False, allow_unicode=True))


def load_yaml(cls, path: Path):
    """`cls` built from a YAML mapping; ArenaError naming the file (and line) for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ArenaError(f"{path.name}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ArenaError(f"{path.name}: expected a mapping of settings")
    return from_mapping(cls, data, path.name)


def from_mapping(cls, data: dict, where: str = "config"):
    """`cls(**data)` refusing unknown settings and values of the wrong type, naming them."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ArenaError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    return cls(**{key: coerce(known[key], value, where) for key, value in data.items()})


def coerce(f, value, where: str):
    """Check/convert one YAML value to the field's type, naming the setting on error."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "str":
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ArenaError(f"{where}: {f.name} must be a {kind}, got {value!r}") from None
    if kind.startswith("list") and not isinstance(value, list):
        raise ArenaError(f"{where}: {f.name} must be a list, got {value!r}")
    if kind.startswith("dict") and not isinstance(value, dict):
        raise ArenaError(f"{where}: {f.name} must be a mapping, got {value!r}")
    return value
