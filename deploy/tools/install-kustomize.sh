#!/usr/bin/env bash
# Installs the pinned kustomize into <repo>/.local/bin from the Go module proxy; does nothing when it is there.
# Prints the binary's path. v5.8.2 is the newest kustomize whose go.mod accepts this machine's Go (1.26).
set -euo pipefail
VERSION=v5.8.2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/.local/bin/kustomize"
if [[ -x "$BIN" ]] && [[ "$("$BIN" version 2>/dev/null)" == "$VERSION" ]]; then
  echo "$BIN"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "install-kustomize: Go is required (go install from the module proxy)" >&2
  exit 1
fi
mkdir -p "$ROOT/.local/bin"
echo "install-kustomize: building sigs.k8s.io/kustomize/kustomize/v5@$VERSION (about a minute)" >&2
GOBIN="$ROOT/.local/bin" GOTOOLCHAIN=local GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
"$BIN" version >&2
echo "$BIN"
