"""Errors of the gateway layer (config, runtime).

MeshgateError (routing.errors)
└── ConfigError (ValueError)   the config file is invalid; ``problems`` lists every
                               problem with file, line, column and key path
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.errors import MeshgateError

__all__ = ["ConfigError", "ConfigProblem"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file, located as precisely as the YAML allows."""

    file: str
    line: int | None  # 1-based
    column: int | None  # 1-based
    path: str  # dotted key path, e.g. routes[0].to[1].topic
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        at = f" {self.path}:" if self.path else ""
        return f"{where}:{at} {self.message}"


class ConfigError(MeshgateError, ValueError):
    """The configuration is invalid; every problem found is reported at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"invalid configuration ({count}):\n" + "\n".join(f"  {p}" for p in problems)
        )
