"""The example plugin uses only meshgate's public plugin API.

Every name ``examples/meshgate-cloudevents-http`` imports from meshgate's packages
(``connectors``, ``routing``, ``gateway``) must be listed in the ``__all__`` of a
module whose path has no private (``_``) part: a plugin written the way the docs
say keeps working when internals move. (The plugin's tests may use more: the
gateway itself, to run one end to end.)
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "meshgate-cloudevents-http" / "src" / "meshgate_cloudevents_http"
MESHGATE_PACKAGES = ("connectors", "routing", "gateway")


def _meshgate_imports() -> list[tuple[str, str, str]]:
    """(plugin file, module, name) of every ``from <meshgate module> import name``."""
    found = []
    for path in sorted(PLUGIN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in MESHGATE_PACKAGES:
                        found.append((path.name, alias.name, ""))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                MESHGATE_PACKAGES
            ):
                module = node.module or ""
                found.extend((path.name, module, a.name) for a in node.names)
    return found


def test_the_plugin_imports_something_from_meshgate() -> None:
    assert len(_meshgate_imports()) >= 10  # the scan sees the plugin's imports


@pytest.mark.parametrize(("where", "module", "name"), _meshgate_imports())
def test_only_public_names_are_imported(where: str, module: str, name: str) -> None:
    assert not any(part.startswith("_") for part in module.split(".")), (
        f"{where} imports the private module {module}"
    )
    imported = importlib.import_module(module)
    if name and not isinstance(getattr(imported, name, None), type(importlib)):
        exported = getattr(imported, "__all__", ())
        assert name in exported, f"{where}: {module}.{name} is not in {module}.__all__"
