"""A job's flags derived from its config dataclass, so each setting is declared once (type, choices, help).

transformers' HfArgumentParser turns each field into `--field_name` and `--field-name` (a bool also gets
`--no-field-name` when it defaults to true; a Literal gives the choices; `metadata` carries help and any other
argparse setting). The result is a parent parser (argparse's `parents=`) for the command's own parser. Every
flag defaults to None so that only the flags actually given override the job's YAML.
"""

from __future__ import annotations

import argparse
from dataclasses import field, fields, make_dataclass
from typing import get_type_hints


def config_flags(cls, skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A parent parser with one flag per field of `cls` except `skip` (settings with flags of their own shape,
    e.g. --data), listed under their own heading in --help."""
    from transformers import HfArgumentParser  # deferred: ~2 s; main builds only the command being run

    hints = get_type_hints(cls)  # Annotated bounds stripped: argparse converts the type, pydantic checks bounds
    # A dataclass of the flagged fields alone: the parser reads (and rewrites the types of) this one, never `cls`.
    flagged = make_dataclass(
        f"{cls.__name__}Flags",
        [(f.name, hints[f.name], field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
         for f in fields(cls) if f.name not in skip],
        namespace={"_argument_group_name": f"{cls.__name__} settings (each overrides the YAML value when given)"})
    parser = HfArgumentParser(flagged, add_help=False)
    parser.set_defaults(**dict.fromkeys(f.name for f in fields(flagged)))
    return parser


def numbers(kind):
    """argparse type for '1e-4,3e-4': a list of numbers (the flags also take them space-separated)."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None
    parse.__name__ = f"{kind.__name__} list"  # argparse names the type in its error message
    return parse
