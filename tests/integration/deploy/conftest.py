"""Fixtures for the deployment tests: the pinned tools, and every kustomize build rendered once per run."""

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ("dev", "prod")
# The Kafka topics of each overlay's environment: a build of their own, applied apart from the application.
TOPICS = {overlay: f"topics-{overlay}" for overlay in OVERLAYS}
BUILDS = {
    **{overlay: ROOT / "deploy/k8s/overlays" / overlay for overlay in OVERLAYS},
    **{TOPICS[overlay]: ROOT / "deploy/k8s/topics" / overlay for overlay in OVERLAYS},
}


def install(tool: str) -> str:
    """A pinned tool, installed into .local/bin by deploy/tools/install-<tool>.sh when missing."""
    result = subprocess.run(
        ["bash", str(ROOT / f"deploy/tools/install-{tool}.sh")], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kustomize() -> str:
    return install("kustomize")


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return install("kubeconform")


@pytest.fixture(scope="session")
def promtool() -> str:
    return install("promtool")


@pytest.fixture(scope="session")
def rendered_text(kustomize: str) -> dict[str, str]:
    """build name -> what `kustomize build` prints for it (the overlays, and the topics of each)."""
    texts = {}
    for name, folder in BUILDS.items():
        out = subprocess.run([kustomize, "build", str(folder)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"kustomize build {name} failed:\n{out.stderr}"
        texts[name] = out.stdout
    return texts


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[dict]]:
    """build name -> the resources `kustomize build` prints for it."""
    return {name: [doc for doc in yaml.safe_load_all(text) if doc] for name, text in rendered_text.items()}
