"""A job's flags derived from its config dataclass, so each setting is declared once (type, choices, help).

transformers' HfArgumentParser turns each field into `--field_name` and `--field-name` (a bool also gets
`--no-field-name` when it defaults to true; a Literal gives the choices; `metadata` carries help and any other
argparse setting). Every flag defaults to None so that only the flags actually given override the job's YAML.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import fields
from typing import get_type_hints


def add_config_flags(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` except `skip` (settings with flags of their own shape, e.g. --data)."""
    from transformers import HfArgumentParser  # deferred: ~1 s; main adds flags only for the command run

    hints = get_type_hints(cls)  # Annotated bounds stripped: argparse converts the type, pydantic checks bounds
    derived = []
    for f in fields(cls):
        if f.name in skip:
            continue
        f = copy.copy(f)  # the parser writes the resolved type onto the field it is given
        f.type = hints[f.name]
        HfArgumentParser._parse_dataclass_field(p, f)
        derived.append(f.name)
    p.set_defaults(**dict.fromkeys(derived))


def numbers(kind):
    """argparse type for '1e-4,3e-4': a list of numbers (the flags also take them space-separated)."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None
    parse.__name__ = f"{kind.__name__} list"  # argparse names the type in its error message
    return parse
