"""`make deploy-check`: renders every overlay with kustomize and prints what each would create.

Usage: python deploy/tools/deploy_check.py KUSTOMIZE [OVERLAY ...]   (all of deploy/k8s/overlays when none named)
Exits non-zero when an overlay does not build.
"""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

OVERLAYS = Path(__file__).resolve().parents[1] / "k8s" / "overlays"


def render(kustomize: str, overlay: str) -> list[dict]:
    out = subprocess.run(
        [kustomize, "build", str(OVERLAYS / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def summary(overlay: str, docs: list[dict]) -> str:
    kinds = Counter(doc["kind"] for doc in docs)
    lines = [f"== {overlay}: {len(docs)} resources ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"]
    for doc in sorted(docs, key=lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])):
        meta = doc["metadata"]
        lines.append(f"  {doc['kind']:<24} {meta.get('namespace', '-'):<14} {meta['name']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    kustomize, *overlays = argv
    failed = 0
    for overlay in overlays or sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists()):
        try:
            print(summary(overlay, render(kustomize, overlay)))
        except subprocess.CalledProcessError as exc:
            print(f"== {overlay}: kustomize build failed\n{exc.stderr}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
