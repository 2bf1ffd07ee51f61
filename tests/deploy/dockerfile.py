"""A small reader for the repository's Dockerfile and .dockerignore (no Docker needed).

Enough of the Dockerfile grammar for the tests: line continuations, comments,
``ARG`` defaults in ``FROM``, stages, exec-form (JSON) arguments. ``.dockerignore``
patterns are matched the way the Docker builder does for simple patterns
(``*``, ``**``, ``!`` exceptions, the last matching line wins).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        text = re.sub(r"^(--\S+\s+)+", "", self.args)  # HEALTHCHECK options
        text = re.sub(r"^CMD\s+", "", text)
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def stages(text: str) -> list[Stage]:
    args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and not result:
            key, _, default = instruction.args.partition("=")
            args[key] = default.strip('"')
        elif instruction.keyword == "FROM":
            parts = instruction.args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append(Stage(image, stage))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def load() -> list[Stage]:
    return stages((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def ignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Is ``relative`` (a path in the build context) excluded by ``patterns``?"""
    result = False
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = fnmatch.translate(body).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if body.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(body[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negate
    return result
