"""Every third-party module the production packages import is declared in pyproject.toml:
a module-level import as a dependency, a lazy one (inside a function) at least in an
extra. A module that only arrives through another package can vanish with that
package's next release (issue 13, finding 8)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("routing", "connectors", "gateway")

OPTIONAL_PARTS = {
    # The conformance suite is a pytest plugin: it runs only under pytest, so its
    # imports (pytest, pytest-asyncio) come from the test extra.
    "connectors/testing",
}

ALLOWED_UNDECLARED = {
    # pydantic's own core, pinned exactly by pydantic; schema.py reads its public
    # core_schema API, which moves in lockstep with the pydantic we declare.
    "pydantic_core": "pydantic",
}


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def _imports() -> dict[str, bool]:
    """Top-level third-party module -> imported at module level somewhere."""
    own = set(PACKAGES)
    found: dict[str, bool] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            optional = any(str(path.relative_to(ROOT)).startswith(p) for p in OPTIONAL_PARTS)
            # An optional part's module-level imports count as lazy: loading the part
            # is the choice to need them.
            top_level = set() if optional else {id(node) for node in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    root = name.split(".")[0]
                    if root in own or root in sys.stdlib_module_names or root == "__future__":
                        continue
                    found[root] = found.get(root, False) or id(node) in top_level
    return found


def test_imported_modules_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = {_name(r) for r in project["dependencies"]}
    extras = {
        _name(r)
        for group in project["optional-dependencies"].values()
        for r in group
        if not r.startswith("meshgate")
    }
    distributions = packages_distributions()
    problems = []
    for module, at_module_level in sorted(_imports().items()):
        if module in ALLOWED_UNDECLARED:
            continue
        names = {_name(d) for d in distributions.get(module, [module])}
        if names & required:
            continue
        if names & extras and not at_module_level:
            continue  # optional: imported only where its feature runs
        where = "an extra but imported at module level" if names & extras else "nowhere"
        problems.append(f"{module} ({', '.join(sorted(names))}): declared in {where}")
    assert not problems, "imported but not declared as a dependency:\n" + "\n".join(problems)


def test_the_check_sees_what_it_guards() -> None:
    """The scan finds the modules this test exists for (it cannot pass by seeing none)."""
    found = _imports()
    assert {"yarl", "pamqp", "aiormq", "paho", "fastavro"} <= found.keys()
    assert found["aiomqtt"] is False  # the demo imports it lazily (demo extra)
