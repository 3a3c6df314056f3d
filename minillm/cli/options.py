"""Command-line options generated from the config dataclasses, so `--help` always matches the code.

Each ModelConfig / TrainConfig field becomes `--name`; its help is the field's trailing `# comment` in
minillm/config.py, and its shown default is the one the chosen --size / --preset really use (presets.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from collections.abc import Sequence
from typing import Any

from minillm.presets import SIZES, size_profile


def field_comments(cls) -> dict[str, str]:
    """The trailing `# comment` of each field in a dataclass's source: the documentation of that field."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    return comments


def _parse_value(text: str, default: Any) -> Any:
    """Parse an override by the type of the field's default: ints, floats, bools, None and strings."""
    low = text.lower()
    if low in ("none", "null"):
        return None
    if isinstance(default, bool) or low in ("true", "false"):
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
        return low in ("true", "1", "yes")
    for kind in (int, float):
        if isinstance(default, kind) or default is None:
            try:
                return kind(text)
            except ValueError:
                if isinstance(default, kind):
                    raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
    return text


# A preset table (rows by preset or size name), the option that picks the row, and the row picked (None: unknown).
PresetTable = tuple[dict[str, dict], str, "str | None"]


def preset_default(name: str, default: Any, tables: Sequence[PresetTable]) -> str:
    """The default a field really gets: '600 at --size laptop; ci 30, gpu 5000' when a preset table sets it
    (the first table that does), else the dataclass default. So --help never shows a value that is not used."""
    for table, flag, chosen in tables:
        if any(name in row for row in table.values()):
            values = {key: row.get(name, default) for key, row in table.items()}
            others = ", ".join(f"{k} {v}" for k, v in values.items() if k != chosen)
            return f"{values[chosen]} at {flag} {chosen}; {others}" if chosen in values else f"by {flag}: {others}"
    return str(default)


def add_config_options(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = (),
                       tables: Sequence[PresetTable] = ()) -> None:
    group = parser.add_argument_group(f"{cls.__name__} fields (defaults as the chosen --size/--preset set them; "
                                      f"see minillm/config.py and minillm/presets.py)")
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default
        group.add_argument(f"--{f.name}", dest=f"{cls.__name__}.{f.name}", default=argparse.SUPPRESS,
                           type=lambda s, d=default: _parse_value(s, d), metavar=type(default).__name__.upper()
                           if default is not None else "VALUE",
                           help=f"{comments.get(f.name, '')} [default: {preset_default(f.name, default, tables)}]")


def config_overrides(args: argparse.Namespace, cls) -> dict[str, Any]:
    prefix = f"{cls.__name__}."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}



def chosen_presets(argv: Sequence[str]) -> tuple[str | None, str]:
    """(--size, --preset) as `train` will resolve them, read before the full parse so that `train --size ci --help`
    shows the ci defaults; size None when it cannot be known yet (an invalid value fails in the full parse)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--size", default=None)
    pre.add_argument("--preset", default="small")
    known, _ = pre.parse_known_args(list(argv))
    try:
        size = known.size or size_profile()
    except ValueError:  # a bad $MINILLM_SIZE: the help lists every size; training reports the error
        size = None
    return (size if size in SIZES else None), known.preset
