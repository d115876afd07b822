"""The container image, checked without a Docker engine: the Dockerfile's rules, the build context that
.dockerignore leaves, and the services starting from that context laid out as /app."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.integration.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[normalize(name.split("[")[0])] = version
    return found


def in_context(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative, with /) in the build context: the last match wins."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        negate, pattern = raw.startswith("!"), raw.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if hit:
            included = negate
    return included


def context_files() -> list[str]:
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".venv", ".git", ".local", "node_modules")]
        for name in names:
            rel = (Path(folder) / name).relative_to(ROOT).as_posix()
            if in_context(rel):
                files.append(rel)
    return files


def test_the_image_is_slim_non_root_and_lets_sigterm_reach_python():
    steps = instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    users = [arg for op, arg in steps if op == "USER"]
    assert users == ["10001:10001"], "the last stage runs as uid 10001"
    entrypoint = [arg for op, arg in steps if op == "ENTRYPOINT"]
    assert entrypoint == ['["/usr/bin/tini", "--", "python", "-m"]'], "exec form, tini as PID 1"
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HTTP_HOST=0.0.0.0" in env
    assert not re.search(r"\[dev\]|pytest|ruff|mypy|playwright", DOCKERFILE), "no development dependencies"
    assert "['project']['dependencies']" in DOCKERFILE and "-c /src/image-constraints.txt" in DOCKERFILE


def test_the_image_constraints_pin_exactly_the_runtime_dependencies_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = pins(project["dependencies"])
    locked = pins((ROOT / "deploy/tools/image-constraints.txt").read_text().splitlines())
    mismatched = {n: (v, locked.get(n)) for n, v in runtime.items() if locked.get(n) != v}
    assert not mismatched, f"run deploy/tools/lock-image-deps.sh: {mismatched}"
    dev = pins(project["optional-dependencies"]["dev"])
    assert not (set(dev) - set(runtime)) & set(locked), "development packages in the image"


def test_the_build_context_holds_the_code_and_its_files_and_nothing_else():
    files = context_files()
    assert "pyproject.toml" in files and "deploy/tools/image-constraints.txt" in files
    for needed in (
        "services/keys/migrations",
        "services/gateway/static",
        "services/notifier/templates",
        "shared/events/schemas",
    ):
        on_disk = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / needed).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert on_disk and on_disk <= set(files), f"{needed}: {sorted(on_disk - set(files))} left out"
    leaked = [
        f
        for f in files
        if not f.startswith(("services/", "shared/"))
        and f not in ("pyproject.toml", "deploy/tools/image-constraints.txt")
    ]
    assert not leaked
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    for op, arg in instructions():
        if op == "COPY" and "--from=" not in arg:
            *sources, _ = [a for a in arg.split() if not a.startswith("--")]
            assert all(any(f == s or f.startswith(s.rstrip("/") + "/") for f in files) for s in sources), arg


def test_every_service_starts_from_the_image_layout(tmp_path: Path):
    app = tmp_path / "app"
    for rel in context_files():
        if rel.startswith(("services/", "shared/")):
            (app / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, app / rel)
    probe = (
        "import services, shared.migrate as m, importlib;"
        "[importlib.import_module(f'services.{s}.app') for s in ('keys', 'notifier', 'reaper', 'gateway')];"
        "[importlib.import_module(f'services.{s}.__main__') for s in ('keys', 'notifier', 'reaper', 'gateway')];"
        "print(services.__file__); print(sorted(m.migration_folders([])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=app,
        capture_output=True,
        text=True,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    where, folders = result.stdout.splitlines()
    assert where.startswith(str(app)), "imported from the copied tree"
    assert folders == "['gateway', 'keys', 'notifier', 'reaper']"
    assert not list(app.rglob("__pycache__")), "nothing written beside the code"
