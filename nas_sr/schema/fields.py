"""A config field: its default, a one-line description and the bounds a value must keep.

Every option of every job is declared once, with :func:`opt`, in a dataclass of this
package; Hydra composes the YAML presets and groups over those defaults, OmegaConf refuses a
value of the wrong type, and :func:`check_fields` the one outside its bounds.
"""

from __future__ import annotations

import copy
import dataclasses
import textwrap
import typing
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nas_sr.errors import ConfigError


def opt(default: Any, help: str, *, low: float | None = None, high: float | None = None,
        above: float | None = None, below: float | None = None, whole: bool = False,
        choices: tuple[str, ...] | None = None) -> Any:
    """A field: ``default``, its ``help`` line for ``--help``, and its bounds: at least
    ``low``, at most ``high``, more than ``above``, less than ``below``; ``whole`` for a
    count; ``choices`` for a word (null passes where the field's type is optional)."""
    meta = {"help": help, "low": low, "high": high, "above": above, "below": below,
            "whole": whole, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(kind: type, help: str = "") -> Any:
    """A nested section of options (a dataclass), described in ``--help`` by ``help``."""
    return dataclasses.field(default_factory=kind, metadata={"help": help})


def fields(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(dotted key, value, field metadata) for every leaf of ``cfg``, in declared order;
    metadata is empty where the key has no typed field (an open section's own keys)."""
    kind = OmegaConf.get_type(cfg)
    declared = ({f.name: dict(f.metadata) for f in dataclasses.fields(kind)}
                if dataclasses.is_dataclass(kind) else {})
    for key in cfg.keys():
        node = cfg._get_node(key)
        nested = isinstance(node, DictConfig) and not node._is_none()
        if nested and (dataclasses.is_dataclass(OmegaConf.get_type(node)) or key not in declared):
            yield from fields(node, f"{prefix}{key}.")
        else:  # a value, or an open section (video.options) described as one
            yield f"{prefix}{key}", node, declared.get(key, {})


def check_fields(cfg: DictConfig, kind: type | None = None, prefix: str = "") -> None:
    """Each field's value within the bounds its declaration gives, else a one-line
    ConfigError naming the option, its value and what would work. ``kind``: the schema of
    an untyped ``cfg`` (a resumed run's saved config.yaml); a composed one knows its own."""
    typed = OmegaConf.get_type(cfg)
    kind = typed if dataclasses.is_dataclass(typed) else kind
    if kind is None:
        return
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        node = cfg._get_node(field.name) if field.name in cfg else None
        if isinstance(node, DictConfig):
            inner = hints[field.name]
            check_fields(node, inner if dataclasses.is_dataclass(inner) else None,
                         f"{prefix}{field.name}.")
        elif node is not None and not isinstance(node, ListConfig):
            _check_bounds(f"{prefix}{field.name}", node._value(), field.metadata,
                          node._is_optional() or _optional(hints[field.name]))


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _check_bounds(key: str, value: Any, meta: Any, optional: bool) -> None:
    choices = meta.get("choices")
    if choices and value is not None and value not in choices:
        raise ConfigError(f"{key}={value!r}: use " + (" or ".join(choices) if len(choices) < 3
                                                      else f"one of {', '.join(choices)}"))
    low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
    if value is None or all(meta.get(k) is None for k in ("low", "high", "above", "below")):
        return  # null: its type allows it (a composed config has checked the type)
    if isinstance(value, (bool, str)):  # a resumed run's override, read as plain YAML
        raise ConfigError(f"{key}={value!r}: must be a number")
    null = " (or null)" if optional else ""
    if meta.get("below") is not None:
        ok = low <= value < meta["below"]
        want = f"a number in [{low}, {meta['below']})"
    elif low == 0 and high == 1 and not meta.get("whole"):
        ok, want = 0 <= value <= 1, "a share between 0 and 1"
    elif above is not None:
        ok, want = value > above and (high is None or value <= high), f"> {above}" + (
            f" and <= {high}" if high is not None else "")
    else:
        kind = "a whole number" if meta.get("whole") else "a number"
        ok = ((low is None or value >= low) and (high is None or value <= high)
              and (not meta.get("whole") or value == int(value)))
        want = (f"{kind} >= {low}" if high is None else f"{kind} in {low}..{high}"
                if low is not None else f"{kind} <= {high}")
    if not ok:  # 1.0 as the 1 it was given: a float field holds an int as a float
        shown = f"{value:g}" if isinstance(value, float) else value
        raise ConfigError(f"{key}={shown}: must be {want}{null}")


def _shown(value: Any) -> str:
    """A value as a command line would give it (true, null, [a,b])."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f"[{','.join(map(_shown, value))}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe(cfg: DictConfig, width: int = 100) -> list[str]:
    """``--help``'s lines: each option, its value in this command's config, what it does."""
    column, lines = 34, []
    for key, node, meta in fields(cfg):
        nested = isinstance(node, (DictConfig, ListConfig))
        option = f"{key}={_shown(OmegaConf.to_container(node) if nested else node._value())}"
        text = meta.get("help", "")
        wrapped = textwrap.wrap(text, width - column - 4) or [""]
        if len(option) > column:
            lines.append(f"  {option}")
            lines += [f"  {'':<{column}}  {w}" for w in wrapped]
        else:
            lines.append(f"  {option:<{column}}  {wrapped[0]}")
            lines += [f"  {'':<{column}}  {w}" for w in wrapped[1:]]
    return lines
