#!/usr/bin/env bash
# Renders every kustomize build, validates it offline against the vendored schemas (kubeconform, strict) and
# checks and tests the alerting rules (promtool); installs the pinned tools into .local/bin first.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUSTOMIZE=$(bash deploy/tools/install-kustomize.sh)
KUBECONFORM=$(bash deploy/tools/install-kubeconform.sh)
PROMTOOL=$(bash deploy/tools/install-promtool.sh)
PY=${PY:-.venv/bin/python}
exec "$PY" deploy/tools/deploy_check.py --kustomize "$KUSTOMIZE" --kubeconform "$KUBECONFORM" --promtool "$PROMTOOL" "$@"
