#!/usr/bin/env bash
# Installs the pinned kubeconform into <repo>/.local/bin (prints its path). It never downloads a schema
# here: deploy-check points it at the schemas vendored in deploy/schemas/.
set -euo pipefail
exec bash "$(dirname "$0")/install-go-tool.sh" kubeconform github.com/yannh/kubeconform/cmd/kubeconform v0.8.0
