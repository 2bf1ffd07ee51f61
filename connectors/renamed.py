"""Old spellings of options that still load, so config files written for an older
meshgate keep working (docs/decisions/0006-option-names.md).

An options model lists them in its ``renamed`` class attribute; the model rewrites
an old key to the new one before validation (milliseconds become seconds), and
``gateway.config`` warns once per use with the file, the line and the new spelling.
Giving both spellings of one option is an error: which one was meant?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Renamed", "rename_keys"]


@dataclass(frozen=True, slots=True)
class Renamed:
    """Option ``old`` is now ``new``; its value times ``scale`` is the new value
    (0.001 for a duration that was in milliseconds and is now in seconds)."""

    old: str
    new: str
    scale: float = 1.0

    def advice(self) -> str:
        unit = " (in seconds: the old value / 1000)" if self.scale == 0.001 else ""
        return f"option {self.old!r} is deprecated: write {self.new!r}{unit}"


def rename_keys(renames: Sequence[Renamed], data: Any) -> Any:
    """``data`` (a model's raw input) with old keys rewritten to the new ones."""
    if not isinstance(data, Mapping) or not any(r.old in data for r in renames):
        return data
    out = dict(data)
    for rename in renames:
        if rename.old not in out:
            continue
        if rename.new in out:
            raise ValueError(
                f"{rename.old!r} and {rename.new!r} are one option (the old and the new "
                f"spelling): keep only {rename.new!r}"
            )
        out[rename.new] = _scaled(out.pop(rename.old), rename.scale)
    return out


def _scaled(value: Any, scale: float) -> Any:
    """``value`` in the new unit; a quoted number (``"30000"``) is a number too, so an
    old ``_ms`` value never reaches the new option unconverted."""
    if scale == 1.0 or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value  # not a number: the new option's validation says so
    if isinstance(value, int | float):
        return value * scale
    return value
