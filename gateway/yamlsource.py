"""Load a YAML config file into plain Python values, remembering where each came from.

Every mapping key and sequence item gets its (line, column) recorded under its
key path, so pydantic errors can be reported with file and line. ``${VAR}`` and
``${VAR:-default}`` in string scalars are replaced from the environment here,
before validation; an unset variable without a default is an error located at
the scalar that used it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError, ConfigProblem

__all__ = ["KeyPath", "LoadedYaml", "format_path", "load_yaml"]

KeyPath = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_path(path: KeyPath) -> str:
    """``('routes', 0, 'to', 1)`` -> ``routes[0].to[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LoadedYaml:
    """The parsed document plus the position of every key path in it."""

    file: str
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[int | None, int | None]:
        """Line/column (1-based) of ``path`` or of its closest located ancestor."""
        for cut in range(len(path), -1, -1):
            position = self.positions.get(tuple(path[:cut]))
            if position is not None:
                return position
        return None, None

    def problem(self, path: KeyPath, message: str) -> ConfigProblem:
        line, column = self.locate(path)
        return ConfigProblem(self.file, line, column, format_path(path), message)


MAX_VALUES = 50_000
"""Values a config may hold once aliases are expanded: a "billion laughs" file (aliases
of aliases) would otherwise take minutes and gigabytes to expand."""


class _TooLarge(Exception):
    pass


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.loaded = LoadedYaml(file, None)
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.values = 0

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooLarge(node.start_mark.line + 1, node.start_mark.column + 1)
        self.loaded.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        self.loaded.problem(path, "mapping keys must be plain strings")
                    )
                    continue
                if key in result:
                    self.problems.append(
                        ConfigProblem(
                            self.loaded.file,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            format_path((*path, key)),
                            "duplicate key (YAML would silently keep the last one)",
                        )
                    )
                child = (*path, key)
                # Point errors about a key at the key itself, not its value.
                result[key] = self.build(value_node, child)
                self.loaded.positions[child] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        # Scalars are resolved by YAML's own rules (int, float, bool, null, str).
        resolved = _SCALAR_LOADER.construct_object(node, deep=True)
        if isinstance(resolved, str):
            return self._interpolate(resolved, path)
        return resolved

    def _interpolate(self, text: str, path: KeyPath) -> str:
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.problems.append(
                        self.loaded.problem(
                            path,
                            f"environment variable {name} is not set "
                            f"(use ${{{name}:-default}} for a default)",
                        )
                    )
                    return ""
                return default
            return value

        return _ENV.sub(substitute, text)


_SCALAR_LOADER = yaml.SafeLoader("")


def load_yaml(path: str | Path, environ: Mapping[str, str] | None = None) -> LoadedYaml:
    """Parse ``path``; raise ``ConfigError`` for unreadable files, YAML syntax errors,
    duplicate keys and unset environment variables (all at once where possible)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(file, None, None, "", f"cannot read file: {exc.strerror}")]
        ) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise ConfigError(
            [ConfigProblem(file, line, column, "", f"YAML syntax error: {exc.problem}")]
        ) from exc
    builder = _Builder(file, os.environ if environ is None else environ)
    try:
        builder.loaded.data = {} if node is None else builder.build(node, ())
    except _TooLarge as exc:
        line, column = exc.args
        raise ConfigError(
            [
                ConfigProblem(
                    file,
                    line,
                    column,
                    "",
                    f"more than {MAX_VALUES} values once YAML aliases are expanded "
                    "(aliases of aliases?): refused",
                )
            ]
        ) from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return builder.loaded
