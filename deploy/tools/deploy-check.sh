#!/usr/bin/env bash
# Renders every kustomize overlay (installing the pinned kustomize first) and prints kinds and names per overlay.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUSTOMIZE=$(bash deploy/tools/install-kustomize.sh)
PY=${PY:-.venv/bin/python}
exec "$PY" deploy/tools/deploy_check.py "$KUSTOMIZE" "$@"
