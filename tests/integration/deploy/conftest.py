"""Fixtures for the deployment tests: the pinned kustomize, and every overlay rendered once per run."""

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="session")
def kustomize() -> str:
    """The pinned kustomize, installed into .local/bin by deploy/tools/install-kustomize.sh when missing."""
    result = subprocess.run(
        ["bash", str(ROOT / "deploy/tools/install-kustomize.sh")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def rendered(kustomize: str) -> dict[str, list[dict]]:
    """overlay name -> the resources `kustomize build deploy/k8s/overlays/<name>` prints."""
    manifests = {}
    for overlay in OVERLAYS:
        out = subprocess.run(
            [kustomize, "build", str(ROOT / "deploy/k8s/overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
        manifests[overlay] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return manifests
