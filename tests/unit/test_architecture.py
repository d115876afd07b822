"""The layout rules of docs/conventions.md that a machine can check, read from the source's imports."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Modules FastAPI calls into: the routes and what they depend on.
ROUTE_MODULES = ("endpoints.py", "pages.py", "dependencies.py", "auth.py")


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        yield ".".join(relative.parts).removesuffix(".__init__"), path


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function; `from a import b` counts as `a.b` too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else None


def allowed_repository_imports() -> set[tuple[str, str]]:
    """The exceptions docs/conventions.md lists: lines "- `services/x/endpoints.py` imports `services.x.repository`"."""
    text = (ROOT / "docs" / "conventions.md").read_text()
    return set(re.findall(r"^- `(services/[\w/]+\.py)` imports `([\w.]+)`", text, flags=re.MULTILINE))


def test_no_service_imports_another_service():
    crossing = [
        f"{module} imports {imported}"
        for module, path in modules("services")
        for imported in imports(path)
        if service_of(imported) not in (None, service_of(module))
    ]
    assert crossing == []


def test_shared_imports_no_service():
    assert [
        f"{m} imports {i}" for m, path in modules("shared") for i in imports(path) if i.startswith("services")
    ] == []


def test_route_modules_reach_the_database_only_through_the_service_layer():
    allowed = allowed_repository_imports()
    offending = []
    for _, path in modules("services"):
        if path.name not in ROUTE_MODULES:
            continue
        for imported in sorted(imports(path)):
            is_repository = imported.endswith(".repository") or imported == "repository"
            if is_repository and (str(path.relative_to(ROOT)), imported) not in allowed:
                offending.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert offending == []


def test_the_modules_of_a_service_import_each_other_without_a_cycle():
    graph: dict[str, set[str]] = {}
    names = {module for module, _ in modules("services")}
    for module, path in modules("services"):
        graph[module] = {i for i in imports(path) if i in names and i != module}

    def cycle_from(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for following in graph.get(node, ()):
                if following == start:
                    return [*trail, start]
                if following not in trail:
                    stack.append((following, [*trail, following]))
        return None

    cycles = {" -> ".join(c) for module in graph if (c := cycle_from(module))}
    assert cycles == set()


@pytest.mark.parametrize("service", ["keys", "notifier", "reaper", "gateway"])
def test_every_service_has_the_same_start_up_shape(service: str):
    folder = ROOT / "services" / service
    for name in ("app.py", "config.py", "context.py"):
        assert (folder / name).exists(), f"services/{service}/{name}"
    app = (folder / "app.py").read_text()
    assert "service_app(" in app and "async def running(" in app


def test_the_directory_below_its_routes_knows_nothing_of_the_keys():
    """Keys depend on the directory (who may act, where), never the other way round."""
    upward = [
        f"{module} imports {imported}"
        for module, path in modules("services.keys.directory")
        if path.name not in ROUTE_MODULES
        for imported in imports(path)
        if imported.startswith("services.keys.") and not imported.startswith("services.keys.directory")
    ]
    assert upward == []
