"""One job config on disk: a dataclass saved as YAML next to what it made, loaded back with every value checked.

pydantic checks the values against the dataclass's own annotations (types, `Literal` choices, bounds written as
`Annotated[int, Ge(1)]`, small validators attached with `check`); this module turns its errors into one
ArenaError naming the file, the setting and the value. Shared by the training job (training.config.JobConfig),
the decide run (assistant.decide.config.DecideConfig) and the export bundle (assistant.ship.strategy.Strategy).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from functools import cache
from pathlib import Path
from typing import Self

import yaml
from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError

from foundation import atomic
from foundation.errors import ArenaError

# For the config dataclasses (`@pydantic.with_config(STRICT)`): an unknown setting is refused rather than
# dropped, and a YAML number where text is expected (`name: 2024`) is read as that text.
STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class YamlFile:
    """`to_yaml` / `from_yaml` for a config dataclass (JobConfig, DecideConfig, the bundle's Strategy): saved
    next to what it made, read back with every value checked."""

    def to_yaml(self, path: Path) -> None:
        atomic.write_text(path, yaml.safe_dump(asdict(self), sort_keys=False, allow_unicode=True))

    @classmethod
    def from_yaml(cls, path: Path) -> Self:
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
        return checked(cls, data, path.name)

    def with_flags(self, args, skip: tuple[str, ...] = ()) -> Self:
        """This config with each setting whose flag was given (not None in the argparse namespace `args`) set
        from it; `skip`: settings whose flags have a shape of their own."""
        for f in fields(self):
            value = getattr(args, f.name, None)
            if value is not None and f.name not in skip:
                setattr(self, f.name, value)
        return self


def checked(cls, data: dict, where: str = ""):
    """`cls(**data)` with every value validated by pydantic; ArenaError naming each bad setting and its value."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ArenaError(f"{where}: {problems}" if where else problems) from None


def plain(obj) -> dict:
    """A (nested) dataclass as plain dicts and lists, the inverse of `checked` for records stored as JSON."""
    return _adapter(type(obj)).dump_python(obj)


def check(fn) -> AfterValidator:
    """An annotation that runs `fn(value)` (raising ArenaError that names the problem) and keeps the value:
    `augment: Annotated[str, check(parse_augment)]` for what a type cannot say."""
    def run(value):
        fn(value)
        return value
    return AfterValidator(run)


@cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


def _problem(err: dict) -> str:
    name = ".".join(str(part) for part in err["loc"])
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown setting {name}"
    return f"{name} {err['msg'].replace('Input should be', 'must be')}, got {err['input']!r}"
