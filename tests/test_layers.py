"""The layers of the project: portal < queues < sms < chats. A module may import from its own layer
and the layers below, never from a layer above — at the top of a file or inside a function. Only
the "top" modules that wire everything together are exempt."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["portal", "queues", "sms", "chats"]
RANK = {name: rank for rank, name in enumerate(LAYERS)}

# Modules at the top of the stack: they may import every app.
TOP_FILES = {"portal/urls.py", "portal/asgi.py"}
TOP_FOLDERS = ("portal/monitoring/", "portal/reports/")


def is_top_module(relative: str) -> bool:
    return relative in TOP_FILES or relative.startswith(TOP_FOLDERS)


def module_name(relative: str) -> str:
    parts = relative.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, relative: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source, at any depth, including
    importlib.import_module("…") and __import__("…") with a literal name."""
    module = module_name(relative)
    package = module if relative.endswith("__init__.py") else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=relative)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # "from . import chats" style: the imported names may be modules themselves.
            if not node.module:
                found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in {"import_module", "__import__"} and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.append((node.lineno, first.value))
    return found


def upward_imports(source: str, relative: str) -> list[str]:
    own_layer = relative.split("/", 1)[0]
    problems = []
    for line, name in imported_modules(source, relative):
        target = name.split(".", 1)[0]
        if target in RANK and RANK[target] > RANK[own_layer]:
            problems.append(f"{relative}:{line} imports {name} ({own_layer} may not import {target})")
    return problems


def project_files() -> list[str]:
    files = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not is_top_module(relative):
                files.append(relative)
    return files


def test_the_layer_check_sees_the_whole_project():
    files = project_files()

    assert {"portal/models/__init__.py", "queues/models.py", "sms/models.py", "chats/models.py"} <= set(files)
    assert "portal/urls.py" not in files
    assert all(not name.startswith(("portal/monitoring/", "portal/reports/")) for name in files)


@pytest.mark.parametrize("relative", project_files())
def test_no_import_goes_up_the_layers(relative):
    source = (ROOT / relative).read_text(encoding="utf-8")

    assert upward_imports(source, relative) == []


@pytest.mark.parametrize(
    "relative, source",
    [
        ("portal/models.py", "from queues.models import Queue\n"),
        ("portal/models.py", "import sms.models\n"),
        ("queues/models.py", "def later():\n    from chats.models import Chat\n"),
        ("sms/pipeline.py", "class A:\n    def f(self):\n        import chats.events as e\n"),
        ("sms/admin.py", "import importlib\nimportlib.import_module('chats.models')\n"),
        ("portal/admin.py", "from queues import admin\n"),
    ],
)
def test_the_check_catches_an_upward_import(relative, source):
    assert upward_imports(source, relative)


@pytest.mark.parametrize(
    "relative, source",
    [
        ("chats/models.py", "from portal.models import Team\nfrom queues import models\nimport sms.models\n"),
        ("sms/models.py", "from queues.models import Queue\nfrom .numbers import mask_number\n"),
        ("queues/admin.py", "from . import models\nfrom portal.keywords import PROTECTED_WORDS\n"),
        ("portal/models.py", "from django.db import models\nimport chatsworth\n"),
    ],
)
def test_the_check_allows_imports_down_and_sideways(relative, source):
    assert upward_imports(source, relative) == []


def test_relative_imports_are_resolved_from_the_module_package():
    names = [name for _, name in imported_modules("from ..models import X\nfrom . import hours\n", "queues/sub/a.py")]

    assert names == ["queues.models", "queues.sub", "queues.sub.hours"]


# --- no import cycle inside an app (issue 12) ------------------------------------------------------


def imported_project_modules(relative: str) -> set[str]:
    """The project modules `relative` imports, at any depth: `from chats import services` counts
    as chats.services (the checks above need only the package; a cycle needs the module)."""
    source = (ROOT / relative).read_text(encoding="utf-8")
    names = {name for _, name in imported_modules(source, relative)}
    for node in ast.walk(ast.parse(source, filename=relative)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        while parts and not ((ROOT / Path(*parts)).with_suffix(".py").exists() or (ROOT / Path(*parts) / "__init__.py").exists()):
            parts = parts[:-1]
        if len(parts) > 1:
            found.add(".".join(parts))
    return found - {module_name(relative)}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round about (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


@pytest.mark.parametrize("app", LAYERS)
def test_no_module_of_an_app_imports_itself_round_about(app):
    """Not at the top of a file, not inside a function: a lazy import that holds a cycle open
    hides which module depends on which."""
    graph = {}
    for relative in project_files():
        if relative.startswith(f"{app}/") and "/migrations/" not in relative:
            graph[module_name(relative)] = {
                name for name in imported_project_modules(relative) if name.split(".")[0] == app
            }

    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_round_about():
    assert import_cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}) == [["a.x", "a.y", "a.z"]]
    assert import_cycles({"a.x": {"a.y"}, "a.y": set()}) == []
